"""The nine tools: JSON schemas, a small validator, call parsing, and an
offline, deterministic implementation of every tool.

A tool call is the whole content of an assistant turn:

    {"tool_use": {"name": "web_search", "params": {"query": "speed of light"}}}

and the tool's answer is the content of the following tool turn. Both are
written with `to_json` (compact, `", "` / `": "` separators, no ASCII
escaping) and params always follow the key order of the tool's schema, so
one call has exactly one spelling.

The offline world behind the tools:
- `FACTS`: a fixed table of true facts; `web_search`, `query_knowledge_base`
  and `api_call` (GET .../v1/facts/<slug>) answer from it.
- a workspace: a dict path -> file content, given per call, for
  `read_file`, `write_file`, `list_directory` and `search_files`.
- `execute_python` really runs small snippets with `exec` in a namespace
  with a short list of harmless builtins, capturing stdout. It is meant for
  the snippets this package generates itself, not for untrusted code.
- `analyze_data` computes real statistics with numpy / statistics.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import math
import re
import zlib
from urllib.parse import parse_qs, urlsplit

import numpy as np

TOOL_NAMES = (
    "read_file", "write_file", "list_directory", "search_files", "execute_python",
    "web_search", "analyze_data", "query_knowledge_base", "api_call",
)


def _obj(properties: dict, required: list[str], description: str) -> dict:
    return {"type": "object", "description": description, "properties": properties,
            "required": required, "additionalProperties": False}


_STR = {"type": "string", "minLength": 1}

TOOL_SCHEMAS: dict[str, dict] = {
    "read_file": _obj({
        "path": dict(_STR, description="file path relative to the workspace"),
        "start_line": {"type": "integer", "minimum": 1, "description": "first line, 1-based"},
        "end_line": {"type": "integer", "minimum": 1, "description": "last line, inclusive"},
    }, ["path"], "Read a text file, optionally only a range of lines."),
    "write_file": _obj({
        "path": dict(_STR, description="file path relative to the workspace"),
        "content": {"type": "string", "description": "text to write"},
        "append": {"type": "boolean", "description": "append instead of overwrite"},
    }, ["path", "content"], "Write (or append) text to a file."),
    "list_directory": _obj({
        "path": dict(_STR, description="directory path; '.' is the workspace root"),
        "recursive": {"type": "boolean", "description": "include subdirectories"},
    }, ["path"], "List the entries of a directory."),
    "search_files": _obj({
        "pattern": dict(_STR, description="plain, case-sensitive text to find"),
        "directory": dict(_STR, description="directory to search; default '.'"),
    }, ["pattern"], "Find lines containing a text in the files under a directory."),
    "execute_python": _obj({
        "code": dict(_STR, description="Python source; its printed output is returned"),
        "timeout": {"type": "integer", "minimum": 1, "maximum": 60,
                    "description": "seconds"},
    }, ["code"], "Run a short Python snippet and return what it prints."),
    "web_search": _obj({
        "query": dict(_STR, description="search terms"),
        "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
    }, ["query"], "Search an offline web index of facts."),
    "analyze_data": _obj({
        "data": {"type": "array", "items": {"type": "number"}, "minItems": 1},
        "analysis_type": {"type": "string",
                          "enum": ["summary", "correlation", "distribution", "trend"]},
    }, ["data", "analysis_type"], "Compute statistics of a list of numbers."),
    "query_knowledge_base": _obj({
        "query": dict(_STR, description="what to look up"),
        "context": dict(_STR, description="optional domain, e.g. physics"),
    }, ["query"], "Look up a fact in the knowledge base."),
    "api_call": _obj({
        "url": {"type": "string", "pattern": "^https?://[^ ]+$"},
        "method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE"]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"type": "object"},
    }, ["url", "method"], "Call an HTTP API."),
}


class ToolError(ValueError):
    """A tool was called with invalid parameters or failed."""


def to_json(obj) -> str:
    """The one JSON spelling used for calls and results."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


# ---------------------------------------------------------------------------
# validation (a subset of JSON Schema)

_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and math.isfinite(v) and v.is_integer()),
    "number": lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v)),
}


def validate(value, schema: dict, where: str = "params") -> list[str]:
    """Errors of `value` against `schema`. Supported keywords: type, enum,
    properties, required, additionalProperties, items, minItems, maxItems,
    minLength, maxLength, minimum, maximum, pattern."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_TYPE_CHECKS[t](value) for t in types):
            return [f"{where}: expected {' or '.join(types)}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required property {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += validate(item, props[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: allows at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: must not be shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: must not be longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match {schema['pattern']!r}")
    if _TYPE_CHECKS["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above the maximum {schema['maximum']}")
    return errors


def _json_type(v) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKS[name](v):
            return name
    return type(v).__name__


def validate_params(name: str, params) -> list[str]:
    """Errors of `params` for tool `name`; an empty list means valid."""
    if name not in TOOL_SCHEMAS:
        return [f"unknown tool {name!r}; tools are {', '.join(TOOL_NAMES)}"]
    return validate(params, TOOL_SCHEMAS[name])


# ---------------------------------------------------------------------------
# calls


def order_params(name: str, params: dict) -> dict:
    """`params` in schema key order, dropping None values."""
    order = list(TOOL_SCHEMAS[name]["properties"])
    keys = sorted(params, key=lambda k: order.index(k) if k in order else len(order))
    return {k: params[k] for k in keys if params[k] is not None}


def format_call(name: str, params: dict) -> str:
    """The canonical text of a call (validated; params in schema order)."""
    params = order_params(name, params)
    errors = validate_params(name, params)
    if errors:
        raise ToolError("; ".join(errors))
    return to_json({"tool_use": {"name": name, "params": params}})


def _no_constants(token: str):
    raise ValueError(f"{token} is not JSON")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_tool_call(text: str):
    """(name, params) from `{"tool_use": {"name": ..., "params": {...}}}`, or
    None when `text` is not strict JSON of exactly that shape."""
    if not isinstance(text, str):
        return None
    try:
        obj = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != {"tool_use"}:
        return None
    call = obj["tool_use"]
    if not isinstance(call, dict) or set(call) != {"name", "params"}:
        return None
    if not isinstance(call["name"], str) or not isinstance(call["params"], dict):
        return None
    return call["name"], call["params"]


def is_valid_tool_call(text: str, expected_name: str | None = None) -> bool:
    """True when `text` parses as a call to a known tool with schema-valid
    params (and, if given, the tool is `expected_name`)."""
    parsed = parse_tool_call(text)
    if parsed is None:
        return False
    name, params = parsed
    if expected_name is not None and name != expected_name:
        return False
    return not validate_params(name, params)


# ---------------------------------------------------------------------------
# the offline fact table: (slug, topic, domain, title, fact). All true.

FACTS = (
    ("speed-of-light", "speed of light", "physics", "Speed of light",
     "Light travels through a vacuum at exactly 299,792,458 metres per second."),
    ("speed-of-sound", "speed of sound in air", "physics", "Speed of sound",
     "Sound travels at about 343 metres per second in dry air at 20 °C."),
    ("standard-gravity", "gravitational acceleration on Earth", "physics", "Standard gravity",
     "Standard gravity at Earth's surface is defined as 9.80665 m/s²."),
    ("planck-constant", "Planck constant", "physics", "Planck constant",
     "The Planck constant is exactly 6.62607015 × 10^-34 joule-seconds."),
    ("absolute-zero", "absolute zero temperature", "physics", "Absolute zero",
     "Absolute zero, 0 kelvin, equals -273.15 °C."),
    ("ohms-law", "Ohm's law", "physics", "Ohm's law",
     "Ohm's law states that voltage equals current times resistance, V = I × R."),
    ("second-law", "second law of thermodynamics", "physics", "Second law of thermodynamics",
     "The total entropy of an isolated system never decreases over time."),
    ("uncertainty-principle", "Heisenberg uncertainty principle", "physics",
     "Uncertainty principle",
     "Position and momentum of a particle cannot both be known with arbitrary precision."),
    ("schrodingers-cat", "Schrödinger's cat thought experiment", "physics", "Schrödinger's cat",
     "Erwin Schrödinger proposed the cat thought experiment in 1935 to question "
     "interpretations of quantum superposition."),
    ("newton-principia", "Newton's Principia", "history", "Principia",
     "Isaac Newton published the Principia in 1687, setting out his laws of motion "
     "and universal gravitation."),
    ("boiling-point-water", "boiling point of water", "chemistry", "Boiling point of water",
     "At sea-level pressure pure water boils at about 100 °C (212 °F)."),
    ("freezing-point-water", "freezing point of water", "chemistry", "Freezing point of water",
     "Pure water freezes at 0 °C (32 °F) at standard atmospheric pressure."),
    ("avogadro-constant", "Avogadro constant", "chemistry", "Avogadro constant",
     "The Avogadro constant is exactly 6.02214076 × 10^23 per mole."),
    ("water-molecule", "chemical formula of water", "chemistry", "Water molecule",
     "A water molecule, H2O, has two hydrogen atoms bonded to one oxygen atom."),
    ("periodic-table", "number of chemical elements", "chemistry", "Periodic table",
     "The periodic table has 118 confirmed elements."),
    ("hydrogen", "lightest chemical element", "chemistry", "Hydrogen",
     "Hydrogen is the lightest element and the most abundant one in the universe."),
    ("photosynthesis", "photosynthesis", "biology", "Photosynthesis",
     "Photosynthesis uses light energy to turn carbon dioxide and water into glucose "
     "and oxygen."),
    ("human-bones", "number of bones in the human body", "biology", "Human skeleton",
     "An adult human skeleton typically has 206 bones."),
    ("human-heart", "chambers of the human heart", "biology", "Human heart",
     "The human heart has four chambers: two atria and two ventricles."),
    ("dna-bases", "DNA bases", "biology", "DNA bases",
     "DNA uses four bases: adenine, thymine, guanine and cytosine."),
    ("mitochondria", "function of mitochondria", "biology", "Mitochondria",
     "Mitochondria make most of a cell's ATP through cellular respiration."),
    ("body-temperature", "normal human body temperature", "biology", "Body temperature",
     "Normal human body temperature is about 37 °C."),
    ("blue-whale", "largest animal", "biology", "Blue whale",
     "The blue whale is the largest animal known to have lived."),
    ("giraffe", "tallest land animal", "biology", "Giraffe",
     "The giraffe is the tallest living land animal."),
    ("honeycomb", "shape of honeycomb cells", "biology", "Honeycomb",
     "Honeybees build hexagonal wax cells, a shape that tiles a plane with little wax."),
    ("moon-distance", "distance from Earth to the Moon", "astronomy", "Earth-Moon distance",
     "The average distance from Earth to the Moon is about 384,400 km."),
    ("astronomical-unit", "astronomical unit", "astronomy", "Astronomical unit",
     "One astronomical unit, about the mean Earth-Sun distance, is exactly "
     "149,597,870,700 metres."),
    ("sunlight-travel-time", "time for sunlight to reach Earth", "astronomy", "Sunlight travel time",
     "Sunlight takes about 8 minutes and 20 seconds to reach Earth."),
    ("largest-planet", "largest planet in the Solar System", "astronomy", "Jupiter",
     "Jupiter is the largest planet in the Solar System."),
    ("planet-count", "number of planets in the Solar System", "astronomy", "Planets",
     "The Solar System has eight planets; Pluto was reclassified as a dwarf planet in 2006."),
    ("earth-age", "age of the Earth", "astronomy", "Age of the Earth",
     "Earth is about 4.54 billion years old."),
    ("universe-age", "age of the universe", "astronomy", "Age of the universe",
     "The universe is about 13.8 billion years old."),
    ("moon-landing", "first Moon landing", "history", "Apollo 11",
     "Apollo 11 landed on the Moon on 20 July 1969."),
    ("printing-press", "invention of the printing press", "history", "Printing press",
     "Johannes Gutenberg introduced movable-type printing in Europe around 1440."),
    ("leonardo-notebooks", "Leonardo da Vinci notebooks", "history", "Leonardo's notebooks",
     "Leonardo da Vinci (1452-1519) filled notebooks with studies of anatomy, flight, "
     "water and machines."),
    ("mona-lisa", "location of the Mona Lisa", "history", "Mona Lisa",
     "The Mona Lisa hangs in the Louvre in Paris."),
    ("mount-everest", "height of Mount Everest", "geography", "Mount Everest",
     "Mount Everest is 8,849 metres tall according to the 2020 survey by China and Nepal."),
    ("pacific-ocean", "largest ocean", "geography", "Pacific Ocean",
     "The Pacific is the largest and deepest of Earth's oceans."),
    ("mariana-trench", "depth of the Mariana Trench", "geography", "Mariana Trench",
     "The Challenger Deep in the Mariana Trench is about 10,900 metres deep."),
    ("marathon", "length of a marathon", "geography", "Marathon",
     "A marathon is 42.195 kilometres long."),
    ("pi", "value of pi", "math", "Pi",
     "Pi, the ratio of a circle's circumference to its diameter, begins 3.14159."),
    ("euler-number", "Euler's number e", "math", "Euler's number",
     "Euler's number e begins 2.71828."),
    ("golden-ratio", "golden ratio", "math", "Golden ratio",
     "The golden ratio is (1 + √5) / 2, about 1.61803."),
    ("prime-numbers", "definition of a prime number", "math", "Prime numbers",
     "A prime has exactly two positive divisors, 1 and itself; 2 is the only even prime."),
    ("pythagorean-theorem", "Pythagorean theorem", "math", "Pythagorean theorem",
     "In a right triangle the square of the hypotenuse equals the sum of the squares "
     "of the other two sides."),
    ("byte", "size of a byte", "computing", "Byte",
     "A byte is 8 bits and can represent 256 distinct values."),
    ("python-language", "history of the Python language", "computing", "Python",
     "Python was created by Guido van Rossum and first released in 1991."),
    ("transformer", "transformer architecture", "computing", "Transformer",
     "The transformer architecture was introduced in the 2017 paper "
     "'Attention Is All You Need'."),
    ("gguf", "GGUF file format", "computing", "GGUF",
     "GGUF is the binary file format llama.cpp uses to store model weights and metadata."),
    ("sentencepiece", "SentencePiece tokenizer", "computing", "SentencePiece",
     "SentencePiece is a library that learns subword units such as BPE directly from raw text."),
)
FACT_BY_SLUG = {f[0]: f for f in FACTS}
DOMAINS = tuple(sorted({f[2] for f in FACTS}))

_STOP = frozenset(
    "a an the of in on at to for and or is are was what how does do about from by with "
    "me tell find search look up please s".split())


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


_FACT_WORDS = [_words(f[1] + " " + f[3]) for f in FACTS]


def _rank_facts(query: str, domain: str | None = None) -> list[tuple]:
    """Facts sharing at least half of the query's content words, best first."""
    q = _words(query)
    if not q:
        return []
    scored = []
    for i, fact in enumerate(FACTS):
        if domain is not None and fact[2] != domain:
            continue
        overlap = len(q & _FACT_WORDS[i])
        if overlap and overlap / len(q) >= 0.5:
            scored.append((-overlap / len(q), -overlap, i))
    return [FACTS[i] for _, _, i in sorted(scored)]


# ---------------------------------------------------------------------------
# the tools


def web_search(query: str, max_results: int = 3) -> dict:
    hits = _rank_facts(query)[:max_results]
    return {"results": [{"title": f[3], "snippet": f[4]} for f in hits]}


def query_knowledge_base(query: str, context: str | None = None) -> dict:
    domain = context.strip().lower() if context and context.strip().lower() in DOMAINS else None
    hits = _rank_facts(query, domain)
    if not hits:
        return {"answer": None, "source": None}
    return {"answer": hits[0][4], "source": "kb/" + hits[0][0]}


# unit conversions offered by the offline API: (from, to) -> function
CONVERSIONS = {
    ("km", "mi"): lambda v: v / 1.609344,
    ("mi", "km"): lambda v: v * 1.609344,
    ("kg", "lb"): lambda v: v / 0.45359237,
    ("lb", "kg"): lambda v: v * 0.45359237,
    ("c", "f"): lambda v: v * 9 / 5 + 32,
    ("f", "c"): lambda v: (v - 32) * 5 / 9,
    ("m", "ft"): lambda v: v / 0.3048,
    ("ft", "m"): lambda v: v * 0.3048,
}
API_HOST = "api.example.com"


def api_call(url: str, method: str, headers: dict | None = None, body: dict | None = None) -> dict:
    """The offline API at https://api.example.com:
    GET /v1/facts/<slug>; GET /v1/convert?value=V&from=U&to=W;
    POST /v1/notes (creates a note, id from a checksum of the body);
    PUT /v1/notes/<id>; DELETE /v1/notes/<id>. Other hosts are unreachable."""
    parts = urlsplit(url)
    if parts.hostname != API_HOST:
        return {"status": 503, "body": {"error": f"host {parts.hostname} is not reachable offline"}}
    path = parts.path.rstrip("/")
    m = re.fullmatch(r"/v1/facts/([a-z0-9-]+)", path)
    if m and method == "GET":
        fact = FACT_BY_SLUG.get(m.group(1))
        if fact is None:
            return {"status": 404, "body": {"error": "unknown fact"}}
        return {"status": 200, "body": {"topic": fact[1], "fact": fact[4]}}
    if path == "/v1/convert" and method == "GET":
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            value = float(q["value"])
            fn = CONVERSIONS[(q["from"], q["to"])]
        except (KeyError, ValueError):
            return {"status": 400, "body": {"error": "need value, from and to"}}
        return {"status": 200, "body": {"value": _num(value), "from": q["from"], "to": q["to"],
                                         "result": round(fn(value), 3)}}
    if path == "/v1/notes" and method == "POST":
        note_id = zlib.crc32(to_json(body or {}).encode()) % 900 + 100
        return {"status": 201, "body": dict({"id": note_id}, **(body or {}))}
    m = re.fullmatch(r"/v1/notes/(\d+)", path)
    if m and method == "PUT":
        return {"status": 200, "body": dict({"id": int(m.group(1))}, **(body or {}))}
    if m and method == "DELETE":
        return {"status": 204, "body": None}
    return {"status": 404, "body": {"error": "not found"}}


def _num(v: float):
    return int(v) if float(v).is_integer() else v


_SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float",
                 "int", "len", "list", "map", "max", "min", "pow", "print", "range", "reversed",
                 "round", "set", "sorted", "str", "sum", "tuple", "zip")
}


def run_python(code: str) -> str:
    """Run a small snippet with harmless builtins only; return its stdout
    without the final newline. Only for snippets this package generates."""
    if "__" in code or re.search(r"\b(import|open|exec|eval)\b", code):
        raise ToolError("the snippet uses a name the sandbox does not allow")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<snippet>", "exec"), {"__builtins__": dict(_SAFE_BUILTINS)}, {})
    return out.getvalue().removesuffix("\n")


def analyze(data: list, analysis_type: str) -> dict:
    """Statistics of `data` rounded to 3 decimals.
    summary: count, mean, median, stdev (sample), min, max.
    distribution: q1, median, q3 (linear interpolation), iqr, skewness
      (population moment coefficient).
    trend: least-squares slope and intercept against the index 0..n-1 and
      the direction (increasing / decreasing / flat for |slope| < 1e-9).
    correlation: Pearson r of the values with their index, and the lag-1
      Pearson r of consecutive values (pairs (x[i], x[i+1])).
    """
    x = np.asarray(data, dtype=np.float64)
    n = len(x)
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    if analysis_type == "summary":
        return {"count": n, "mean": r3(x.mean()), "median": r3(np.median(x)),
                "stdev": r3(x.std(ddof=1)) if n > 1 else 0.0,
                "min": _num(r3(x.min())), "max": _num(r3(x.max()))}
    if analysis_type == "distribution":
        q1, q2, q3 = np.percentile(x, [25, 50, 75])
        sd = x.std()
        skew = float(((x - x.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0
        return {"q1": r3(q1), "median": r3(q2), "q3": r3(q3), "iqr": r3(q3 - q1),
                "skewness": r3(skew)}
    if n < 2:
        raise ToolError(f"{analysis_type} needs at least 2 values")
    idx = np.arange(n, dtype=np.float64)
    if analysis_type == "trend":
        slope, intercept = np.polyfit(idx, x, 1)
        direction = ("flat" if abs(slope) < 1e-9 else
                     "increasing" if slope > 0 else "decreasing")
        return {"slope": r3(slope), "intercept": r3(intercept), "direction": direction}
    if analysis_type == "correlation":
        return {"r_with_index": r3(_pearson(idx, x)), "lag1_r": r3(_pearson(x[:-1], x[1:]))
                if n > 2 else 0.0}
    raise ToolError(f"unknown analysis_type {analysis_type!r}")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def _norm_path(path: str) -> str:
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    return "/".join(parts)


def read_file(files: dict, path: str, start_line: int | None = None,
              end_line: int | None = None) -> dict:
    key = _norm_path(path)
    if key not in files:
        return {"error": f"no such file: {path}"}
    lines = files[key].split("\n")
    lo = (start_line or 1) - 1
    hi = end_line if end_line is not None else len(lines)
    return {"content": "\n".join(lines[lo:hi])}


def write_file(files: dict, path: str, content: str, append: bool = False) -> dict:
    key = _norm_path(path)
    files[key] = (files.get(key, "") + content) if append else content
    return {"ok": True, "bytes_written": len(content.encode("utf-8"))}


def list_directory(files: dict, path: str, recursive: bool = False) -> dict:
    base = _norm_path(path)
    prefix = base + "/" if base else ""
    entries = set()
    for key in files:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):].split("/")
        if recursive:
            for i in range(1, len(rest)):
                entries.add("/".join(rest[:i]) + "/")
            entries.add("/".join(rest))
        else:
            entries.add(rest[0] + "/" if len(rest) > 1 else rest[0])
    if not entries:
        return {"error": f"no such directory: {path}"}
    return {"entries": sorted(entries)}


def search_files(files: dict, pattern: str, directory: str | None = None) -> dict:
    base = _norm_path(directory or ".")
    prefix = base + "/" if base else ""
    matches = []
    for key in sorted(files):
        if key.startswith(prefix):
            for i, line in enumerate(files[key].split("\n"), 1):
                if pattern in line:
                    matches.append({"path": key, "line": i, "text": line})
    return {"matches": matches}


_FILE_TOOLS = {"read_file": read_file, "write_file": write_file,
               "list_directory": list_directory, "search_files": search_files}


def execute(name: str, params: dict, files: dict | None = None) -> dict:
    """Run tool `name` on schema-valid `params` and return its JSON result.
    File tools read (and write_file updates) the workspace `files`."""
    errors = validate_params(name, params)
    if errors:
        raise ToolError("; ".join(errors))
    if name in _FILE_TOOLS:
        return _FILE_TOOLS[name](files if files is not None else {}, **params)
    if name == "execute_python":
        return {"stdout": run_python(params["code"])}
    if name == "web_search":
        return web_search(**params)
    if name == "query_knowledge_base":
        return query_knowledge_base(**params)
    if name == "analyze_data":
        return analyze(params["data"], params["analysis_type"])
    if name == "api_call":
        return api_call(**params)
    raise ToolError(f"unknown tool {name!r}")

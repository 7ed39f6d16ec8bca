import contextlib
import io
import json
import math
import re
import statistics
import time

import pytest

from codette_np import chat, data
from codette_np.data import tools


@pytest.fixture(scope="module")
def big():
    t0 = time.perf_counter()
    ex = data.generate(5000, seed=0)
    return ex, time.perf_counter() - t0


@pytest.fixture(scope="module")
def tool_examples(big):
    return [e for e in big[0] if "tool" in e]


# ---------------------------------------------------------------------------
# generation


def test_deterministic_per_seed():
    a, b = data.generate(300, seed=7), data.generate(300, seed=7)
    assert a == b
    assert [e["text"] for e in a] != [e["text"] for e in data.generate(300, seed=8)]


def test_category_stream_does_not_depend_on_mix():
    full = [e["text"] for e in data.generate(400, seed=2) if e["category"] == "consciousness"]
    only = [e["text"] for e in data.generate(len(full), seed=2, mix={"consciousness": 1})]
    assert sorted(full) == sorted(only)


def test_5000_distinct_and_fast(big):
    ex, seconds = big
    assert len(ex) == 5000
    assert len({e["text"] for e in ex}) / len(ex) >= 0.99
    assert seconds < 20, f"generating 5000 examples took {seconds:.1f} s"


def test_natural_distinctness_without_redraws(monkeypatch):
    from codette_np.data import mix

    monkeypatch.setattr(mix, "MAX_REDRAWS", 0)
    ex = data.generate(2000, seed=4)
    assert len({e["text"] for e in ex}) / len(ex) >= 0.99


def test_default_mix_proportions(big):
    ex, _ = big
    counts = {c: sum(e["category"] == c for e in ex) for c in data.CATEGORIES}
    assert counts == {"perspectives": 1500, "tools": 1250, "consciousness": 1250, "mixed": 1000, "copying": 0}


@pytest.mark.parametrize("n", [1, 7, 33, 101])
def test_custom_mix_proportions(n):
    mix = {"perspectives": 0.1, "tools": 0.6, "consciousness": 0.3}
    ex = data.generate(n, seed=1, mix=mix)
    assert len(ex) == n
    for cat in data.CATEGORIES:
        k = sum(e["category"] == cat for e in ex)
        assert abs(k - n * mix.get(cat, 0)) <= 1


def test_examples_render_with_system_turn(big):
    roles = set(chat.ROLES)
    for e in big[0][:1500]:
        msgs = e["messages"]
        assert msgs[0] == {"role": "system", "content": chat.SYSTEM_PROMPT}
        assert e["text"] == chat.render(msgs)
        assert all(m["role"] in roles for m in msgs)
        assert msgs[1]["role"] == "user" and msgs[-1]["role"] == "assistant"
        for m in msgs:
            assert not any(marker in m["content"] for marker in chat.MARKERS)


def test_every_category_is_varied(big):
    examples = big[0][:2000] + data.generate(300, seed=2, mix={"copying": 1})
    stats = data.distinct_ngram_stats(examples)
    assert stats["distinct_text_share"] >= 0.99
    for cat in data.CATEGORIES:
        s = stats["per_category"][cat]
        assert s["top_skeleton_share"] < 0.05, (cat, s)
        assert s["skeletons"] > 100
        assert 0 < s["distinct_1"] <= s["distinct_2"] <= s["distinct_3"] <= s["distinct_4"] <= 1


def test_skeleton_masks_pools_and_digits():
    a = data.skeleton("Search the web for speed of light. It is 299792458 m/s.")
    b = data.skeleton("Search the web for boiling point of water. It is 100 m/s.")
    assert a == b and "§" in a and "0" in a


def test_stats_on_user_data_without_messages():
    s = data.distinct_ngram_stats([{"text": "a b c"}, {"text": "a b d", "category": "x"}])
    assert s["n"] == 2 and set(s["per_category"]) == {"user", "x"}


def test_tool_examples_cover_all_tools(tool_examples):
    tools_seen = {e["tool"] for e in tool_examples if e["category"] == "tools"}
    assert tools_seen == set(tools.TOOL_NAMES)


def test_heldout_prompt_shape(tool_examples):
    for e in tool_examples[:200]:
        prompt = chat.generation_prompt(e["messages"][:2])
        assert e["text"].startswith(prompt)
        call = e["text"][len(prompt):].split(chat.END, 1)[0]
        assert call == e["messages"][2]["content"]
        assert tools.is_valid_tool_call(call, e["tool"])


# ---------------------------------------------------------------------------
# tool calls are valid and their results are true (recomputed independently)


def _call_and_result(e):
    m = e["messages"]
    assert [x["role"] for x in m[1:5]] == ["user", "assistant", "tool", "assistant"]
    return m[2]["content"], json.loads(m[3]["content"]), m[1]["content"], m[4]["content"]


def test_tool_calls_validate_and_are_canonical(tool_examples):
    for e in tool_examples:
        call, _, _, _ = _call_and_result(e)
        parsed = tools.parse_tool_call(call)
        assert parsed is not None and parsed[0] == e["tool"]
        assert tools.validate_params(*parsed) == []
        assert tools.is_valid_tool_call(call, e["tool"])
        assert call == tools.format_call(*parsed)
        # the params are copied from the request (strings, numbers) or fixed values
        _, _, user, _ = _call_and_result(e)
        for key, value in parsed[1].items():
            if isinstance(value, str) and key not in ("code", "method", "analysis_type"):
                assert value in user, (key, value, user)


def _exec(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})
    return out.getvalue().removesuffix("\n")


def _close(a, b):
    return abs(a - b) <= 1.5e-3


def _check_analysis(data_, kind, res):
    x = [float(v) for v in data_]
    idx = list(range(len(x)))
    if kind == "summary":
        assert res["count"] == len(x)
        assert _close(res["mean"], statistics.fmean(x)) and _close(res["median"], statistics.median(x))
        assert _close(res["stdev"], statistics.stdev(x))
        assert res["min"] == min(x) and res["max"] == max(x)
    elif kind == "distribution":
        q1, q2, q3 = statistics.quantiles(x, n=4, method="inclusive")
        assert _close(res["q1"], q1) and _close(res["median"], q2) and _close(res["q3"], q3)
        assert _close(res["iqr"], q3 - q1)
        mu, sd = statistics.fmean(x), statistics.pstdev(x)
        skew = sum((v - mu) ** 3 for v in x) / len(x) / sd ** 3 if sd else 0.0
        assert _close(res["skewness"], skew)
    elif kind == "trend":
        slope, intercept = statistics.linear_regression(idx, x)
        assert _close(res["slope"], slope) and _close(res["intercept"], intercept)
        assert res["direction"] == ("increasing" if slope > 1e-9 else "decreasing" if slope < -1e-9 else "flat")
    else:
        r = statistics.correlation(idx, x) if statistics.pstdev(x) else 0.0
        assert _close(res["r_with_index"], r)
        a, b = x[:-1], x[1:]
        lag = statistics.correlation(a, b) if statistics.pstdev(a) and statistics.pstdev(b) else 0.0
        assert _close(res["lag1_r"], lag)


def _check_files(name, params, files, res):
    if name == "read_file":
        if params["path"] not in files:
            assert "error" in res
            return
        lines = files[params["path"]].split("\n")
        lo, hi = params.get("start_line", 1), params.get("end_line", len(lines))
        assert res["content"] == "\n".join(lines[lo - 1:hi])
    elif name == "write_file":
        assert res == {"ok": True, "bytes_written": len(params["content"].encode("utf-8"))}
    elif name == "list_directory":
        d = params["path"]
        prefix = "" if d == "." else d + "/"
        under = [p[len(prefix):] for p in files if p.startswith(prefix)]
        if not under:
            assert "error" in res
            return
        if params.get("recursive"):
            expect = set(under) | {"/".join(p.split("/")[:i]) + "/" for p in under for i in range(1, p.count("/") + 1)}
        else:
            expect = {p.split("/")[0] + ("/" if "/" in p else "") for p in under}
        assert res["entries"] == sorted(expect)
    elif name == "search_files":
        d = params.get("directory", ".")
        prefix = "" if d == "." else d + "/"
        expect = [{"path": p, "line": i + 1, "text": line} for p in sorted(files) if p.startswith(prefix)
                  for i, line in enumerate(files[p].split("\n")) if params["pattern"] in line]
        assert res["matches"] == expect


def _fact_for_text(text):
    return [f for f in tools.FACTS if f[4] == text]


def _check_api(params, res):
    url = params["url"]
    if not url.startswith("https://api.example.com/"):
        assert res["status"] == 503
        return
    path = url.split("api.example.com", 1)[1]
    if path.startswith("/v1/facts/"):
        slug = path.rsplit("/", 1)[1]
        assert res == {"status": 200, "body": {"topic": tools.FACT_BY_SLUG[slug][1], "fact": tools.FACT_BY_SLUG[slug][4]}}
    elif path.startswith("/v1/convert"):
        q = dict(kv.split("=") for kv in path.split("?", 1)[1].split("&"))
        v = float(q["value"])
        factor = {("km", "mi"): 1 / 1.609344, ("mi", "km"): 1.609344, ("kg", "lb"): 1 / 0.45359237,
                  ("lb", "kg"): 0.45359237, ("m", "ft"): 1 / 0.3048, ("ft", "m"): 0.3048}
        pair = (q["from"], q["to"])
        expect = (v * 9 / 5 + 32 if pair == ("c", "f") else (v - 32) * 5 / 9 if pair == ("f", "c")
                  else v * factor[pair])
        assert res["status"] == 200 and _close(res["body"]["result"], expect)
    elif params["method"] == "POST":
        assert res["status"] == 201 and {k: v for k, v in res["body"].items() if k != "id"} == params["body"]
    elif params["method"] == "PUT":
        assert res["status"] == 200 and res["body"] == dict({"id": int(path.rsplit("/", 1)[1])}, **params["body"])
    else:
        assert res == {"status": 204, "body": None}


_NUM = re.compile(r"(?<![\w-])-?\d+(?:\.\d+)?")


def test_tool_results_are_true(tool_examples):
    checked = set()
    for e in tool_examples:
        call, res, user, answer = _call_and_result(e)
        name, params = tools.parse_tool_call(call)
        if name in data.FILE_TOOLS:
            _check_files(name, params, e["files"], res)
        elif name == "execute_python":
            assert res == {"stdout": _exec(params["code"])}
        elif name == "analyze_data":
            _check_analysis(params["data"], params["analysis_type"], res)
        elif name == "web_search":
            assert len(res["results"]) <= params.get("max_results", 3)
            for hit in res["results"]:
                (fact,) = _fact_for_text(hit["snippet"])
                assert fact[3] == hit["title"]
        elif name == "query_knowledge_base":
            if res["answer"] is not None:
                slug = res["source"].removeprefix("kb/")
                assert tools.FACT_BY_SLUG[slug][4] == res["answer"]
                if "context" in params:
                    assert tools.FACT_BY_SLUG[slug][2] == params["context"]
        elif name == "api_call":
            _check_api(params, res)
        checked.add(name)
        if name in ("analyze_data", "execute_python", "api_call", "web_search", "query_knowledge_base"):
            # every number in the answer comes from the request or the result
            known = {float(x) for x in _NUM.findall(user + " " + json.dumps(res, ensure_ascii=False))}
            known.add(float(len(res.get("results", []))))  # "I found 2 results"
            first_paragraph = answer.split("\n")[0]
            for x in _NUM.findall(first_paragraph):
                assert float(x) in known, (x, first_paragraph, res)
    assert checked == set(tools.TOOL_NAMES)


def test_search_results_exist_in_fact_table():
    res = tools.web_search("speed of light", 1)
    assert res == {"results": [{"title": "Speed of light", "snippet": tools.FACT_BY_SLUG["speed-of-light"][4]}]}
    assert tools.web_search("tomorrow's lottery numbers") == {"results": []}


# ---------------------------------------------------------------------------
# tools: schemas, validation, parsing


def test_schemas_shape():
    assert tuple(tools.TOOL_SCHEMAS) == tools.TOOL_NAMES
    for schema in tools.TOOL_SCHEMAS.values():
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize("name, params, ok", [
    ("read_file", {"path": "a.txt"}, True),
    ("read_file", {"path": "a.txt", "start_line": 0}, False),
    ("read_file", {}, False),
    ("read_file", {"path": "a", "extra": 1}, False),
    ("write_file", {"path": "a", "content": "x", "append": "yes"}, False),
    ("execute_python", {"code": "print(1)", "timeout": 61}, False),
    ("execute_python", {"code": "print(1)", "timeout": True}, False),
    ("web_search", {"query": "x", "max_results": 3.0}, True),
    ("web_search", {"query": ""}, False),
    ("analyze_data", {"data": [1, 2.5], "analysis_type": "trend"}, True),
    ("analyze_data", {"data": [1, "2"], "analysis_type": "trend"}, False),
    ("analyze_data", {"data": [1, True], "analysis_type": "trend"}, False),
    ("analyze_data", {"data": [], "analysis_type": "summary"}, False),
    ("analyze_data", {"data": [1], "analysis_type": "mean"}, False),
    ("api_call", {"url": "https://x.org/a", "method": "PATCH"}, False),
    ("api_call", {"url": "ftp://x.org", "method": "GET"}, False),
    ("api_call", {"url": "https://x.org", "method": "GET", "headers": {"A": 1}}, False),
    ("api_call", {"url": "https://x.org", "method": "POST", "body": {"a": [1]}}, True),
    ("query_knowledge_base", {"query": "q", "context": "physics"}, True),
    ("nope", {}, False),
])
def test_validate_params(name, params, ok):
    assert (tools.validate_params(name, params) == []) is ok


@pytest.mark.parametrize("text", [
    "", "not json", "{}", '{"tool_use": {}}', '{"tool_use": {"name": "web_search"}}',
    '{"tool_use": {"name": "web_search", "params": {"query": "x"}}, "more": 1}',
    '{"tool_use": {"name": "web_search", "params": {"query": "x"}, "x": 1}}',
    '{"tool_use": {"name": 3, "params": {}}}', '{"tool_use": {"name": "web_search", "params": []}}',
    '{"tool_use": {"name": "web_search", "params": {"query": "x", "query": "y"}}}',
    '{"tool_use": {"name": "analyze_data", "params": {"data": [NaN], "analysis_type": "summary"}}}',
    '{"tool_use": {"name": "web_search", "params": {"query": "x"}}} trailing',
    "[1, 2]",
])
def test_parse_tool_call_rejects(text):
    assert tools.parse_tool_call(text) is None
    assert not tools.is_valid_tool_call(text)


def test_parse_and_validity():
    call = '{"tool_use": {"name": "web_search", "params": {"query": "speed of light"}}}'
    assert tools.parse_tool_call(call) == ("web_search", {"query": "speed of light"})
    assert tools.is_valid_tool_call(call) and tools.is_valid_tool_call(call, "web_search")
    assert not tools.is_valid_tool_call(call, "api_call")
    assert not tools.is_valid_tool_call('{"tool_use": {"name": "web_search", "params": {}}}')
    assert not tools.is_valid_tool_call('{"tool_use": {"name": "fly", "params": {}}}')
    assert tools.format_call("web_search", {"max_results": 2, "query": "q"}) == \
        '{"tool_use": {"name": "web_search", "params": {"query": "q", "max_results": 2}}}'
    with pytest.raises(tools.ToolError):
        tools.format_call("web_search", {})


def test_python_sandbox_refuses_imports():
    with pytest.raises(tools.ToolError):
        tools.run_python("import os")
    with pytest.raises(tools.ToolError):
        tools.run_python("print(().__class__)")
    with pytest.raises(NameError):
        tools.run_python("print(globals())")


# ---------------------------------------------------------------------------
# mix parsing


def test_parse_mix():
    assert data.parse_mix("perspectives=0.3,tools=0.25,consciousness=0.25,mixed=0.2") == pytest.approx(data.DEFAULT_MIX)
    m = data.parse_mix("tools=3, mixed=1")
    assert m == {"perspectives": 0, "tools": 0.75, "consciousness": 0, "mixed": 0.25, "copying": 0}


@pytest.mark.parametrize("spec, match", [
    ("", "empty"), ("tools", "category=weight"), ("robots=1", "unknown category 'robots'"),
    ("tools=abc", "not a number"), ("tools=-1", ">= 0"), ("tools=0,mixed=0", "sum to 0"),
    ("tools=1,tools=2", "twice"), ("tools=nan", "finite"),
])
def test_parse_mix_errors(spec, match):
    with pytest.raises(data.DataError, match=match):
        data.parse_mix(spec)


def test_generate_bad_args():
    with pytest.raises(data.DataError):
        data.generate(-1)
    with pytest.raises(data.DataError):
        data.generate(10, mix={"tools": 0})
    with pytest.raises(data.DataError):
        data.generate(10, mix={"other": 1})


# ---------------------------------------------------------------------------
# user data


def test_load_jsonl_and_txt(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"text": "one"}\n\n{"text": "two", "category": "notes"}\r\n', encoding="utf-8")
    t = tmp_path / "b.txt"
    t.write_text("para one\nline two\n\n  \npara 2 日本\n", encoding="utf-8")
    got = data.load_user_data([j, str(t)])
    assert got == [{"category": "user", "text": "one"}, {"category": "notes", "text": "two"},
                   {"category": "user", "text": "para one\nline two"}, {"category": "user", "text": "para 2 日本"}]
    assert data.load_user_data(j) == got[:2]


@pytest.mark.parametrize("content, match", [
    (b'{"text": "ok"}\n{"text": broken}\n', r"bad\.jsonl:2: invalid JSON"),
    (b'{"text": "ok"}\n\n[1, 2]\n', r"bad\.jsonl:3: expected a JSON object"),
    (b'{"txt": "ok"}\n', r"bad\.jsonl:1: missing or empty string field 'text'"),
    (b'{"text": "ok", "category": 5}\n', r"bad\.jsonl:1: 'category'"),
    (b"", r"bad\.jsonl: file is empty"),
    (b"  \n\n", r"bad\.jsonl: file is empty"),
    (b'{"text": "caf\xe9"}\n', r"bad\.jsonl: invalid UTF-8 at byte offset 13 \(line 1\)"),
    (b'{"text": "a"}\n{"text": "\xff"}\n', r"byte offset 24 \(line 2\)"),
])
def test_load_jsonl_errors(tmp_path, content, match):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(data.DataError, match=match):
        data.load_user_data([p])


def test_load_other_errors(tmp_path):
    with pytest.raises(data.DataError, match="cannot read"):
        data.load_user_data([tmp_path / "missing.jsonl"])
    d = tmp_path / "dir.txt"
    d.mkdir()
    with pytest.raises(data.DataError, match="directory"):
        data.load_user_data([d])
    csv = tmp_path / "x.csv"
    csv.write_text("a")
    with pytest.raises(data.DataError, match="unsupported file type"):
        data.load_user_data([csv])
    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"ok\n\nna\xefve")
    with pytest.raises(data.DataError, match=r"latin\.txt: invalid UTF-8 at byte offset 6"):
        data.load_user_data([bad])


# ---------------------------------------------------------------------------
# split


def test_split_disjoint_and_per_category_fraction(big):
    ex = big[0][:2000] + [{"category": "tiny", "text": "a"}, {"category": "tiny", "text": "b"},
                          {"category": "single", "text": "c"}]
    train, val = data.split_by_example(ex, 0.05, seed=3)
    assert len(train) + len(val) == len(ex)
    assert not {id(e) for e in train} & {id(e) for e in val}
    assert not {e["text"] for e in train} & {e["text"] for e in val}
    cats = {e["category"] for e in ex}
    for cat in cats:
        n = sum(e["category"] == cat for e in ex)
        nv = sum(e["category"] == cat for e in val)
        nt = sum(e["category"] == cat for e in train)
        if n >= 2:
            assert nv >= max(1, math.ceil(0.05 * n)) and nt >= 1, cat
        else:
            assert nv == 0
    assert data.split_by_example(ex, 0.05, seed=3) == (train, val)
    assert data.split_by_example(ex, 0.05, seed=4) != (train, val)


def test_split_keeps_duplicates_together():
    ex = [{"category": "user", "text": t} for t in ["x"] * 5 + [str(i) for i in range(40)]]
    train, val = data.split_by_example(ex, 0.1, seed=0)
    assert not {e["text"] for e in train} & {e["text"] for e in val}
    assert len(val) >= 5 and train


@pytest.mark.parametrize("f", [0, 1, -0.1, 1.5, True, "0.1"])
def test_split_bad_fraction(f):
    with pytest.raises(data.DataError):
        data.split_by_example([{"category": "user", "text": "a"}], f)


# ---------------------------------------------------------------------------
# command line


def test_cli_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "d" / "data.jsonl"
    assert data.main(["--samples", "40", "--out", str(out), "--seed", "5", "--mix", "tools=1,mixed=1", "--stats"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40
    recs = [json.loads(x) for x in lines]
    assert {r["category"] for r in recs} == {"tools", "mixed"}
    assert all(r["text"] and ("tool" not in r or r["messages"]) for r in recs)
    printed = capsys.readouterr().out
    assert "generated 40 examples" in printed and "top_skeleton_share" in printed


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        data.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--samples", "--out", "--seed", "--mix", "--stats"):
        assert flag in text
    with pytest.raises(SystemExit) as e:
        data.main(["--mix", "robots=1"])
    assert e.value.code == 2
    assert "unknown category" in capsys.readouterr().err


def test_copying_answers_are_the_requests_text():
    """Each assistant turn of a copying example is the text its request gives (plain or as the
    JSON string under "text"), and the texts are drawn at random: copying is the only way."""
    ex = data.generate(400, seed=3, mix={"copying": 1})
    answers = []
    for e in ex:
        msgs = e["messages"]
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * ((len(msgs) - 1) // 2)
        for u, a in zip(msgs[1::2], msgs[2::2]):
            text = a["content"]
            if text.startswith("{"):
                text = json.loads(text)["text"]
                assert a["content"] == json.dumps({"text": text}, ensure_ascii=False)
            assert text and text in u["content"], (u, a)
            answers.append(text)
    assert len(set(answers)) / len(answers) > 0.95

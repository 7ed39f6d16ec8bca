"""The tools category: request -> assistant turn that is exactly a tool call -> tool turn with
the true result (codette_np.data.tools runs the call offline) -> answer."""

from __future__ import annotations

import random
import re
from urllib.parse import urlsplit

from codette_np.data import tools
from codette_np.data.common import _and, _cap, _example, _fmt


PROJECTS = (
    ("weather-station", "Logs temperature and rainfall from a garden sensor."),
    ("recipe-box", "Keeps family recipes in plain text."),
    ("budget-tracker", "Tracks monthly spending by category."),
    ("garden-log", "Records what was planted and when."),
    ("book-club", "Lists books, meetings and reading notes."),
    ("trail-map", "Collects hiking routes and distances."),
    ("chess-notes", "Stores opening ideas and game reviews."),
    ("bird-counter", "Counts birds seen at the feeder each day."),
)
TODO_ITEMS = (
    "fix the login bug", "write tests for the parser", "update the README", "call the plumber",
    "buy more seeds", "back up the photos", "renew the library card", "plan the team meeting",
    "review the budget", "clean the data folder", "water the tomatoes", "reply to Sam",
    "order a new sensor", "print the trail maps", "sort the recipes", "book the meeting room",
)
IDEAS = (
    "add a chart of the monthly totals", "send a weekly email summary", "support dark mode",
    "export the data as CSV", "add a search box", "show the average per week",
    "let users tag entries", "add a map view",
)
CODE_FILES = (
    ("stats.py", "def mean(values):\n    return sum(values) / len(values)"),
    ("greet.py", "def greet(name):\n    return 'Hello, ' + name"),
    ("convert.py", "def km_to_miles(km):\n    return km / 1.609344"),
    ("shapes.py", "def area(width, height):\n    return width * height"),
    ("cart.py", "def total(prices):\n    # TODO: apply discounts\n    return sum(prices)"),
    ("clean.py", "def clean(text):\n    return text.strip().lower()"),
    ("config.py", "DEBUG = False\nMAX_ITEMS = 50\nLANGUAGE = 'en'"),
    ("report.py", "from stats import mean\n\ndef report(values):\n    print('average:', mean(values))"),
)
CSV_FILES = (
    ("sales.csv", "month,sales"), ("temperatures.csv", "day,celsius"), ("scores.csv", "student,score"),
    ("rainfall.csv", "month,mm"), ("visits.csv", "week,visits"),
)
CSV_KEYS = {
    "month": ("jan", "feb", "mar", "apr", "may", "jun"), "day": ("mon", "tue", "wed", "thu", "fri"),
    "student": ("ana", "ben", "chen", "dara", "eli"), "week": ("w1", "w2", "w3", "w4", "w5"),
}
GUIDE_LINES = (
    "Install Python 3.11 first.", "Run report.py to print the summary.", "Data files live in data/.",
    "Notes go in the notes folder.", "Ask before deleting anything.", "Keep each file small.",
)


def _workspace(r: random.Random) -> dict:
    """A small project: README plus a random subset of notes, code, data, docs."""
    name, desc = r.choice(PROJECTS)
    files = {"README.md": f"# {name}\n{desc}"}
    if r.random() < 0.8:
        files["notes/todo.txt"] = "\n".join(r.sample(TODO_ITEMS, r.randint(2, 4)))
    if r.random() < 0.5:
        files["notes/ideas.md"] = "# Ideas\n" + "\n".join("- " + x for x in r.sample(IDEAS, r.randint(1, 3)))
    for fname, code in r.sample(CODE_FILES, r.randint(1, 3)):
        files["src/" + fname] = code
    for fname, header in r.sample(CSV_FILES, r.randint(0, 2)):
        key = header.split(",")[0]
        rows = [f"{k},{r.randint(3, 120)}" for k in CSV_KEYS[key][:r.randint(3, 5)]]
        files["data/" + fname] = "\n".join([header] + rows)
    if r.random() < 0.4:
        files["docs/guide.md"] = "# Guide\n" + "\n".join(r.sample(GUIDE_LINES, r.randint(2, 3)))
    for _ in range(r.randint(1, 3)):  # files with generated names and lines
        files[gen_path(r)] = "\n".join(gen_text(r) for _ in range(r.randint(1, 4)))
    return dict(sorted(files.items()))


def _quote_lines(content: str, limit: int = 3) -> str:
    lines = [x for x in content.split("\n") if x.strip()]
    shown = "; ".join(f'"{x.strip()}"' for x in lines[:limit])
    return shown + ("; and more" if len(lines) > limit else "")


def _tool_read_file(r, files):
    path = r.choice(sorted(files)) if r.random() < 0.93 else r.choice(("notes/plan.txt", "src/main.py", "data/old.csv"))
    if r.random() < 0.3 and path in files and files[path].count("\n") >= 2:
        n = files[path].count("\n") + 1
        a = r.randint(1, n - 1)
        b = r.randint(a + 1, n)
        user = r.choice(("Read lines {a} to {b} of {p}.", "Show me lines {a}-{b} of the file {p}.",
                         "Read {p} from line {a} to line {b}.")).format(a=a, b=b, p=path)
        params = {"path": path, "start_line": a, "end_line": b}
    else:
        user = r.choice(("Read the file {p}.", "Show me the contents of the file {p}.", "Open {p} and tell me what it says.",
                         "What is in {p}? Please read the file.", "Please read {p}.", "Can you read the file {p} for me?")).format(p=path)
        params = {"path": path}
    return user, params


def _answer_read_file(r, params, result):
    p = params["path"]
    if "error" in result:
        return r.choice((f"There is no file called {p} in this workspace, so I could not read it.",
                         f"The file {p} does not exist. Check the path, or list the directory to see what is there."))
    content = result["content"]
    n = len(content.split("\n"))
    where = (f"Lines {params['start_line']} to {params['end_line']} of {p}" if "start_line" in params else p)
    return r.choice((f"{where} ({n} lines): {_quote_lines(content)}.",
                     f"Here is what {where} says: {_quote_lines(content)}.",
                     f"{where} contains {n} lines. They read: {_quote_lines(content)}."))


WRITE_TEXTS = (
    "hello world", "remember the milk", "meeting moved to Friday", "version 2 is ready", "tests pass",
    "call the vet at 10", "buy stamps", "the sensor is fixed", "draft sent to Maria", "check the oil",
    "water the basil", "return the drill", "pay the rent", "pack the tent",
)
WRITE_PATHS = ("notes/todo.txt", "notes/log.txt", "notes/reminder.txt", "docs/status.md", "notes/shopping.txt", "README.md")

# Argument values are generated from these pools (tens of thousands of combinations), so that a
# call's arguments cannot be memorized: copying them from the request is the only way to get
# them right.
FOLDERS = ("notes", "docs", "logs", "drafts", "plans", "reports", "todo", "misc", "archive", "ideas", "home",
           "work", "trips", "recipes", "garden", "music")
NAMES = ("alpha", "budget", "cedar", "delta", "ember", "fjord", "granite", "harbor", "iris", "jasper", "kettle",
         "lumen", "maple", "nectar", "orbit", "pepper", "quartz", "raven", "saffron", "tundra", "umber", "velvet",
         "willow", "yonder", "zephyr", "amber", "birch", "comet", "dune", "echo", "falcon", "grove", "hazel",
         "indigo", "juniper", "koala", "lotus", "meadow", "nova", "olive", "prism", "quill", "ridge", "sierra",
         "timber", "ultra", "vista", "wren", "xenon", "yarrow", "zinnia")
PEOPLE = ("Maria", "Sam", "Priya", "Jonas", "Aiko", "Omar", "Lena", "Diego", "Chloe", "Tariq", "Ines", "Kofi")
VERBS = ("call", "email", "visit", "pay", "thank", "meet", "remind", "text", "invite", "ask")
THINGS = ("the plumber", "the landlord", "the bank", "the dentist", "the team", "the printer shop", "grandma",
          "the school", "the garage", "the library")
CHORES = ("water the {n} plant", "pack the {n} box", "label the {n} jars", "fix the {n} lamp",
          "return the {n} book", "clean the {n} shelf", "buy {k} {n} candles", "print {k} copies of {n}")
TIMES = ("at 9", "at 10:30", "on Monday", "on Friday", "before noon", "after lunch", "tomorrow", "next week")


def gen_path(r) -> str:
    return f"{r.choice(FOLDERS)}/{r.choice(NAMES)}{r.choice(('', '-' + str(r.randint(1, 99))))}{r.choice(('.txt', '.md'))}"


def gen_text(r) -> str:
    if r.random() < 0.5:
        return f"{r.choice(VERBS)} {r.choice(PEOPLE + THINGS)} {r.choice(TIMES)}"
    return r.choice(CHORES).format(n=r.choice(NAMES), k=r.randint(2, 12))


def _tool_write_file(r, files):
    path, text = gen_path(r), gen_text(r)
    if r.random() < 0.4:
        user = r.choice(("Append '{t}' to {p}.", "Add the text '{t}' to the end of {p}.",
                         "Append the line '{t}' to the file {p}.")).format(t=text, p=path)
        return user, {"path": path, "content": text, "append": True}
    user = r.choice(("Write '{t}' to {p}.", "Save the text '{t}' in the file {p}.", "Create the file {p} containing '{t}'.",
                     "Write the text '{t}' into {p}.")).format(t=text, p=path)
    return user, {"path": path, "content": text}


def _answer_write_file(r, params, result):
    verb = "Appended" if params.get("append") else "Wrote"
    return r.choice((f"Done. {verb} {result['bytes_written']} bytes to {params['path']}.",
                     f"{verb} '{params['content']}' to {params['path']} ({result['bytes_written']} bytes).",
                     f"The file {params['path']} is updated: {result['bytes_written']} bytes written."))


def _tool_list_directory(r, files):
    dirs = sorted({k.split("/")[0] for k in files if "/" in k})
    path = r.choice(dirs + ["."]) if r.random() < 0.95 else r.choice(("images", "tests", "build"))
    if r.random() < 0.35:
        user = r.choice(("List everything in '{d}', including subfolders.", "Recursively list the directory '{d}'.",
                         "Show the full tree under '{d}', recursively.")).format(d=path)
        return user, {"path": path, "recursive": True}
    if path == ".":
        user = r.choice(("List the files in the directory '.'.", "What is in the top folder '.'? List it.",
                         "List the directory '.' for me."))
    else:
        user = r.choice(("List the files in {d}.", "What files are in the {d} directory?", "List the directory {d}.",
                         "Show me what is inside the folder {d}.", "List the contents of the {d} folder.")).format(d=path)
    return user, {"path": path}


def _answer_list_directory(r, params, result):
    d = params["path"]
    if "error" in result:
        return r.choice((f"There is no directory called {d} here.", f"The directory {d} does not exist in this workspace."))
    entries = result["entries"]
    where = "the top folder" if d == "." else f"the {d} directory"
    return r.choice((f"{_cap(where)} has {len(entries)} entries: {_and(entries)}.",
                     f"There are {len(entries)} entries in {where}: {_and(entries)}.",
                     f"Inside {where}: {_and(entries)}."))


ABSENT_PATTERNS = ("password", "FIXME", "deadline", "invoice", "lambda", "unicorn")


def _tool_search_files(r, files):
    if r.random() < 0.85:
        path = r.choice(sorted(files))
        words = re.findall(r"[A-Za-z_]{4,}", files[path])
        pattern = r.choice(words) if words else "TODO"
    else:
        pattern = r.choice(ABSENT_PATTERNS)
    if r.random() < 0.5:
        d = r.choice(sorted({k.split("/")[0] for k in files if "/" in k}))
        user = r.choice(("Search {d} for the text '{x}'.", "Find every line containing '{x}' in {d}.",
                         "Search the files in {d} for '{x}'.")).format(d=d, x=pattern)
        return user, {"pattern": pattern, "directory": d}
    user = r.choice(("Search the files for '{x}'.", "Which files mention '{x}'? Search them.",
                     "Find all lines that contain '{x}'.", "Search the workspace for '{x}'.")).format(x=pattern)
    return user, {"pattern": pattern}


def _answer_search_files(r, params, result):
    x, m = params["pattern"], result["matches"]
    if not m:
        return r.choice((f"No file contains '{x}'.", f"The search found no lines with '{x}'."))
    where = "; ".join(f"{h['path']} line {h['line']}" for h in m[:3]) + ("; and more" if len(m) > 3 else "")
    return r.choice((f"'{x}' appears {len(m)} time{'s' if len(m) > 1 else ''}: {where}.",
                     f"Found {len(m)} match{'es' if len(m) > 1 else ''} for '{x}': {where}.",
                     f"The first match for '{x}' is in {m[0]['path']} line {m[0]['line']}: \"{m[0]['text'].strip()}\"."
                     + (f" There are {len(m)} matches in total." if len(m) > 1 else "")))


PY_WORDS = ("codette", "python", "newton", "galaxy", "river", "lantern", "harmony", "quantum", "pendulum", "garden")


def _py_expr(r) -> str:
    a, b, c = r.randint(2, 99), r.randint(2, 99), r.randint(2, 20)
    w = r.choice(PY_WORDS)
    nums = ", ".join(str(r.randint(1, 60)) for _ in range(r.randint(3, 6)))
    return r.choice((
        f"{a} * {b} + {c}", f"({a} + {b}) * {c}", f"{c} ** {r.randint(2, 4)}", f"{a * c} // {b}", f"{a * b} % {c}",
        f"round({a} / {b}, 3)", f"sum(range(1, {a + 1}))", f"sorted([{nums}])", f"max([{nums}])", f"min([{nums}])",
        f"sum([{nums}])", f"'{w}'.upper()", f"'{w}'[::-1]", f"len('{w}')", f"'{w}'.count('{r.choice(w)}')",
        f"'-'.join(['{w}', '{r.choice(PY_WORDS)}'])", f"[x * x for x in range(1, {r.randint(3, 8)})]",
        f"list(range(0, {a}, {c}))",
    ))


def _tool_execute_python(r, files):
    expr = _py_expr(r)
    if r.random() < 0.4:
        user = r.choice(("Use Python to compute {e}.", "Compute {e} with Python.", "Run Python to work out {e}.")).format(e=expr)
        return user, {"code": f"print({expr})"}
    if r.random() < 0.3:
        a, b = r.randint(2, 30), r.randint(2, 30)
        code = r.choice((f"x = {a}; y = {b}; print(x * y - x)", f"n = {a}; print(n * (n + 1) // 2)",
                         f"words = ['{r.choice(PY_WORDS)}', '{r.choice(PY_WORDS)}']; print(len(words), words[0])"))
    else:
        code = f"print({expr})"
    if r.random() < 0.25:
        t = r.choice((2, 5, 10, 30))
        user = r.choice(("Run this Python code with a timeout of {t} seconds: {c}",
                         "Execute with a {t} second timeout: {c}")).format(t=t, c=code)
        return user, {"code": code, "timeout": t}
    user = r.choice(("Run this Python code: {c}", "Execute this Python and tell me the output: {c}",
                     "What does this Python code print? {c}", "Please run: {c}")).format(c=code)
    return user, {"code": code}


def _answer_execute_python(r, params, result):
    out = result["stdout"]
    shown = out.replace("\n", " / ")
    m = re.fullmatch(r"print\((.*)\)", params["code"])
    if m and "\n" not in params["code"]:
        return r.choice((f"It printed {shown}, so {m.group(1)} evaluates to {shown}.", f"The output is {shown}.",
                         f"Python says {m.group(1)} = {shown}."))
    return r.choice((f"The code printed: {shown}.", f"Output: {shown}.", f"Running it prints {shown}."))


NO_RESULT_QUERIES = ("tomorrow's lottery numbers", "the score of last night's match", "today's bitcoin price",
                     "my horoscope for next week", "the winner of the next election")


def _tool_web_search(r, files):
    query = r.choice(tools.FACTS)[1] if r.random() < 0.92 else r.choice(NO_RESULT_QUERIES)
    if r.random() < 0.3:
        k = r.randint(1, 5)
        user = r.choice(("Find the top {k} web results for {q}.", "Search the web for {q} and show {k} results.",
                         "Give me {k} web search results about {q}.")).format(k=k, q=query)
        return user, {"query": query, "max_results": k}
    user = r.choice(("Search the web for {q}.", "Look up {q} online.", "Do a web search on {q}.",
                     "Can you search the web for {q}?", "Search online: {q}")).format(q=query)
    return user, {"query": query}


def _answer_web_search(r, params, result):
    res = result["results"]
    if not res:
        return r.choice((f"The search returned no results for {params['query']}, so I can't answer that from here.",
                         "Nothing came back for that search. I don't want to guess, so I have no answer."))
    top = res[0]
    text = r.choice((f"According to the search: {top['snippet']}", f"The top result, '{top['title']}', says: {top['snippet']}",
                     f"I found {len(res)} result{'s' if len(res) > 1 else ''}. The most relevant: {top['snippet']}"))
    if len(res) > 1 and r.random() < 0.5:
        text += f" Another result is about {_and([x['title'] for x in res[1:]])}."
    return text


def _tool_query_knowledge_base(r, files):
    fact = r.choice(tools.FACTS)
    query = fact[1]
    if r.random() < 0.4:
        user = r.choice(("Query the knowledge base about {q} in the context of {c}.",
                         "Look up {q} in the knowledge base, context: {c}.",
                         "Ask the knowledge base about {q}, context {c}.")).format(q=query, c=fact[2])
        return user, {"query": query, "context": fact[2]}
    user = r.choice(("Check the knowledge base for {q}.", "What does the knowledge base say about {q}?",
                     "Look up {q} in the knowledge base.", "Query the knowledge base: {q}")).format(q=query)
    return user, {"query": query}


def _answer_query_knowledge_base(r, params, result):
    if result["answer"] is None:
        return "The knowledge base has no entry for that, so I can't confirm an answer."
    return r.choice((f"The knowledge base ({result['source']}) says: {result['answer']}",
                     f"From the knowledge base: {result['answer']}",
                     f"{result['answer']} (source: {result['source']})"))


UNIT_NAMES = {"km": "km", "mi": "miles", "kg": "kg", "lb": "pounds", "c": "°C", "f": "°F", "m": "metres", "ft": "feet"}
NOTE_TEXTS = ("call mom", "buy bread", "team sync at 3", "send the report", "water plants", "fix the bike")
OFFLINE_URLS = ("https://weather.example.org/today", "https://news.example.net/latest", "https://shop.example.com/api/cart")


def _tool_api_call(r, files):
    base = "https://" + tools.API_HOST
    kind = r.choices(("fact", "convert", "post", "put", "delete", "offline"), (3, 3, 2, 1, 1, 1))[0]
    body = headers = None
    if kind == "fact":
        url, method = f"{base}/v1/facts/{r.choice(tools.FACTS)[0]}", "GET"
    elif kind == "convert":
        a, b = r.choice(sorted(tools.CONVERSIONS))
        url, method = f"{base}/v1/convert?value={r.randint(1, 200)}&from={a}&to={b}", "GET"
    elif kind == "post":
        url, method, body = f"{base}/v1/notes", "POST", {"text": gen_text(r)}
    elif kind == "put":
        url, method, body = f"{base}/v1/notes/{r.randint(100, 999)}", "PUT", {"text": gen_text(r)}
    elif kind == "delete":
        url, method = f"{base}/v1/notes/{r.randint(100, 999)}", "DELETE"
    else:
        url, method = r.choice(OFFLINE_URLS), "GET"
    if method == "GET":
        user = r.choice(("Send a GET request to {u}.", "Call {u} with a GET request.", "Make a GET request to {u}.",
                         "Use the API: GET {u}.")).format(u=url)
        if r.random() < 0.25:
            user += " Include the header Accept: application/json."
            headers = {"Accept": "application/json"}
    elif method == "DELETE":
        user = r.choice(("Send a DELETE request to {u}.", "Delete the resource at {u} with a DELETE request.")).format(u=url)
    else:
        user = r.choice(("Send a {m} request to {u} with the body {b}.", "Make a {m} request to {u}, body {b}.",
                         "{m} {b} to {u}.")).format(m=method, u=url, b=tools.to_json(body))
    return user, {"url": url, "method": method, "headers": headers, "body": body}


def _answer_api_call(r, params, result):
    status, body = result["status"], result["body"]
    if status == 503:
        return f"The request failed with status 503: {_host(params['url'])} is not reachable from here, so I have no data from it."
    if status == 204:
        note = params["url"].rsplit("/", 1)[1]
        return r.choice((f"Status 204: note {note} was deleted.", f"The API confirmed the deletion of note {note} (status 204)."))
    if status >= 400:
        return f"The API returned status {status}: {body['error']}."
    if "fact" in body:
        return r.choice((f"The API answered with status 200: {body['fact']}", f"Status 200. {body['fact']}"))
    if "result" in body:
        return r.choice((f"{body['value']} {UNIT_NAMES[body['from']]} is {_fmt(body['result'], 3)} {UNIT_NAMES[body['to']]}.",
                         f"The conversion API says {body['value']} {UNIT_NAMES[body['from']]} = {_fmt(body['result'], 3)} {UNIT_NAMES[body['to']]}."))
    if status == 201:
        return r.choice((f"Created a note with id {body['id']} (status 201).", f"The note '{body['text']}' was saved as id {body['id']}."))
    return r.choice((f"Note {body['id']} now reads '{body['text']}' (status 200).", f"Updated note {body['id']}."))


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


ANALYSIS_CONTEXTS = (
    ("weekly sales", 10, 200, 0), ("daily temperatures in °C", -5, 35, 1), ("test scores", 40, 100, 0),
    ("monthly rainfall in mm", 0, 150, 0), ("page load times in ms", 80, 900, 0),
    ("daily step counts in thousands", 2, 15, 1), ("hours of sleep per night", 4, 10, 1), ("customer ratings", 1, 5, 1),
)
ANALYSIS_ASK = {
    "summary": ("Summarize these numbers: {d}.", "Give me summary statistics for {d}.",
                "Here are my {c}: {d}. Can you summarize them?", "Compute a statistical summary of {d}."),
    "trend": ("What is the trend in {d}?", "Here are my {c}: {d}. Is there a trend?",
              "Analyze the trend of this series: {d}.", "Find the trend in these {c}: {d}."),
    "distribution": ("Describe the distribution of {d}.", "How are these {c} distributed: {d}?",
                     "Show me the distribution of {d}.", "Analyze the distribution of my {c}: {d}."),
    "correlation": ("Run a correlation analysis on {d}.", "Do these {c} correlate with time: {d}? Check the correlation.",
                    "Check the correlation in this series: {d}.", "Compute the correlation for these {c}: {d}."),
}


def _random_data(r) -> tuple[str, list]:
    ctx, lo, hi, nd = r.choice(ANALYSIS_CONTEXTS)
    n = r.randint(4, 9)
    span = hi - lo
    start = r.uniform(lo + 0.3 * span, hi - 0.3 * span)
    drift = r.uniform(-1, 1) * 0.3 * span / (n - 1)
    data = []
    for i in range(n):
        v = min(hi, max(lo, start + drift * i + r.uniform(-1, 1) * 0.12 * span))
        data.append(round(v, nd) if nd else int(round(v)))
    return ctx, data


def _tool_analyze_data(r, files):
    ctx, data = _random_data(r)
    kind = r.choice(("summary", "trend", "distribution", "correlation"))
    user = r.choice(ANALYSIS_ASK[kind]).format(c=ctx, d=", ".join(tools.to_json(x) for x in data))
    return user, {"data": data, "analysis_type": kind}


def _strength(v: float) -> str:
    return "strong" if abs(v) >= 0.7 else "moderate" if abs(v) >= 0.3 else "weak"


def _answer_analyze_data(r, params, res):
    kind = params["analysis_type"]
    if kind == "summary":
        return r.choice((
            f"The {res['count']} values have a mean of {res['mean']} and a median of {res['median']}, ranging from {res['min']} to {res['max']}.",
            f"Mean {res['mean']}, median {res['median']}, standard deviation {res['stdev']}; the smallest value is {res['min']} and the largest {res['max']}.",
            f"Summary: {res['count']} values, average {res['mean']}, spread (standard deviation) {res['stdev']}, from {res['min']} to {res['max']}."))
    if kind == "trend":
        d = res["direction"]
        return r.choice((
            f"The series is {d}: the fitted slope is {res['slope']} per step, starting near {res['intercept']}.",
            f"A straight-line fit gives a slope of {res['slope']} per step, so the trend is {d}.",
            f"Trend: {d}. Each step changes the value by about {res['slope']} on average."))
    if kind == "distribution":
        s = res["skewness"]
        shape = "skewed to the right" if s > 0.5 else "skewed to the left" if s < -0.5 else "roughly symmetric"
        return r.choice((
            f"The middle half of the values lies between {res['q1']} and {res['q3']} (IQR {res['iqr']}), around a median of {res['median']}. With a skewness of {s}, the distribution is {shape}.",
            f"Median {res['median']}, quartiles {res['q1']} and {res['q3']}; the skewness of {s} means it is {shape}."))
    rr, lag = res["r_with_index"], res["lag1_r"]
    sign = "positive" if rr > 0 else "negative" if rr < 0 else "zero"
    return r.choice((
        f"The correlation with time is r = {rr}, a {_strength(rr)} {sign} relationship; consecutive values have a lag-1 correlation of {lag}.",
        f"r = {rr} against the position in the series ({_strength(rr)}), and {lag} between each value and the next."))


TOOL_MAKERS = {
    "read_file": (_tool_read_file, _answer_read_file),
    "write_file": (_tool_write_file, _answer_write_file),
    "list_directory": (_tool_list_directory, _answer_list_directory),
    "search_files": (_tool_search_files, _answer_search_files),
    "execute_python": (_tool_execute_python, _answer_execute_python),
    "web_search": (_tool_web_search, _answer_web_search),
    "analyze_data": (_tool_analyze_data, _answer_analyze_data),
    "query_knowledge_base": (_tool_query_knowledge_base, _answer_query_knowledge_base),
    "api_call": (_tool_api_call, _answer_api_call),
}
FILE_TOOLS = ("read_file", "write_file", "list_directory", "search_files")


def _run_tool(r, name):
    """(user text, call text, result text, result dict, params, workspace)."""
    files = _workspace(r) if name in FILE_TOOLS else None
    user, params = TOOL_MAKERS[name][0](r, files)
    params = tools.order_params(name, params)
    call = tools.format_call(name, params)
    before = dict(files) if files is not None else None
    result = tools.execute(name, params, dict(files) if files is not None else None)
    return user, call, result, params, before


TOOL_PREFIXES = ("",) * 6 + ("Quick task: ", "Hi! ", "I need some help. ", "For my project: ", "One more thing. ",
                             "Hello. ", "When you have a moment: ", "Next step: ")
TOOL_SUFFIXES = ("",) * 6 + (" Thanks!", " Thank you.", " Use the right tool for it.", " Keep the answer short.",
                             " Thanks in advance.", " I'll wait for the result.")


def gen_tools(r: random.Random) -> dict:
    name = r.choice(tools.TOOL_NAMES)
    user, call, result, params, files = _run_tool(r, name)
    user = r.choice(TOOL_PREFIXES) + user + r.choice(TOOL_SUFFIXES)
    answer = TOOL_MAKERS[name][1](r, params, result)
    turns = [("user", user), ("assistant", call), ("tool", tools.to_json(result)), ("assistant", answer)]
    return _example("tools", turns, tool=name, files=files)



"""The copying category: the user gives a text (random words, numbers, a path, a URL, an
expression) and asks for it back, plain or as a JSON string; the assistant writes it exactly.

The texts are random draws, so nothing about them can be memorized: the only way to predict
the assistant's turn is to copy from the request. That is the skill a tool call needs for its
arguments, taught here in isolation and in bulk (several requests per example).
"""

from __future__ import annotations

import random

from codette_np.data import tools
from codette_np.data.common import _example
from codette_np.data.tool_use import FOLDERS, NAMES, PEOPLE, THINGS, TIMES, VERBS

WORDS = tuple(sorted({w for f in tools.FACTS for w in (f[1] + " " + f[3]).replace(",", " ").replace(".", " ").split()
                      if w.isalpha()} | set(NAMES) | set(FOLDERS)))
EXTENSIONS = (".txt", ".md", ".py", ".csv", ".json", ".log")


def _words(r: random.Random) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(2, 9)))


def _numbers(r: random.Random) -> str:
    n, hi = r.randint(3, 9), r.choice((10, 100, 1000))
    if r.random() < 0.3:
        return ", ".join(f"{r.uniform(0, hi / 10):.1f}" for _ in range(n))
    return ", ".join(str(r.randrange(hi)) for _ in range(n))


def _path(r: random.Random) -> str:
    name = r.choice(NAMES) + (f"-{r.randrange(100)}" if r.random() < 0.5 else "")
    return "/".join([r.choice(FOLDERS) for _ in range(r.randint(0, 2))] + [name + r.choice(EXTENSIONS)])


def _url(r: random.Random) -> str:
    parts = [r.choice(NAMES) for _ in range(r.randint(1, 3))]
    return f"https://{tools.API_HOST}/v1/" + "/".join(parts) + (f"/{r.randrange(1000)}" if r.random() < 0.5 else "")


def _note(r: random.Random) -> str:
    return f"{r.choice(VERBS)} {r.choice(PEOPLE + THINGS)} {r.choice(TIMES)}"


def _expression(r: random.Random) -> str:
    a, b, c = (r.randrange(1, 100) for _ in range(3))
    return r.choice((f"{a} * {b} + {c}", f"({a} + {b}) / {c}", f"sum(range({a}, {a + b}))",
                     f"sorted([{a}, {b}, {c}])", f"max({a}, {b}, {c}) - {c}"))


TEXTS = (_words, _numbers, _path, _url, _note, _expression)

PLAIN_ASKS = ("Repeat exactly: {t}", "Say this back to me word for word: {t}", "Copy this text: {t}",
              "Echo: {t}", "Please repeat after me: {t}", "Write back exactly what follows: {t}",
              "Repeat '{t}' exactly.", "Say '{t}' back to me.")
JSON_ASKS = ("Put this into a JSON object under the key \"text\": {t}", "Wrap '{t}' as JSON with the key \"text\".",
             "Give me {t} as a JSON string under \"text\".", "JSON, key \"text\", value: {t}")


def _pair(r: random.Random) -> tuple[str, str]:
    """One request and its exact answer."""
    text = r.choice(TEXTS)(r)
    if r.random() < 0.5:
        return r.choice(PLAIN_ASKS).format(t=text), text
    return r.choice(JSON_ASKS).format(t=text), tools.to_json({"text": text})


def gen_copying(r: random.Random) -> dict:
    turns = []
    for _ in range(r.randint(1, 3)):
        user, answer = _pair(r)
        turns += [("user", user), ("assistant", answer)]
    return _example("copying", turns)

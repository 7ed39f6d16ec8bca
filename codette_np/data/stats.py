"""Diversity statistics of a dataset: distinct-n and template skeletons."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from codette_np import chat
from codette_np.data import tools
from codette_np.data.perspectives import ANALOGIES, CAUSAL, CREATIVE_MOVES, CREATIVE_TASKS, DESIGNS, DILEMMAS, OBJECTS, PERSONA, PERSPECTIVES, QUANTUM_CONCEPTS, SITUATIONS, SYSTEMS_TOPICS
from codette_np.data.tool_use import ABSENT_PATTERNS, ANALYSIS_CONTEXTS, CODE_FILES, CSV_FILES, CSV_KEYS, GUIDE_LINES, IDEAS, NOTE_TEXTS, NO_RESULT_QUERIES, OFFLINE_URLS, PROJECTS, PY_WORDS, TODO_ITEMS, UNIT_NAMES, WRITE_PATHS, WRITE_TEXTS, FOLDERS, NAMES, PEOPLE, THINGS, TIMES, VERBS
from codette_np.data.consciousness import SELF_THEMES
from codette_np.data.mixed import LENS_ADVICE, MIXED_PROBLEMS, MIXED_TOOL_LENSES

#
# distinct-n: unique n-grams / all n-grams over whitespace tokens of the
# texts, leaving out the system turn that every generated example shares.
# Skeleton: the text lowercased and split into word and punctuation
# tokens (whitespace dropped); every occurrence of a fill-pool phrase (any
# string of 3+ characters from the pools above and tools.FACTS: topics,
# questions, statements, file lines, names, ...) becomes "§", and every
# run of digits becomes "0". What is left is the template
# structure; the top-skeleton share is the frequency of the most common one.

_TOKEN = re.compile(r"[a-z_]+|[0-9]+|[^\sa-z0-9_]")


def _skel_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _pool_strings() -> list[str]:
    roots = [OBJECTS, CAUSAL, ANALOGIES, DESIGNS, CREATIVE_TASKS, CREATIVE_MOVES, QUANTUM_CONCEPTS, DILEMMAS,
             SYSTEMS_TOPICS, SITUATIONS, PERSPECTIVES, PERSONA, PROJECTS, TODO_ITEMS, IDEAS, CODE_FILES, CSV_FILES,
             CSV_KEYS, GUIDE_LINES, WRITE_TEXTS, WRITE_PATHS, ABSENT_PATTERNS, PY_WORDS, NO_RESULT_QUERIES,
             UNIT_NAMES, NOTE_TEXTS, OFFLINE_URLS, ANALYSIS_CONTEXTS, FOLDERS, NAMES, PEOPLE, THINGS, TIMES, VERBS,
             tools.FACTS, MIXED_PROBLEMS, SELF_THEMES,
             LENS_ADVICE, MIXED_TOOL_LENSES]
    found, stack = set(), list(roots)
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            found.add(x)
            found.update(line for line in x.split("\n"))
        elif isinstance(x, dict):
            stack += list(x.keys()) + list(x.values())
        elif isinstance(x, (list, tuple, set)):
            stack += list(x)
    return sorted(s for s in found if len(s.strip()) >= 3)


_TRIE: dict | None = None
_LEAF = ""  # key marking the end of a phrase in the trie (tokens are never empty)


def _phrase_trie() -> dict:
    """Token trie of all pool phrases, built once."""
    global _TRIE
    if _TRIE is None:
        trie: dict = {}
        for s in _pool_strings():
            node = trie
            for tok in _skel_tokens(s):
                node = node.setdefault(tok, {})
            node[_LEAF] = True
        _TRIE = trie
    return _TRIE


def skeleton(text: str) -> str:
    """The template structure of `text` (see the comment above): the longest
    pool phrase starting at each position becomes one "§"."""
    trie = _phrase_trie()
    toks = _skel_tokens(text)
    out, i, n = [], 0, len(toks)
    while i < n:
        node, j, hit = trie, i, 0
        while j < n and toks[j] in node:
            node = node[toks[j]]
            j += 1
            if _LEAF in node:
                hit = j - i
        if hit:
            out.append("§")
            i += hit
        else:
            out.append("0" if toks[i][0].isdigit() else toks[i])
            i += 1
    return " ".join(out)


_SYSTEM_TURN = chat.render_turn("system", chat.SYSTEM_PROMPT)


def _distinct(texts: list[str]) -> dict:
    stats = {}
    split = [t.removeprefix(_SYSTEM_TURN).split() for t in texts]
    for n in (1, 2, 3, 4):
        grams = Counter()
        for toks in split:
            grams.update(zip(*(toks[i:] for i in range(n))))
        total = sum(grams.values())
        stats[f"distinct_{n}"] = round(len(grams) / total, 4) if total else 0.0
    return stats


def distinct_ngram_stats(examples: list[dict]) -> dict:
    """Distinct-1..4 and the share of distinct texts, overall and per
    category, plus per category the share of the most frequent skeleton."""
    texts = [e["text"] for e in examples]
    out = {"n": len(texts), "distinct_text_share": round(len(set(texts)) / len(texts), 4) if texts else 0.0}
    out.update(_distinct(texts))
    by_cat = defaultdict(list)
    for e in examples:
        by_cat[e.get("category", "user")].append(e["text"])
    out["per_category"] = {}
    for cat, ts in sorted(by_cat.items()):
        skel = Counter(skeleton(t) for t in ts)
        d = {"n": len(ts), "distinct_text_share": round(len(set(ts)) / len(ts), 4)}
        d.update(_distinct(ts))
        d["skeletons"] = len(skel)
        d["top_skeleton_share"] = round(skel.most_common(1)[0][1] / len(ts), 4)
        out["per_category"][cat] = d
    return out



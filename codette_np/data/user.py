"""User data (.jsonl / .txt) and the train / validation split by example."""

from __future__ import annotations

import json
import math
import random
import re
from collections import defaultdict
from pathlib import Path

from codette_np.data.common import DataError



def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .jsonl or .txt file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file: {e.strerror or e}") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: invalid UTF-8 at byte offset {e.start} (line {line}): "
                        f"byte 0x{raw[e.start]:02x}") from None
    return text.removeprefix("\ufeff")


def load_user_data(paths) -> list[dict]:
    """Examples from user files, in order.

    .jsonl: one JSON object per line with a non-empty string `text` and an
    optional string `category` (default "user"); blank lines are skipped.
    .txt: paragraphs separated by blank lines, each one example ("user").
    Errors (unreadable, empty or non-UTF-8 file, malformed line) raise
    DataError naming the file and the line or byte offset."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix not in (".jsonl", ".txt"):
            raise DataError(f"{p}: unsupported file type {suffix or '(none)'!r}; use .jsonl or .txt")
        text = _read_text(p)
        if suffix == ".txt":
            for para in re.split(r"\n(?:[ \t]*\n)+", text.replace("\r\n", "\n")):
                if para.strip():
                    out.append({"category": "user", "text": para.strip("\n")})
            continue
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            t = obj.get("text")
            if not isinstance(t, str) or not t:
                raise DataError(f"{p}:{lineno}: missing or empty string field 'text'")
            cat = obj.get("category", "user")
            if not isinstance(cat, str) or not cat:
                raise DataError(f"{p}:{lineno}: 'category' must be a non-empty string")
            out.append({"category": cat, "text": t})
    return out


# ---------------------------------------------------------------------------
# train / validation split


def split_by_example(examples: list[dict], val_fraction: float = 0.05, seed: int = 0):
    """(train, val), disjoint by example, each keeping the input order.

    Per category, at least ceil(val_fraction * n) examples go to validation
    (at least 1 when the category has 2 or more), and train keeps at least
    one. Examples with identical text always land on the same side."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    by_cat = defaultdict(dict)
    for i, e in enumerate(examples):
        by_cat[e.get("category", "user")].setdefault(e["text"], []).append(i)
    val_idx = set()
    for cat, groups in by_cat.items():
        n = sum(len(g) for g in groups.values())
        if n < 2:
            continue
        want = max(1, math.ceil(val_fraction * n))
        order = list(groups.values())
        random.Random(f"{seed}:{cat}").shuffle(order)
        taken = 0
        for g in order:
            if taken >= want:
                break
            if n - taken - len(g) >= 1:
                val_idx.update(g)
                taken += len(g)
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [e for i, e in enumerate(examples) if i in val_idx]
    return train, val




def run_examples(samples: int, seed: int = 0, mix: str | None = None, data=None, no_builtin: bool = False):
    """A training run's examples, in the trainer's order: the built-in set (unless no_builtin
    with data), then the user's files."""
    from codette_np.data.mix import generate, parse_mix

    examples = []
    if not (data and no_builtin):
        examples += generate(samples, seed=seed, mix=parse_mix(mix) if mix else None)
    if data:
        examples += load_user_data(data)
    return examples

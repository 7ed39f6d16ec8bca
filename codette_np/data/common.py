"""Shared pieces of the built-in dataset: the categories, the default mix, the error type,
and the small text helpers every category uses."""

from __future__ import annotations

from codette_np import chat

CATEGORIES = ("perspectives", "tools", "consciousness", "mixed", "copying")
DEFAULT_MIX = {"perspectives": 0.30, "tools": 0.25, "consciousness": 0.25, "mixed": 0.20, "copying": 0.0}


class DataError(ValueError):
    """Bad user data or bad data options."""




def _fmt(x: float, nd: int = 2) -> str:
    """A number rounded to `nd` decimals, without trailing zeros."""
    r = round(float(x), nd)
    if r == int(r):
        return str(int(r))
    return f"{r:.{nd}f}".rstrip("0").rstrip(".")


def _and(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pct(p: float) -> str:
    return _fmt(100 * p, 1) + "%"


def _example(category: str, turns: list[tuple[str, str]], tool: str | None = None,
             files: dict | None = None) -> dict:
    messages = [{"role": "system", "content": chat.SYSTEM_PROMPT}]
    messages += [{"role": r, "content": c} for r, c in turns]
    ex = {"category": category, "text": chat.render(messages), "messages": messages}
    if tool is not None:
        ex["tool"] = tool
    if files is not None:
        ex["files"] = files
    return ex



"""argparse value types: every bad number a one-line usage error at parse time (exit 2)."""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def int_at_least(lo: int):
    """An int >= lo."""
    def parse(text: str) -> int:
        v = _number(int, text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be {'positive' if lo == 1 else f'at least {lo}'}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_above(lo: float, inclusive: bool = False, hi: float | None = None):
    """A finite float > lo (>= lo if inclusive), and <= hi if given."""
    def parse(text: str) -> float:
        v = _number(float, text)
        if v < lo or (v == lo and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {lo:g}, got {v:g}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g}, got {v:g}")
        return v
    parse.__name__ = "number"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)
positive_float = float_above(0.0)
nonneg_float = float_above(0.0, inclusive=True)


def nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2): the problem and --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

"""The category mix and `generate`, which draws every category by it."""

from __future__ import annotations

import math
import random

from codette_np.data.common import CATEGORIES, DEFAULT_MIX, DataError
from codette_np.data.perspectives import gen_perspectives
from codette_np.data.tool_use import gen_tools
from codette_np.data.consciousness import gen_consciousness
from codette_np.data.mixed import gen_mixed
from codette_np.data.copying import gen_copying


GENERATORS = {"perspectives": gen_perspectives, "tools": gen_tools,
              "consciousness": gen_consciousness, "mixed": gen_mixed,
              "copying": gen_copying}


def _check_mix(mix: dict) -> dict:
    """Validate category weights and normalise them to sum to 1."""
    if not isinstance(mix, dict) or not mix:
        raise DataError("mix must be a non-empty dict of category -> weight")
    out = {c: 0.0 for c in CATEGORIES}
    for cat, w in mix.items():
        if cat not in CATEGORIES:
            raise DataError(f"unknown category {cat!r} in mix; categories are {', '.join(CATEGORIES)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise DataError(f"weight for {cat!r} must be a finite number >= 0, got {w!r}")
        out[cat] = float(w)
    total = sum(out.values())
    if total <= 0:
        raise DataError("mix weights sum to 0; give at least one category a positive weight")
    return {c: w / total for c, w in out.items()}


def parse_mix(spec: str) -> dict:
    """"perspectives=0.3,tools=0.25,..." -> weights normalised to sum 1.
    Categories left out get weight 0."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("empty mix; expected e.g. perspectives=0.3,tools=0.25,consciousness=0.25,mixed=0.2")
    mix = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise DataError(f"mix entry {item!r} is not of the form category=weight")
        cat, _, val = (x.strip() for x in item.partition("="))
        if cat in mix:
            raise DataError(f"category {cat!r} appears twice in the mix")
        try:
            mix[cat] = float(val)
        except ValueError:
            raise DataError(f"weight {val!r} for {cat!r} is not a number") from None
    return _check_mix(mix)


def _counts(n: int, mix: dict) -> dict:
    """Largest-remainder rounding of n * weight per category."""
    raw = {c: n * w for c, w in mix.items()}
    counts = {c: int(math.floor(v)) for c, v in raw.items()}
    rest = n - sum(counts.values())
    for c in sorted(raw, key=lambda c: (counts[c] - raw[c], CATEGORIES.index(c)))[:rest]:
        counts[c] += 1
    return counts


MAX_REDRAWS = 20


def generate(n_samples: int, seed: int = 0, mix: dict | None = None) -> list[dict]:
    """`n_samples` examples mixed by `mix` (default DEFAULT_MIX), deterministic
    per seed, in a shuffled order. An example whose text its category already
    produced is drawn again (up to MAX_REDRAWS times), so texts repeat only
    when a category is asked for more examples than it has combinations."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise DataError(f"n_samples must be an int >= 0, got {n_samples!r}")
    mix = _check_mix(DEFAULT_MIX if mix is None else mix)
    out = []
    for cat, k in _counts(n_samples, mix).items():
        r = random.Random(f"{seed}:{cat}")
        seen = set()
        for _ in range(k):
            for _attempt in range(MAX_REDRAWS + 1):
                ex = GENERATORS[cat](r)
                if ex["text"] not in seen:
                    break
            seen.add(ex["text"])
            out.append(ex)
    random.Random(f"{seed}:order").shuffle(out)
    return out



"""The command line: python -m codette_np.data --samples 5000 --out data.jsonl --stats"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from codette_np.argtypes import Parser
from codette_np.data.common import CATEGORIES, DataError
from codette_np.data.mix import generate, parse_mix
from codette_np.data.stats import distinct_ngram_stats



def _record(e: dict) -> dict:
    rec = {"category": e["category"], "text": e["text"]}
    if "tool" in e:
        rec["tool"] = e["tool"]
        rec["messages"] = e["messages"]
    return rec


def main(argv=None) -> int:
    ap = Parser(
        prog="python -m codette_np.data",
        description="Generate the built-in mixed training dataset as JSONL.")
    ap.add_argument("--samples", type=int, default=5000, help="number of examples to generate (default 5000)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .jsonl path: one object per line with category, text, and for "
                         "tool-call examples also tool and messages (omit to only print stats)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)")
    ap.add_argument("--mix", default=None,
                    help="category weights, e.g. perspectives=0.3,tools=0.25,consciousness=0.25,mixed=0.2 "
                         "(normalised; left-out categories get 0; default is that mix)")
    ap.add_argument("--stats", action="store_true",
                    help="also print diversity statistics: distinct-1..4, distinct-text share, top-skeleton share")
    args = ap.parse_args(argv)
    try:
        if args.samples < 1:
            raise DataError("--samples must be at least 1")
        mix = parse_mix(args.mix) if args.mix is not None else None
        t0 = time.perf_counter()
        examples = generate(args.samples, seed=args.seed, mix=mix)
        elapsed = time.perf_counter() - t0
    except DataError as e:
        ap.error(str(e))
    counts = Counter(e["category"] for e in examples)
    print(f"generated {len(examples)} examples in {elapsed:.2f} s: "
          + ", ".join(f"{c}={counts.get(c, 0)}" for c in CATEGORIES))
    if args.out is not None:
        if args.out.is_dir():
            ap.error(f"--out {args.out} is a directory; give a file name such as data.jsonl")
        tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                for e in examples:
                    f.write(json.dumps(_record(e), ensure_ascii=False) + "\n")
            os.replace(tmp, args.out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            ap.error(f"cannot write {args.out}: {e.strerror or e}")
        print(f"wrote {args.out}")
    if args.stats:
        print(json.dumps(distinct_ngram_stats(examples), indent=2))
    return 0


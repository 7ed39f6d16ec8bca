"""Evaluation on held-out examples.

Per category and overall: validation loss (mean cross-entropy per target
token, nats), perplexity = exp(loss), next-token accuracy (argmax == target).

Tool calls, on held-out tool requests, per tool and overall. The engine
generates greedily after the user's turn; then:
- validity: the output parses as a `tool_use` call of the expected tool with
  schema-valid params (`tools.is_valid_tool_call`);
- grounded: the call is valid and every argument value of the reference call
  that appears verbatim in the user's request (a path, a number, a URL, a
  phrase) appears verbatim in the generated call as well: the model copied
  the user's arguments instead of writing memorized ones;
- exact: the call equals the reference call, character for character;
- answer uses the result: the true tool result is fed back as the tool turn
  (after the reference call) and the model writes its answer; it counts when
  the answer contains the result's key value: the longest value of the
  result that the reference answer quotes verbatim (the number, the file
  line, the fact).
The "consciousness" numbers are simply the metrics of that category of the
data, nothing more.
"""

from __future__ import annotations

import json
from collections import defaultdict
from difflib import SequenceMatcher

import numpy as np

from codette_np.batches import encode_example, eval_rows, pack_whole
from codette_np.data import tools
from codette_np.generate import Generator, generate

TOOL_METRICS = ("validity", "grounded", "exact", "answer_uses_result")


def _leaves(x):
    """Every scalar value inside a JSON value (strings and numbers, as they are spelled in JSON)."""
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    elif isinstance(x, str):
        yield x
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield tools.to_json(x)


def request_values(params: dict, request: str) -> list[str]:
    """What the reference call takes from the request: each argument value the request states
    verbatim, and of a longer value (code around an expression, a sentence around a phrase) the
    longest stretch that the request states, when it has 4 characters or more and a digit or a
    space (so not a fragment of a word, such as "summar" of "summary" / "Summarize")."""
    needed = set()
    for v in _leaves(params):
        if not v:
            continue
        if v in request:
            needed.add(v)
            continue
        m = SequenceMatcher(None, v, request, autojunk=False).find_longest_match(0, len(v), 0, len(request))
        part = v[m.a:m.a + m.size].strip()
        if len(part) >= 4 and any(ch.isdigit() or ch == " " for ch in part):  # not a mere word fragment
            needed.add(part)
    return sorted(needed)


def key_value(result_text: str, answer: str) -> str | None:
    """The longest value of the tool result (or line of one) that the reference answer quotes
    verbatim."""
    try:
        result = json.loads(result_text)
    except ValueError:
        return None
    values = {x.strip() for v in _leaves(result) for x in [v, *v.split("\n")]}
    quoted = [v for v in values if (len(v) >= 2 or v.isdigit()) and v in answer]
    return max(quoted, key=len) if quoted else None


def is_grounded(text: str, needed: list[str]) -> bool:
    """`text` is a valid call whose params' JSON holds each needed value verbatim."""
    parsed = tools.parse_tool_call(text)
    if parsed is None:
        return False
    spelled = tools.to_json(parsed[1])
    return all(v in spelled or tools.to_json(v)[1:-1] in spelled for v in needed)


POSITIONS_AT_ONCE = 64  # evaluation's softmax temporaries: (64, V) floats, whatever T is

class EvaluationStopped(Exception):
    """Raised inside Evaluator.run when its `stop()` says so (a signal asked the run to stop)."""


class Evaluator:
    def __init__(self, model, tok, val_examples, T, batch_size=8, max_rows_per_category=64,
                 tool_samples=100, max_new_tokens=160, train_on="all", packing="stream"):
        """Validation loss over the tokens training predicts (`train_on`, batches.encode_example),
        in rows packed as training packs them (`packing`: "whole" examples or a "stream")."""
        self.model, self.tok, self.B = model, tok, batch_size
        self.sets = {}
        for cat in sorted({e["category"] for e in val_examples}):
            enc = [encode_example(tok, e, train_on) for e in val_examples if e["category"] == cat]
            ids, masks = [i for i, _ in enc], [m for _, m in enc]
            if packing == "whole":
                rows, trained = pack_whole(ids, masks, tok.bos_id, tok.eos_id, T)
                x, y = rows[:, :-1].copy(), np.where(trained[:, 1:], rows[:, 1:], -1).astype(np.int32)
            else:
                x, y = eval_rows(ids, tok.bos_id, tok.eos_id, T, masks=masks)
            self.sets[cat] = (x[:max_rows_per_category], y[:max_rows_per_category])
        self.tool_cases = []  # one dict per held-out request (see _tool_case)
        self.tool_too_long = 0  # held-out requests whose prompt + answer exceed the context
        ctx = model.cfg.context_length
        for e in val_examples:
            if e.get("tool") and e.get("messages") and len(self.tool_cases) < tool_samples:
                case = self._tool_case(e)
                if case is None or len(case["answer_ids"]) + max_new_tokens > ctx:
                    self.tool_too_long += 1
                    continue
                self.tool_cases.append(case)
        self.max_new_tokens = max_new_tokens
        self.stop = lambda: False  # checked between rows and between requests
        self.end_id = tok.marker_ids["<|end|>"]
        self._gen = None  # one KV cache for every generation, made on first use

    def _tool_case(self, e):
        """The prompts and references of one held-out tool request (None if it has no call)."""
        tok, msgs = self.tok, e["messages"]
        u = next(i for i, m in enumerate(msgs) if m["role"] == "user")
        if u + 3 >= len(msgs) or msgs[u + 2]["role"] != "tool":
            return None
        ref_call, result, answer = msgs[u + 1]["content"], msgs[u + 2]["content"], msgs[u + 3]["content"]
        parsed = tools.parse_tool_call(ref_call)
        if parsed is None:
            return None
        return {"tool": e["tool"], "ref_call": ref_call, "needed": request_values(parsed[1], msgs[u]["content"]),
                "key": key_value(result, answer),
                "call_ids": [tok.bos_id] + tok.encode_chat(msgs[:u + 1], add_generation_prompt=True),
                "answer_ids": [tok.bos_id] + tok.encode_chat(msgs[:u + 3], add_generation_prompt=True)}

    def _loss_acc(self, x, y):
        """(sum of losses, correct predictions, number of targets) over rows x, y (R, T); one
        row's logits (T, V) at a time, so evaluation needs no more memory than one row."""
        tot, correct, n = 0.0, 0, 0
        for r0 in range(0, x.shape[0], self.B):
            if self.stop():
                raise EvaluationStopped
            xb, yb = x[r0:r0 + self.B], y[r0:r0 + self.B]
            if len(xb) < self.B:  # pad the last batch: the training buffers serve, none are added
                pad = self.B - len(xb)
                xb = np.concatenate([xb, np.zeros((pad, xb.shape[1]), xb.dtype)])
                yb = np.concatenate([yb, np.full((pad, yb.shape[1]), -1, yb.dtype)])
            logits = self.model.forward(xb)  # (B, T, V)
            for lg, yr in zip(logits, yb):  # (T, V), (T,)
                at = np.flatnonzero(yr >= 0)  # the positions with a target
                for c0 in range(0, len(at), POSITIONS_AT_ONCE):  # temporaries of a few positions only
                    pos = at[c0:c0 + POSITIONS_AT_ONCE]
                    part, yt = lg[pos], yr[pos]  # (p, V), (p,)
                    mx = part.max(axis=-1, keepdims=True)
                    top = part.argmax(axis=-1)
                    picked = part[np.arange(len(yt)), yt].astype(np.float64)
                    part -= mx
                    np.exp(part, out=part)
                    lse = mx[:, 0].astype(np.float64) + np.log(part.sum(axis=-1, dtype=np.float64))
                    tot += float((lse - picked).sum())
                    correct += int((top == yt).sum())
                    n += len(pos)
        return tot, correct, n

    def run(self) -> dict:
        res, T_loss, T_ok, T_n = {}, 0.0, 0, 0
        for cat, (x, y) in self.sets.items():
            l, ok, n = self._loss_acc(x, y)
            res[cat] = {"loss": l / n, "ppl": float(np.exp(l / n)), "acc": ok / n, "tokens": n}
            T_loss, T_ok, T_n = T_loss + l, T_ok + ok, T_n + n
        out = {"categories": res,
               "overall": {"loss": T_loss / T_n, "ppl": float(np.exp(T_loss / T_n)),
                           "acc": T_ok / T_n, "tokens": T_n}}
        if self.tool_cases:
            out["tool_calls"] = self.tool_call_metrics(self.generate_case)
        elif self.tool_too_long:
            out["tool_calls"] = {"overall": {k: None for k in TOOL_METRICS}, "per_tool": {}, "n": 0,
                                 "skipped_too_long": self.tool_too_long}
        return out

    def generate_case(self, ids) -> str:
        """The engine's greedy continuation of ids, up to the end of the turn."""
        if self._gen is None:
            self._gen = Generator(self.model)
        new = generate(self.model, ids, self.max_new_tokens, {self.end_id, self.tok.eos_id}, generator=self._gen)
        return self.tok.decode(new).strip()

    def tool_call_metrics(self, complete) -> dict:
        """The four tool-call metrics, per tool and overall, with `complete(ids) -> text` as the
        model (the engine here; llama.cpp through the GGUF in the tests)."""
        rows = []
        for c in self.tool_cases:
            if self.stop():
                raise EvaluationStopped
            text = complete(c["call_ids"])
            valid = tools.is_valid_tool_call(text, expected_name=c["tool"])
            answer = complete(c["answer_ids"]) if c["key"] is not None else None
            rows.append({"tool": c["tool"], "text": text, "validity": valid,
                         "grounded": valid and is_grounded(text, c["needed"]),
                         "exact": text == c["ref_call"].strip(),
                         "answer_uses_result": None if answer is None else c["key"] in answer})
        return summarize_tool_rows(rows, self.tool_too_long)


def summarize_tool_rows(rows: list[dict], skipped: int = 0) -> dict:
    """Shares per tool and overall (answer_uses_result over the cases that have a key value)."""
    def shares(rs):
        out = {}
        for k in TOOL_METRICS:
            vals = [r[k] for r in rs if r[k] is not None]
            out[k] = sum(vals) / len(vals) if vals else None
        out["n"] = len(rs)
        return out

    by_tool = defaultdict(list)
    for r in rows:
        by_tool[r["tool"]].append(r)
    return {"overall": shares(rows), "per_tool": {t: shares(rs) for t, rs in sorted(by_tool.items())},
            "n": len(rows), "skipped_too_long": skipped, "calls": rows}


def format_report(res: dict, step: int, tools_only: bool = False) -> str:
    lines = []
    if not tools_only:
        lines = [f"eval at step {step}:", f"  {'category':<15} {'loss':>7} {'ppl':>8} {'acc':>6} {'tokens':>7}"]
        rows = list(res["categories"].items()) + [("overall", res["overall"])]
        for cat, r in rows:
            lines.append(f"  {cat:<15} {r['loss']:7.4f} {r['ppl']:8.2f} {r['acc']:6.3f} {r['tokens']:7d}")
    t = res.get("tool_calls")
    if t and t["n"] == 0:
        lines.append(f"  tool calls: not measured ({t['skipped_too_long']} held-out prompts "
                     f"do not fit the context)")
    elif t:
        pct = lambda v: "   -  " if v is None else f"{v:6.1%}"  # noqa: E731
        lines.append(f"  tool calls on {t['n']} held-out requests"
                     + (f" ({t['skipped_too_long']} too long for the context, skipped)"
                        if t["skipped_too_long"] else "") + ":")
        lines.append(f"  {'tool':<21} {'n':>3} {'valid':>6} {'grounded':>8} {'exact':>6} {'answer':>6}")
        for name, r in list(t["per_tool"].items()) + [("overall", t["overall"])]:
            lines.append(f"  {name:<21} {r['n']:3d} {pct(r['validity'])} {pct(r['grounded']):>8} "
                         f"{pct(r['exact'])} {pct(r['answer_uses_result'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the same evaluation through llama.cpp

def llama_cpp_completer(gguf_path, n_ctx: int, max_new_tokens: int, stop_ids, n_threads: int | None = None):
    """complete(ids) -> new ids by llama.cpp (llama-cpp-python) on an exported GGUF: greedy, float32
    KV cache, from an empty context each time (logits_all: without it llama-cpp-python leaves the
    scores rows unwritten); the caller decodes them with the engine's tokenizer."""
    import llama_cpp  # the optional llama.cpp client, not a dependency of the package

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=min(n_ctx, 512), logits_all=True,
                          verbose=False, flash_attn=False, type_k=llama_cpp.GGML_TYPE_F32,
                          type_v=llama_cpp.GGML_TYPE_F32, n_threads=n_threads)
    stop = set(stop_ids)

    def complete(ids) -> list[int]:
        llm.reset()
        llm.eval(list(ids))
        out = []
        for _ in range(min(max_new_tokens, n_ctx - len(ids))):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if t in stop:
                break
            out.append(t)
            llm.eval([t])
        return out

    return complete


def validation_set(header: dict):
    """The held-out examples of the run a checkpoint header describes (as the trainer split them)."""
    from codette_np import data as D

    args = header.get("args") or {}
    seed = args.get("seed", 0)
    examples = D.run_examples(args.get("samples", 5000), seed, args.get("mix"), args.get("data"),
                              bool(args.get("no_builtin")))
    return D.split_by_example(examples, val_fraction=0.05, seed=seed)[1]


def main(argv=None) -> int:
    """python -m codette_np.evaluate: the tool-call evaluation of a run, by the engine and by llama.cpp."""
    import sys

    from codette_np.argtypes import Parser, nonneg_int, positive_int
    from codette_np.checkpoint import CheckpointError, load_model_and_tokenizer

    ap = Parser(prog="python -m codette_np.evaluate",
                description="The held-out tool-call evaluation of a run (validity, grounded, exact, answer "
                            "uses the result, per tool), by the engine and, for each --gguf, by llama.cpp "
                            "(llama-cpp-python, greedy) on the exported file.")
    ap.add_argument("--checkpoint", required=True, help="a .ckpt file or a run directory (best, else last)")
    ap.add_argument("--gguf", nargs="*", default=[], help="exported files of the same run to evaluate in llama.cpp")
    ap.add_argument("--tool-samples", type=nonneg_int, default=100, help="held-out requests (default 100)")
    ap.add_argument("--max-new-tokens", type=positive_int, default=160,
                    help="longest call or answer generated (default 160, as in training)")
    a = ap.parse_args(argv)
    try:
        model, tok, header = load_model_and_tokenizer(a.checkpoint)
        T = (header.get("shape") or [8, model.cfg.context_length])[1]
        ev = Evaluator(model, tok, validation_set(header), T, tool_samples=a.tool_samples,
                       max_new_tokens=a.max_new_tokens,
                       train_on=(header.get("args") or {}).get("train_on", "all"),
                       packing=(header.get("args") or {}).get("packing", "stream"))
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not ev.tool_cases:
        print("error: no held-out tool request fits the model's context", file=sys.stderr)
        return 2
    engine = ev.tool_call_metrics(ev.generate_case)
    print(format_tool_table(f"engine ({model.backend_name} kernels)", engine))
    for path in a.gguf:
        try:
            ids_of = llama_cpp_completer(path, model.cfg.context_length, ev.max_new_tokens, {ev.end_id, tok.eos_id})
        except ImportError:
            print("error: llama_cpp is not installed (pip install llama-cpp-python)", file=sys.stderr)
            return 2
        res = ev.tool_call_metrics(lambda ids: tok.decode(ids_of(ids)).strip())
        print(format_tool_table(f"llama.cpp {path}", res))
        same = sum(a["text"] == b["text"] for a, b in zip(res["calls"], engine["calls"]))
        print(f"  generated calls identical to the engine's: {same} of {len(engine['calls'])}")
        print("  requests that differ: " + ", ".join(
            f"{k} {sum(bool(r[k]) != bool(e[k]) for r, e in zip(res['calls'], engine['calls']))}"
            for k in TOOL_METRICS))
    return 0


def format_tool_table(title: str, t: dict) -> str:
    return "\n".join([title + ":"] + format_report({"categories": {}, "overall": None, "tool_calls": t}, 0,
                                                  tools_only=True).splitlines())


if __name__ == "__main__":
    raise SystemExit(main())

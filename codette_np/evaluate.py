"""Evaluation on held-out examples.

Per category and overall: validation loss (mean cross-entropy per target
token, nats), perplexity = exp(loss), next-token accuracy (argmax == target).
Tool-call validity: for held-out tool requests, the engine generates
greedily after the user's turn; the share of outputs that parse as a
`tool_use` call with the expected tool name and schema-valid params
(`tools.is_valid_tool_call`). Also reported: the share whose call equals
the reference call exactly. The "consciousness" numbers are simply the
metrics of that category of the data, nothing more.
"""

from __future__ import annotations

import numpy as np

from codette_np import chat
from codette_np.data import tools
from codette_np.batches import eval_rows
from codette_np.generate import Generator, generate


class Evaluator:
    def __init__(self, model, tok, val_examples, T, batch_size=8, max_rows_per_category=64,
                 tool_samples=100, max_new_tokens=160):
        self.model, self.tok, self.B = model, tok, batch_size
        self.sets = {}
        for cat in sorted({e["category"] for e in val_examples}):
            ids = [tok.encode(e["text"]) for e in val_examples if e["category"] == cat]
            x, y = eval_rows(ids, tok.bos_id, tok.eos_id, T)
            self.sets[cat] = (x[:max_rows_per_category], y[:max_rows_per_category])
        self.tool_cases = []  # (prompt ids, expected tool, reference call text)
        self.tool_too_long = 0  # held-out requests whose prompt + answer exceed the context
        ctx = model.cfg.context_length
        for e in val_examples:
            if e.get("tool") and e.get("messages") and len(self.tool_cases) < tool_samples:
                msgs = e["messages"]
                first_user = next(i for i, m in enumerate(msgs) if m["role"] == "user")
                ref_call = msgs[first_user + 1]["content"] if first_user + 1 < len(msgs) else None
                ids = [tok.bos_id] + tok.encode_chat(msgs[:first_user + 1], add_generation_prompt=True)
                if len(ids) + max_new_tokens > ctx:
                    self.tool_too_long += 1
                    continue
                self.tool_cases.append((ids, e["tool"], ref_call))
        self.max_new_tokens = max_new_tokens
        self.end_id = tok.encode(chat.END)[-1]

    def _loss_acc(self, x, y):
        """(sum of losses, correct predictions, number of targets) over rows x, y (R, T)."""
        tot, correct, n = 0.0, 0, 0
        for r0 in range(0, x.shape[0], self.B):
            xb, yb = x[r0:r0 + self.B], y[r0:r0 + self.B]
            logits = self.model.forward(xb).astype(np.float64)  # (b, T, V)
            m = logits.max(axis=-1, keepdims=True)
            lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]
            valid = yb >= 0
            yt = np.where(valid, yb, 0)
            lt = np.take_along_axis(logits, yt[..., None], axis=-1)[..., 0]
            tot += float(((lse - lt) * valid).sum())
            correct += int(((logits.argmax(axis=-1) == yb) & valid).sum())
            n += int(valid.sum())
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
            gen = Generator(self.model)
            valid = exact = 0
            for ids, name, ref_call in self.tool_cases:
                new = generate(self.model, ids, self.max_new_tokens,
                               {self.end_id, self.tok.eos_id}, generator=gen)
                text = self.tok.decode(new).strip()
                valid += tools.is_valid_tool_call(text, expected_name=name)
                exact += ref_call is not None and text == ref_call.strip()
            n = len(self.tool_cases)
            out["tool_calls"] = {"validity": valid / n, "exact": exact / n, "n": n,
                                 "skipped_too_long": self.tool_too_long}
        elif self.tool_too_long:
            out["tool_calls"] = {"validity": None, "exact": None, "n": 0,
                                 "skipped_too_long": self.tool_too_long}
        return out


def format_report(res: dict, step: int) -> str:
    lines = [f"eval at step {step}:",
             f"  {'category':<15} {'loss':>7} {'ppl':>8} {'acc':>6} {'tokens':>7}"]
    rows = list(res["categories"].items()) + [("overall", res["overall"])]
    for cat, r in rows:
        lines.append(f"  {cat:<15} {r['loss']:7.4f} {r['ppl']:8.2f} {r['acc']:6.3f} {r['tokens']:7d}")
    t = res.get("tool_calls")
    if t and t["n"] == 0:
        lines.append(f"  tool-call validity: not measured ({t['skipped_too_long']} held-out prompts "
                     f"do not fit the context)")
    elif t:
        lines.append(f"  tool-call validity {t['validity']:.1%} (exact match {t['exact']:.1%}) "
                     f"on {t['n']} held-out requests"
                     + (f"; {t['skipped_too_long']} too long for the context, skipped"
                        if t["skipped_too_long"] else ""))
    return "\n".join(lines)

"""Text generation with a KV cache: greedy, temperature, top-k, top-p.

    python -m codette_np.generate --checkpoint runs/micro/best.ckpt --prompt "What is entropy?"

The prompt is wrapped in the chat format (system + user turn + an open
assistant turn) unless --raw is given; generation stops at the end-of-turn
marker, EOS, --max-new-tokens or the context length.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from codette_np.argtypes import Parser, float_above, nonneg_float, nonneg_int, positive_int


class Generator:
    """Incremental forward of a `Model` for one sequence, reusing cached keys/values
    (Model.forward_cached, on the model's kernel backend)."""

    def __init__(self, model):
        self.model = model
        self.cfg = model.cfg
        self.cache = model.new_cache()

    def reset(self):
        self.cache.reset()

    def feed(self, tokens) -> np.ndarray:
        """Append tokens (n,) at the next positions; returns their logits (n, V)."""
        tokens = np.asarray(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size):
            raise ValueError("token id outside the vocabulary")
        return self.model.forward_cached(self.cache, tokens)


def sample(logits, rng, temperature=0.0, top_k=0, top_p=1.0) -> int:
    """Next token from logits (V,): greedy when temperature == 0."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max()
    pr = np.exp(z)
    pr /= pr.sum()
    if top_p < 1.0:
        order = np.argsort(-pr)
        cum = np.cumsum(pr[order])
        keep = order[: int(np.searchsorted(cum, top_p) + 1)]
        mask = np.zeros_like(pr, dtype=bool)
        mask[keep] = True
        pr = np.where(mask, pr, 0.0)
        pr /= pr.sum()
    return int(rng.choice(pr.size, p=pr))


def generate(model, prompt_ids, max_new_tokens=64, stop_ids=(), temperature=0.0, top_k=0,
             top_p=1.0, seed=0, generator: Generator | None = None) -> list[int]:
    """Continue prompt_ids; returns the new ids (without the stop id that ended it)."""
    gen = generator or Generator(model)
    gen.reset()
    rng = np.random.default_rng(seed)
    room = model.cfg.context_length - len(prompt_ids)
    if room <= 0:
        raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in context "
                         f"{model.cfg.context_length}")
    logits = gen.feed(prompt_ids)[-1]
    out = []
    for _ in range(min(max_new_tokens, room)):
        t = sample(logits, rng, temperature, top_k, top_p)
        if t in stop_ids:
            break
        out.append(t)
        if len(out) == min(max_new_tokens, room):
            break
        logits = gen.feed([t])[-1]
    return out


def main(argv=None):
    from codette_np import chat
    from codette_np.checkpoint import load_model_and_tokenizer

    ap = Parser(prog="python -m codette_np.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a .ckpt file, or a run directory (uses best.ckpt, else last.ckpt)")
    ap.add_argument("--prompt", required=True, help="the user's message (or raw text with --raw)")
    ap.add_argument("--raw", action="store_true",
                    help="feed the prompt as is, without the chat format (chat markers in it are read as markers)")
    ap.add_argument("--max-new-tokens", type=positive_int, default=200, help="most tokens to generate (default 200)")
    ap.add_argument("--temperature", type=nonneg_float, default=0.0, help="0 = greedy (default)")
    ap.add_argument("--top-k", type=nonneg_int, default=0, help="keep the k most likely tokens (0 = off)")
    ap.add_argument("--top-p", type=float_above(0.0, hi=1.0), default=1.0, help="nucleus sampling mass (1.0 = off)")
    ap.add_argument("--seed", type=nonneg_int, default=0, help="sampling seed")
    a = ap.parse_args(argv)
    from codette_np.checkpoint import CheckpointError
    from codette_np.tokenizer import TokenizerError

    from codette_np import backend

    try:
        backend.check_environment()
        model, tok, _ = load_model_and_tokenizer(a.checkpoint)
        if a.raw:
            ids = [tok.bos_id] + tok.encode(a.prompt)
        else:  # the user's text can never produce a chat marker (encode_chat)
            ids = [tok.bos_id] + tok.encode_chat(
                [{"role": "system", "content": chat.SYSTEM_PROMPT}, {"role": "user", "content": a.prompt}],
                add_generation_prompt=True)
        stop = {tok.eos_id, tok.encode(chat.END)[-1]} if not a.raw else {tok.eos_id}
        new = generate(model, ids, a.max_new_tokens, stop, a.temperature, a.top_k, a.top_p, a.seed)
    except (CheckpointError, TokenizerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as e:  # a readable file that is not a training checkpoint
        print(f"error: {a.checkpoint}: not a codette_np training checkpoint ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(tok.decode(new) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

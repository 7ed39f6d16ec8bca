"""Text generation with a KV cache: greedy, temperature, top-k, top-p.

    python -m codette_np.generate --checkpoint runs/micro/best.ckpt --prompt "What is entropy?"

The prompt is wrapped in the chat format (system + user turn + an open
assistant turn) unless --raw is given; generation stops at the end-of-turn
marker, EOS, --max-new-tokens or the context length.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from codette_np.kernels import ref


class KVCache:
    """Keys and values of every layer for one sequence: (L, ctx, C) each."""

    def __init__(self, cfg, dtype=np.float32):
        self.k = np.zeros((cfg.n_layer, cfg.context_length, cfg.d_model), dtype=dtype)
        self.v = np.zeros_like(self.k)
        self.pos = 0  # number of positions filled


class Generator:
    """Incremental forward of a `Model` for one sequence, reusing cached keys/values."""

    def __init__(self, model):
        self.model = model
        self.cfg = model.cfg
        self.p = dict(model.named_parameters())
        self.cache = KVCache(self.cfg, model.dtype)
        hs = self.cfg.head_dim
        self.cos, self.sin = ref.rope_tables(self.cfg.context_length, hs, self.cfg.rope_base, model.dtype)

    def reset(self):
        self.cache.pos = 0

    def _ln(self, x, name):
        n = x.shape[0]
        out, mean, rstd = np.empty_like(x), np.empty(n, x.dtype), np.empty(n, x.dtype)
        ref.layernorm_forward(out, mean, rstd, x, self.p[name + ".weight"], self.p[name + ".bias"],
                              self.cfg.norm_eps)
        return out

    def feed(self, tokens) -> np.ndarray:
        """Append tokens (n,) at the next positions; returns their logits (n, V)."""
        cfg, p, c = self.cfg, self.p, self.cache
        tokens = np.asarray(tokens, dtype=np.int32)
        n, C, NH, hs = len(tokens), cfg.d_model, cfg.n_head, cfg.head_dim
        p0 = c.pos
        if p0 + n > cfg.context_length:
            raise ValueError(f"context full: {p0} + {n} tokens > context_length {cfg.context_length}")
        if n and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
            raise ValueError("token id outside the vocabulary")
        x = p["token_embd.weight"][tokens].copy()  # (n, C)
        cos, sin = self.cos[p0:p0 + n], self.sin[p0:p0 + n]
        scale = 1.0 / math.sqrt(hs)
        # causal mask of the new rows over all cached positions: row i sees keys 0..p0+i
        mask = np.arange(p0 + n)[None, :] > (p0 + np.arange(n))[:, None]  # (n, p0+n)
        for l in range(cfg.n_layer):
            pre = f"blk.{l}."
            h = self._ln(x, pre + "attn_norm")
            q = h @ p[pre + "attn_q.weight"].T + p[pre + "attn_q.bias"]
            k = h @ p[pre + "attn_k.weight"].T + p[pre + "attn_k.bias"]
            v = h @ p[pre + "attn_v.weight"].T + p[pre + "attn_v.bias"]
            q4, k4 = q.reshape(1, n, NH, hs), k.reshape(1, n, NH, hs)
            ref.rope_forward(q4, q4, cos, sin)
            ref.rope_forward(k4, k4, cos, sin)
            c.k[l, p0:p0 + n] = k
            c.v[l, p0:p0 + n] = v
            K = c.k[l, :p0 + n].reshape(p0 + n, NH, hs).transpose(1, 0, 2)  # (NH, S, hs)
            Vv = c.v[l, :p0 + n].reshape(p0 + n, NH, hs).transpose(1, 0, 2)
            Q = q.reshape(n, NH, hs).transpose(1, 0, 2)  # (NH, n, hs)
            s = (Q @ K.transpose(0, 2, 1)) * scale  # (NH, n, S)
            s[:, mask] = -np.inf
            s -= s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            att = (e / e.sum(axis=-1, keepdims=True)) @ Vv  # (NH, n, hs)
            y = att.transpose(1, 0, 2).reshape(n, C)
            x = x + y @ p[pre + "attn_output.weight"].T + p[pre + "attn_output.bias"]
            h = self._ln(x, pre + "ffn_norm")
            u = h @ p[pre + "ffn_up.weight"].T + p[pre + "ffn_up.bias"]
            g = np.empty_like(u)
            ref.gelu_forward(g, u)
            x = x + g @ p[pre + "ffn_down.weight"].T + p[pre + "ffn_down.bias"]
        c.pos = p0 + n
        return self._ln(x, "output_norm") @ p["token_embd.weight"].T


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
    from codette_np.train import load_model_and_tokenizer

    ap = argparse.ArgumentParser(prog="python -m codette_np.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a .ckpt file, or a run directory (uses best.ckpt, else last.ckpt)")
    ap.add_argument("--prompt", required=True, help="the user's message (or raw text with --raw)")
    ap.add_argument("--raw", action="store_true", help="feed the prompt as is, without the chat format")
    ap.add_argument("--max-new-tokens", type=int, default=200, help="most tokens to generate (default 200)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ap.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    a = ap.parse_args(argv)
    model, tok, _ = load_model_and_tokenizer(a.checkpoint)
    text = a.prompt if a.raw else chat.generation_prompt(
        [{"role": "system", "content": chat.SYSTEM_PROMPT}, {"role": "user", "content": a.prompt}])
    ids = [tok.bos_id] + tok.encode(text)
    stop = {tok.eos_id, tok.encode(chat.END)[-1]} if not a.raw else {tok.eos_id}
    new = generate(model, ids, a.max_new_tokens, stop, a.temperature, a.top_k, a.top_p, a.seed)
    sys.stdout.write(tok.decode(new) + "\n")


if __name__ == "__main__":
    main()

"""The same training step in PyTorch (fp32 eager, or bf16 autocast), for a side-by-side rate.

Run as a script by test_bench_step.py in its own process, so PyTorch's
thread pool never shares a process with numpy's BLAS or our OpenMP threads.
It imports codette_np before torch, so PyTorch's OpenMP threads get the same
OpenMP wait default (GOMP_SPINCOUNT) as ours, whether run by hand or by the benchmark.
PyTorch is a benchmark-only tool here (`make bench` installs it); the
package never imports it.

The model is the starcoder2 block of codette_np (LayerNorm with bias,
separate q/k/v with biases, NEOX RoPE over the full head, causal attention,
GELU-tanh FFN, tied output), initialised from codette_np's own weights, and
the script checks that its loss and every gradient equal codette_np's
float64 ones (relative 1e-6 and 1e-4) before it times anything: the
comparison is of the same computation. With --autocast bf16 the step runs
under torch.autocast("cpu", bfloat16) (fp32 master weights, bf16 matrix
products) and the check uses bf16 tolerances: the loss within 2 u16 and each
gradient within 8 u16 of its largest element (u16 = 2^-8), the tolerances of
codette_np's own bf16 tests.

Prints one JSON line: {"median_s": ..., "loss_err": ..., "grad_err": ..., "torch": version, ...}.
"""

import argparse
import json
import time

import codette_np  # noqa: F401  (first: PyTorch's OpenMP runs with the thread defaults ours runs with)
import numpy as np
import torch
import torch.nn.functional as F

from codette_np import Model, ModelConfig


def rope(x, cos, sin):
    """NEOX rotation of x (B, NH, T, hs) by cos, sin (T, hs/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class TorchStarcoder2(torch.nn.Module):
    """codette_np's architecture in PyTorch, parameters copied from a codette_np Model."""

    def __init__(self, model: Model):
        super().__init__()
        self.cfg = cfg = model.cfg
        self.p = torch.nn.ParameterDict(
            {name.replace(".", "_"): torch.nn.Parameter(torch.tensor(np.array(w, np.float32)))
             for name, w in model.named_parameters()})
        hs = cfg.head_dim
        inv = cfg.rope_base ** (-2.0 * torch.arange(hs // 2, dtype=torch.float64) / hs)
        ang = torch.arange(cfg.context_length, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos, self.sin = torch.cos(ang).float(), torch.sin(ang).float()

    def w(self, name):
        return self.p[name.replace(".", "_")]

    def forward(self, tokens, targets):
        """Mean cross-entropy of targets (B, T) given tokens (B, T)."""
        cfg, w = self.cfg, self.w
        B, T = tokens.shape
        NH, hs = cfg.n_head, cfg.head_dim
        cos, sin = self.cos[:T], self.sin[:T]
        x = F.embedding(tokens, w("token_embd.weight"))  # (B, T, C)
        for l in range(cfg.n_layer):
            pre = f"blk.{l}."
            h = F.layer_norm(x, (cfg.d_model,), w(pre + "attn_norm.weight"), w(pre + "attn_norm.bias"),
                             cfg.norm_eps)
            q, k, v = (F.linear(h, w(pre + f"attn_{n}.weight"), w(pre + f"attn_{n}.bias"))
                       .view(B, T, NH, hs).transpose(1, 2) for n in "qkv")  # (B, NH, T, hs)
            y = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
            y = y.transpose(1, 2).reshape(B, T, cfg.d_model)
            x = x + F.linear(y, w(pre + "attn_output.weight"), w(pre + "attn_output.bias"))
            h = F.layer_norm(x, (cfg.d_model,), w(pre + "ffn_norm.weight"), w(pre + "ffn_norm.bias"),
                             cfg.norm_eps)
            h = F.gelu(F.linear(h, w(pre + "ffn_up.weight"), w(pre + "ffn_up.bias")), approximate="tanh")
            x = x + F.linear(h, w(pre + "ffn_down.weight"), w(pre + "ffn_down.bias"))
        x = F.layer_norm(x, (cfg.d_model,), w("output_norm.weight"), w("output_norm.bias"), cfg.norm_eps)
        logits = F.linear(x, w("token_embd.weight"))  # tied output
        return F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="micro", help="codette_np preset (default micro)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5, help="timed steps (after one warmup step)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: the step under torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = ModelConfig.preset(a.size)
    B, T = a.batch_size, a.seq_len
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, (B, T + 1)).astype(np.int32)
    x, y = data[:, :-1], data[:, 1:]

    # the same loss and gradients as codette_np's float64 model with the same weights
    ours = Model(cfg, seed=0, dtype=np.float64, backend="numpy")
    our_loss = ours.forward_backward(x, y)
    model = TorchStarcoder2(Model(cfg, seed=0, backend="numpy"))
    tx, ty = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    import contextlib

    ctx = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.autocast == "bf16"
           else contextlib.nullcontext)
    with ctx():
        loss = model(tx, ty)
    loss.backward()
    loss_err = abs(float(loss.detach()) - our_loss) / our_loss
    grad_err = max(float(np.max(np.abs(model.w(n).grad.numpy() - g)) / max(np.max(np.abs(g)), 1e-30))
                   for n, g in ours.named_grads())
    tol_loss, tol_grad = (2 * 2.0 ** -8, 8 * 2.0 ** -8) if a.autocast == "bf16" else (1e-6, 1e-4)
    if not (loss_err < tol_loss and grad_err < tol_grad):
        raise SystemExit(f"PyTorch differs from codette_np: loss {loss_err:.2e}, gradients {grad_err:.2e} "
                         "(relative)")

    # AdamW with the same hyperparameters as the codette_np benchmark step
    decay = [p for n, p in model.p.items() if p.ndim == 2]
    no_decay = [p for n, p in model.p.items() if p.ndim != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = model(tx, ty)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    step()  # warmup
    times = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(json.dumps({"median_s": med, "loss_err": loss_err, "grad_err": grad_err, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "tok_s": B * T / med, "autocast": a.autocast}))


if __name__ == "__main__":
    main()

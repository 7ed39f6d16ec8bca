"""AdamW over the model's flat buffers, the learning-rate schedule, clipping.

Weight-decay policy: decoupled weight decay applies to matrices (ndim 2: the
q/k/v/output/up/down projections and the tied embedding) and never to
biases or LayerNorm parameters. It is fixed by `ParamLayout.decay_mask`.

The update is one fused pass over the flat buffers (the `adamw_step` kernel:
C when built, NumPy reference otherwise); clipping by the global grad norm
is folded into that pass as a scale on the gradient.
"""

from __future__ import annotations

import math

import numpy as np


def lr_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based).

    1) linear warmup from max_lr/warmup_steps to max_lr over warmup_steps,
    2) cosine decay from max_lr to min_lr until total_steps, then min_lr.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    span = max(1, total_steps - warmup_steps)
    progress = (step - warmup_steps) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not 0 <= lr < math.inf:
        raise ValueError(f"the learning rate must be a finite number >= 0, got {lr!r}")
    return float(lr)


class AdamW:
    """AdamW with bias correction and decoupled weight decay on matrices only.

    opt = AdamW(model, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    grad_norm = opt.step(lr=..., max_grad_norm=1.0)
    """

    def __init__(self, model, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        b1, b2 = betas
        _check_lr(lr)
        if not (0 <= b1 < 1 and 0 <= b2 < 1 and 0 < eps < math.inf and 0 <= weight_decay < math.inf):
            raise ValueError(f"invalid AdamW hyperparameters lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        self.model = model
        self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = lr, b1, b2, eps, weight_decay
        self.m = np.zeros_like(model.params)  # (P,) first moment
        self.v = np.zeros_like(model.params)  # (P,) second moment
        self.decay_mask = model.layout.decay_mask()  # (P,) uint8
        self.t = 0  # optimizer steps taken

    def grad_norm(self) -> float:
        """Global L2 norm of the model's gradients."""
        return math.sqrt(self.model.kernels.grad_norm_sq(self.model.grads))

    def step(self, lr: float | None = None, max_grad_norm: float | None = None) -> float:
        """Apply one update from model.grads; returns the (pre-clip) global grad norm.

        With max_grad_norm, gradients are scaled by min(1, max_grad_norm / norm).
        A non-finite grad norm raises FloatingPointError and leaves every
        buffer untouched (the caller decides whether to skip the step).
        """
        lr = self.lr if lr is None else _check_lr(lr)
        if max_grad_norm is not None and not 0 <= max_grad_norm < math.inf:
            raise ValueError(f"max_grad_norm must be a finite number >= 0 (or None), got {max_grad_norm}")
        if not self.model.grads_valid:
            raise RuntimeError("opt.step() before any forward_backward: model.grads holds no gradients "
                               "yet (call model.forward_backward first, or set model.grads_valid after "
                               "writing model.grads yourself)")
        norm = self.grad_norm()
        if not math.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm ({norm}); update skipped")
        scale = 1.0
        if max_grad_norm is not None and max_grad_norm > 0 and norm > max_grad_norm:
            scale = max_grad_norm / (norm + 1e-6)
        self.t += 1
        self.model.kernels.adamw_step(self.model.params, self.model.grads, self.m, self.v,
                                      self.decay_mask, lr, self.beta1, self.beta2, self.eps,
                                      self.weight_decay, self.t, scale)
        return norm

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t, "lr": self.lr, "beta1": self.beta1,
                "beta2": self.beta2, "eps": self.eps, "weight_decay": self.weight_decay}

    def load_state_dict(self, s: dict):
        if s["m"].shape != self.m.shape or s["v"].shape != self.v.shape:
            raise ValueError(f"optimizer state has {s['m'].shape[0]} parameters, "
                             f"the model has {self.m.shape[0]}")
        self.m[:] = s["m"]
        self.v[:] = s["v"]
        self.t = int(s["t"])
        for k in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            if k in s:
                setattr(self, k, float(s[k]))

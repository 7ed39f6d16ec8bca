"""AdamW over the model's flat buffers, the learning-rate schedule, clipping.

Weight-decay policy: decoupled weight decay applies to matrices (ndim 2: the
q/k/v/output/up/down projections and the tied embedding) and never to
biases or LayerNorm parameters. It follows from the layout (each tensor's
shape), so it costs no memory.

The update is one fused pass per tensor (the `adamw_step*` kernels: C when
built, Numba or the NumPy reference otherwise); clipping by the global grad
norm is folded into that pass as a scale on the gradient.

The moments are stored in one of three formats (`state=`):
- "fp32": two float32 buffers, 8 bytes per parameter;
- "bf16": two bfloat16 buffers, 4 bytes per parameter;
- "q8": two 8-bit codes per parameter, scaled per block of 256 elements by
  the block's absmax (a float32 each), about 2.03 bytes per parameter.
The low-precision formats are decoded and re-encoded inside the fused
kernel (no float32 copy of them exists), with stochastic rounding whose bits
are a pure function of (seed, step, element), so resume stays bit-exact.
Tensors under SMALL_TENSOR elements (biases, LayerNorm) keep float32 moments
in every format.

Weights a Model(weights="bf16") stores as bf16 are decoded to float32 a chunk
at a time, updated by the same kernels, and stored back with stochastic
rounding (stream 2 of the same counter-based bits: f32_to_bf16_sr).
"""

from __future__ import annotations

import math

import numpy as np

# Q8_BLOCK: elements per absmax scale of the "q8" format; Q8_CODE: its codes' version
from codette_np.kernels.ref import Q8_BLOCK, Q8_CODE, q8_m_codes_from_v1


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


def _check_clip(max_grad_norm):
    if max_grad_norm is not None and not 0 <= max_grad_norm < math.inf:
        raise ValueError(f"max_grad_norm must be a finite number >= 0 (or None), got {max_grad_norm}")


STATES = ("fp32", "bf16", "q8")
CLIP_RULES = ("exact", "previous")  # fused_step's clipping: a norm-measuring first pass, or the previous norm
WEIGHT_CHUNK = 1 << 18  # bf16 weights are updated this many at a time (a multiple of Q8_BLOCK)
assert WEIGHT_CHUNK % Q8_BLOCK == 0
SMALL_TENSOR = 4096  # tensors with fewer elements keep float32 moments in every format


def _kind(state: str, n: int) -> str:
    """The moment format of a tensor of n elements in an optimizer of format `state`."""
    return "fp32" if n < SMALL_TENSOR else state


def state_bytes_per_param(state: str, layout) -> float:
    """Bytes of optimizer state per parameter of `layout` in format `state`."""
    per = {"fp32": lambda n: 8 * n, "bf16": lambda n: 4 * n, "q8": lambda n: 2 * n + 8 * -(-n // Q8_BLOCK)}
    return sum(per[_kind(state, s.size)](s.size) for s in layout.slots) / layout.n_params


class AdamW:
    """AdamW with bias correction and decoupled weight decay on matrices only.

    opt = AdamW(model, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, state="q8")
    grad_norm = opt.step(lr=..., max_grad_norm=1.0)
    """

    def __init__(self, model, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, state="fp32",
                 seed=0, shard: tuple[int, int] | None = None):
        b1, b2 = betas
        _check_lr(lr)
        if not (0 <= b1 < 1 and 0 <= b2 < 1 and 0 < eps < math.inf and 0 <= weight_decay < math.inf):
            raise ValueError(f"invalid AdamW hyperparameters lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        if state not in STATES:
            raise ValueError(f"optimizer state must be one of {STATES}, not {state!r}")
        self.model = model
        self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = lr, b1, b2, eps, weight_decay
        self.state_format, self.seed = state, int(seed)
        self.t = 0  # optimizer steps taken
        self.last_grad_norm = None  # the last step's global gradient norm (fused_step clips by it)
        self.sum_over_ranks = None  # float -> float summed over the ranks (step's norm), in a data parallel run
        # shard: the flat-buffer elements [lo, hi) this optimizer keeps moments for and updates
        # (ZeRO stage 1, codette_np.distributed); each boundary sits inside its tensor at a
        # multiple of Q8_BLOCK, so the 8-bit blocks are those of the whole tensor
        lo, hi = (0, model.layout.total) if shard is None else shard
        self.shard = (lo, hi)
        # per piece of a tensor in the shard: (slot, kind, offset into the kind's buffers, first
        # absmax block, piece start, piece end) with the piece [start, end) of the tensor
        self._plan = []
        n32 = nlow = nblk = 0
        for sl in model.layout.slots:
            a, b = max(lo, sl.offset) - sl.offset, min(hi, sl.offset + sl.size) - sl.offset
            if a >= b:
                continue
            if a % Q8_BLOCK:
                raise ValueError(f"shard boundary {lo} cuts {sl.name} at element {a}, not a multiple of "
                                 f"{Q8_BLOCK} (distributed.shard_bounds places them)")
            if _kind(state, sl.size) == "fp32":
                self._plan.append((sl, "fp32", n32, 0, a, b))
                n32 += b - a
            else:
                self._plan.append((sl, state, nlow, nblk, a, b))
                nlow += b - a
                nblk += -(-(b - a) // Q8_BLOCK) if state == "q8" else 0
        dt = model.params.dtype  # float32 (float64 for the oracle model)
        self.m = np.zeros(n32, dt)  # (n32,) full-precision moments of the "fp32" tensors
        self.v = np.zeros(n32, dt)
        low = {"bf16": np.uint16, "q8": np.uint8}.get(state)
        self.m_low = np.zeros(nlow if low else 0, low or np.uint8)  # (nlow,) bf16 bits or 8-bit codes
        self.v_low = np.zeros(nlow if low else 0, low or np.uint8)
        self.m_absmax = np.zeros(nblk, np.float32)  # (blocks,) "q8" scales
        self.v_absmax = np.zeros(nblk, np.float32)
        self._entry = {e[0].name: e for e in self._plan}
        self._chunk = None  # (WEIGHT_CHUNK,) float32: a bf16 tensor's elements during their update

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The buffers that hold the optimizer's state, by checkpoint blob name."""
        out = {"m": self.m, "v": self.v}
        if self.state_format != "fp32":
            out.update(m_low=self.m_low, v_low=self.v_low)
        if self.state_format == "q8":
            out.update(m_absmax=self.m_absmax, v_absmax=self.v_absmax)
        return out

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.state_arrays().values())

    def grad_norm(self) -> float:
        """Global L2 norm of the model's gradients. With a shard and `sum_over_ranks` (a data
        parallel run, whose ranks each hold the summed gradients of their shard only): the
        shard's sum of squares, summed over the ranks."""
        G = self.model.grads
        if self.sum_over_ranks is None:
            return math.sqrt(self.model.kernels.grad_norm_sq(G))
        lo, hi = self.shard
        return math.sqrt(self.sum_over_ranks(self.model.kernels.grad_norm_sq(G[lo:hi])))

    def step(self, lr: float | None = None, max_grad_norm: float | None = None) -> float:
        """Apply one update from model.grads; returns the (pre-clip) global grad norm.

        With max_grad_norm, gradients are scaled by min(1, max_grad_norm / norm).
        A non-finite grad norm raises FloatingPointError and leaves every
        buffer untouched (the caller decides whether to skip the step).
        """
        lr = self.lr if lr is None else _check_lr(lr)
        _check_clip(max_grad_norm)
        if self.model.fused_update:
            raise RuntimeError("this model keeps no full gradient buffer (fused_update=True): train it "
                               "with opt.fused_step(tokens, targets, ...)")
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
        hyper = (lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.t, scale)
        G = self.model.grads
        for entry in self._plan:
            sl = entry[0]
            self._update(entry, G[sl.offset:sl.offset + sl.size], hyper)  # the piece's part of it
        self.last_grad_norm = norm
        return norm

    def _update(self, entry, g, hyper):
        """One tensor piece's update from the tensor's gradient g (size,). A bf16-stored tensor
        is decoded, updated and stored back (stochastic rounding) WEIGHT_CHUNK elements at a time."""
        sl, a, b = entry[0], entry[4], entry[5]
        K = self.model.kernels
        p, g = self.model.stored(sl.name)[a:b], g[a:b]  # (n,) float32, or bf16 bits
        if p.dtype != np.uint16 or entry[1] == "q8":  # q8: one kernel decodes, updates and rounds bf16
            self._update_f32(entry, p, g, 0, hyper)
            return
        if self._chunk is None:
            self._chunk = np.empty(WEIGHT_CHUNK, np.float32)
        for lo in range(0, b - a, WEIGHT_CHUNK):
            hi = min(b - a, lo + WEIGHT_CHUNK)
            x = self._chunk[:hi - lo]
            K.bf16_to_f32(x, p[lo:hi])
            self._update_f32(entry, x, g[lo:hi], lo, hyper)
            K.f32_to_bf16_sr(p[lo:hi], x, self.seed, self.t, sl.offset + a + lo)

    def _update_f32(self, entry, p, g, lo, hyper):
        """Elements [lo, lo + len(p)) of one tensor piece: float32 params p (or, with "q8" moments,
        bf16 bits, which its kernel updates in the same pass) and gradient g, with the moments of
        those elements (lo is a multiple of Q8_BLOCK, so the blocks line up)."""
        sl, kind, off, blk, a, _ = entry
        K = self.model.kernels
        n, off, at = p.shape[0], off + lo, sl.offset + a + lo  # at: the first element's flat index
        decay = len(sl.shape) == 2
        if kind == "fp32":
            K.adamw_step(p, g, self.m[off:off + n], self.v[off:off + n], decay, *hyper)
        elif kind == "bf16":
            K.adamw_step_bf16(p, g, self.m_low[off:off + n], self.v_low[off:off + n], decay,
                              *hyper, self.seed, at)
        else:
            b0, nb = blk + lo // Q8_BLOCK, -(-n // Q8_BLOCK)
            step_q8 = K.adamw_step_q8_bf16w if p.dtype == np.uint16 else K.adamw_step_q8
            step_q8(p, g, self.m_low[off:off + n], self.v_low[off:off + n],
                    self.m_absmax[b0:b0 + nb], self.v_absmax[b0:b0 + nb], decay, *hyper, self.seed, at)

    def fused_step(self, tokens, targets, lr: float | None = None, max_grad_norm: float | None = None,
                   clip: str = "exact", n_targets: int | None = None, reduce=None) -> tuple[float, float]:
        """(loss, grad norm): forward_backward with each group of tensors updated as soon as its
        gradients are complete, so a model made with fused_update=True needs no full gradient
        buffer. The global norm is known only at the end of backward, so clipping is either
        clip="exact": a first forward and backward pass only measures the norm (nothing is
        updated, nothing kept), the second updates with min(1, max_grad_norm / norm), as the
        full-buffer step does, for twice the compute; or clip="previous": one pass, scaled by
        min(1, max_grad_norm / the previous step's norm) (no clipping on the first step). A
        non-finite gradient stops the updates from its group on (clip="exact": the step is
        skipped before anything moves); the norm returned is then NaN.

        Data parallel (codette_np.distributed): tokens are this rank's rows, n_targets the
        global batch's count, and reduce(arrays) sums a finished group's gradients over the
        ranks in place before they are measured or used; the optimizer updates its shard only."""
        lr = self.lr if lr is None else _check_lr(lr)
        _check_clip(max_grad_norm)
        if clip not in CLIP_RULES:
            raise ValueError(f"clip must be one of {CLIP_RULES}, not {clip!r}")
        K, g = self.model.kernels, self.model._g
        scale, measured = 1.0, None
        if max_grad_norm and clip == "exact":  # pass 1: the norm of this step's gradients
            sumsq = [0.0]

            def measure(names):
                grads = [g[n].reshape(-1) for n in names]
                if reduce is not None:
                    reduce(grads)
                sumsq[0] += sum(K.grad_norm_sq(x) for x in grads)

            loss = self.model.forward_backward(tokens, targets, on_grads=measure, n_targets=n_targets)
            measured = math.sqrt(sumsq[0]) if math.isfinite(sumsq[0]) else math.nan
            if not (math.isfinite(loss) and math.isfinite(measured)):
                return loss, math.nan  # nothing moved: the step did not happen
            if measured > max_grad_norm:
                scale = max_grad_norm / (measured + 1e-6)
        elif max_grad_norm:
            prev = self.last_grad_norm
            if prev is not None and prev > max_grad_norm:
                scale = max_grad_norm / (prev + 1e-6)
        self.t += 1
        hyper = (lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.t, scale)
        total = {"sumsq": 0.0, "bad": False, "updated": 0}

        def on_grads(names):
            if total["bad"]:
                return
            grads = [g[n].reshape(-1) for n in names]
            if reduce is not None:
                reduce(grads)
            ss = sum(K.grad_norm_sq(x) for x in grads)
            if not math.isfinite(ss):
                total["bad"] = True
                return
            total["sumsq"] += ss
            for n, x in zip(names, grads):
                if n in self._entry:  # (a shard may hold no piece of it)
                    self._update(self._entry[n], x, hyper)
            total["updated"] += 1

        loss = self.model.forward_backward(tokens, targets, on_grads=on_grads, n_targets=n_targets)
        if not total["updated"]:  # nothing moved (a non-finite loss, say): the step did not happen
            self.t -= 1
        norm = math.nan if total["bad"] else math.sqrt(total["sumsq"])
        if math.isfinite(norm):
            self.last_grad_norm = norm
        return loss, norm

    def state_dict(self) -> dict:
        return {**self.state_arrays(), "t": self.t, "lr": self.lr, "beta1": self.beta1,
                "beta2": self.beta2, "eps": self.eps, "weight_decay": self.weight_decay,
                "state": self.state_format, "seed": self.seed, "last_grad_norm": self.last_grad_norm,
                "q8_code": Q8_CODE}

    def upgrade_q8_codes(self, version: int):
        """After loading "q8" moments written with code `version` (1: the m code of 7 octaves),
        rewrite them in this version's code (each m code to its nearest; v is unchanged)."""
        if self.state_format != "q8" or version == Q8_CODE:
            return
        if version != 1:
            raise ValueError(f"8-bit moments of code version {version}: this version reads 1 and {Q8_CODE}")
        lut = q8_m_codes_from_v1()
        for i in range(0, self.m_low.size, 1 << 24):  # in place, 16M codes at a time
            chunk = self.m_low[i:i + (1 << 24)]
            np.take(lut, chunk, out=chunk)

    def load_state_dict(self, s: dict):
        if s.get("state", "fp32") != self.state_format:
            raise ValueError(f"optimizer state is {s.get('state', 'fp32')!r}, this optimizer keeps "
                             f"{self.state_format!r}")
        for name, a in self.state_arrays().items():
            if s[name].shape != a.shape:
                raise ValueError(f"optimizer state {name} has {s[name].shape[0]} elements, "
                                 f"this model needs {a.shape[0]}")
        for name, a in self.state_arrays().items():
            a[:] = s[name]
        self.upgrade_q8_codes(int(s.get("q8_code", 1)))
        self.t = int(s["t"])
        self.seed = int(s.get("seed", self.seed))
        self.last_grad_norm = s.get("last_grad_norm")
        for k in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            if k in s:
                setattr(self, k, float(s[k]))

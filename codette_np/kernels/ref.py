"""NumPy reference kernels: the living specification and the oracle.

Every op of the model as a pair of plain functions, dtype-generic (float64
runs are the oracle every other backend is checked against). The C and
Numba backends export the same names with the same argument order.

Argument order: outputs, then inputs, then weights, then sizes/scalars.

Dimensions: B batch, T time, C d_model, NH heads, hs head_dim (C = NH*hs),
F d_ff, V vocab, N = B*T rows. Activations are row-major (N, C) buffers;
q/k/v are (B, T, NH, hs) views that may be strided (they live side by side
in one (N, 3C) buffer).

THE GRADIENT RULE: backward kernels WRITE (=) every gradient they output,
activations and parameters alike. Where a tensor gets several contributions
the model sums them explicitly: the residual stream with
`residual_backward` (dst += src), the tied embedding by having
`embedding_backward` scatter-ADD into the head's gradient (a scatter adds,
since tokens repeat). The one other exception: `layernorm_backward_add`
ADDS its input gradient into the residual stream's gradient (it is
`layernorm_backward` fused with `residual_backward`); its dweight and dbias
are written as usual.

Fused kernels (one pass over memory instead of two) are defined here as the
composition of the unfused ones: `bias_gelu_forward`, `gelu_bias_backward`,
`layernorm_backward_add`.

Forward kernels save in explicit outputs exactly what backward needs
(layernorm: mean, rstd; attention: per-row log-sum-exp).
"""

from __future__ import annotations

import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)  # GELU tanh-approximation constants
GELU_A = 0.044715

# ---------------------------------------------------------------------------
# embedding


def embedding_forward(out, tokens, wte):
    """out (N, C) = wte[tokens]; tokens (N,) int32, wte (V, C)."""
    np.take(wte, tokens, axis=0, out=out)


def embedding_backward(dwte, dout, tokens):
    """dwte (V, C) += scatter of dout (N, C) rows at tokens (N,). Adds (see rule)."""
    np.add.at(dwte, tokens, dout)


# ---------------------------------------------------------------------------
# layernorm (biased variance)


def layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    """out (N, C), mean (N,), rstd (N,) <- inp (N, C), weight (C,), bias (C,)."""
    mean[:] = inp.mean(axis=1)
    xc = inp - mean[:, None]
    var = (xc * xc).mean(axis=1)
    rstd[:] = 1.0 / np.sqrt(var + eps)
    out[:] = xc * rstd[:, None] * weight + bias


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    """dinp (N, C), dweight (C,), dbias (C,) <- dout (N, C), saved inp/mean/rstd."""
    xhat = (inp - mean[:, None]) * rstd[:, None]
    dbias[:] = dout.sum(axis=0)
    dweight[:] = (dout * xhat).sum(axis=0)
    g = dout * weight  # (N, C) gradient wrt xhat
    dinp[:] = rstd[:, None] * (g - g.mean(axis=1, keepdims=True)
                               - xhat * (g * xhat).mean(axis=1, keepdims=True))


def layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd):
    """dresid (N, C) += dinp; dweight (C,), dbias (C,) written: layernorm_backward
    whose input gradient is added into the residual stream (see the rule)."""
    dinp = np.empty_like(dresid)  # (N, C)
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd)
    residual_backward(dresid, dinp)


# ---------------------------------------------------------------------------
# bias, residual


def bias_forward(out, bias):
    """out (N, O) += bias (O,)  (in place, after the GEMM wrote out)."""
    out += bias


def bias_backward(dbias, dout):
    """dbias (O,) = column sums of dout (N, O)."""
    dbias[:] = dout.sum(axis=0)


def residual_forward(out, resid, branch, bias):
    """out (N, C) = resid + branch + bias; out may alias branch."""
    np.add(resid, branch, out=out)
    out += bias


def residual_backward(dresid, dbranch):
    """dresid (N, C) += dbranch (N, C): the residual stream sums its branches."""
    dresid += dbranch


# ---------------------------------------------------------------------------
# RoPE, NEOX style over the full head: pairs (j, j + hs/2)


def rope_tables(T, hs, base, dtype, pos0=0):
    """cos, sin (T, hs/2) for positions pos0..pos0+T-1, theta_j = pos * base^(-2j/hs)."""
    j = np.arange(hs // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * j / hs)
    ang = np.arange(pos0, pos0 + T, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)


def rope_forward(out, inp, cos, sin):
    """out (B, T, NH, hs) = rotate(inp) ; cos/sin (T, hs/2). out may alias inp."""
    h = inp.shape[-1] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    x1, x2 = inp[..., :h].copy(), inp[..., h:].copy()
    out[..., :h] = x1 * c - x2 * s
    out[..., h:] = x2 * c + x1 * s


def rope_backward(dinp, dout, cos, sin):
    """dinp (B, T, NH, hs) = inverse rotation of dout (rotation by -theta)."""
    h = dout.shape[-1] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    d1, d2 = dout[..., :h].copy(), dout[..., h:].copy()
    dinp[..., :h] = d1 * c + d2 * s
    dinp[..., h:] = d2 * c - d1 * s


# ---------------------------------------------------------------------------
# causal attention, scale 1/sqrt(hs)


def attention_forward(out, lse, q, k, v):
    """out (B, T, NH, hs), lse (B, NH, T) <- q, k, v (B, T, NH, hs).

    The reference materializes the (T, T) scores; fast backends must not.
    """
    B, T, NH, hs = q.shape
    scale = 1.0 / math.sqrt(hs)
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # (B, NH, T, hs)
    s = np.matmul(qh, kh.transpose(0, 1, 3, 2)) * scale  # (B, NH, T, T)
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)
    s[..., mask] = -np.inf
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    lse[:] = (m + np.log(l))[..., 0]
    out[:] = np.matmul(p / l, vh).transpose(0, 2, 1, 3)


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse):
    """dq, dk, dv (B, T, NH, hs) <- dout, and the forward's q, k, v, out, lse.

    Recomputes the probabilities from lse: P = exp(S - lse).
    """
    B, T, NH, hs = q.shape
    scale = 1.0 / math.sqrt(hs)
    qh, kh, vh, oh, doh = (a.transpose(0, 2, 1, 3) for a in (q, k, v, out, dout))
    s = np.matmul(qh, kh.transpose(0, 1, 3, 2)) * scale
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)
    s[..., mask] = -np.inf
    p = np.exp(s - lse[..., None])  # (B, NH, T, T)
    dv[:] = np.matmul(p.transpose(0, 1, 3, 2), doh).transpose(0, 2, 1, 3)
    dp = np.matmul(doh, vh.transpose(0, 1, 3, 2))
    delta = (doh * oh).sum(axis=-1, keepdims=True)  # (B, NH, T, 1)
    ds = p * (dp - delta) * scale
    dq[:] = np.matmul(ds, kh).transpose(0, 2, 1, 3)
    dk[:] = np.matmul(ds.transpose(0, 1, 3, 2), qh).transpose(0, 2, 1, 3)


# ---------------------------------------------------------------------------
# GELU, tanh approximation


def gelu_forward(out, inp):
    """out (N, F) = 0.5 x (1 + tanh(c (x + a x^3)))."""
    x = inp
    out[:] = 0.5 * x * (1.0 + np.tanh(GELU_C * (x + GELU_A * x * x * x)))


def gelu_backward(dinp, dout, inp):
    """dinp (N, F) = dout * gelu'(inp)."""
    x = inp
    t = np.tanh(GELU_C * (x + GELU_A * x * x * x))
    dt = GELU_C * (1.0 + 3.0 * GELU_A * x * x)
    dinp[:] = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)


def bias_gelu_forward(out, pre, bias):
    """pre (N, F) += bias (F,) in place (pre keeps the biased pre-activation
    for backward); out (N, F) = gelu(pre). out must not alias pre."""
    bias_forward(pre, bias)
    gelu_forward(out, pre)


def gelu_bias_backward(dinp, dbias, dout, pre):
    """dinp (N, F) = dout (N, F) * gelu'(pre (N, F)); dbias (F,) = column sums of dinp."""
    gelu_backward(dinp, dout, pre)
    bias_backward(dbias, dinp)


# ---------------------------------------------------------------------------
# cross-entropy fused with softmax


def crossentropy_forward_backward(losses, dlogits, logits, targets, dscale):
    """losses (R,), dlogits (R, V) <- logits (R, V), targets (R,) int32.

    losses[r] = logsumexp(logits[r]) - logits[r, t]; rows with target -1 get
    loss 0 and zero gradient. dlogits = (softmax - onehot) * dscale, where
    dscale is d(total loss)/d(losses[r]) (1 / number of targets for a mean).
    dlogits may alias logits.
    """
    valid = targets >= 0
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    ssum = e.sum(axis=1, keepdims=True)
    tsafe = np.where(valid, targets, 0)
    rows = np.arange(logits.shape[0])
    lt = logits[rows, tsafe]
    losses[:] = np.where(valid, (m[:, 0] + np.log(ssum[:, 0])) - lt, 0.0)
    g = e / ssum
    g[rows, tsafe] -= 1.0
    g *= dscale
    g[~valid] = 0.0
    dlogits[:] = g


# ---------------------------------------------------------------------------
# optimizer


def grad_norm_sq(grads):
    """Sum of squares of grads (P,), accumulated in float64."""
    g = grads.astype(np.float64, copy=False)
    return float(np.dot(g, g))


def adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
               step, grad_scale):
    """One fused AdamW update of one tensor (n,), in place.

    g = grads * grad_scale (clipping); decoupled decay p -= lr*wd*p when
    `decay` (the tensor is a matrix); bias-corrected moments; step counts from 1.
    """
    g = grads * grad_scale
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    if decay:
        params -= (lr * weight_decay) * params
    params -= lr * (m / bc1) / (np.sqrt(v / bc2) + eps)


# ---- low-precision moments: stochastic rounding, bf16 and 8-bit codes ----
# The random bits of element i of a tensor at flat-buffer offset `offset`:
# sr_bits(sr_key(seed, step, stream), offset + i), stream 0 for m, 1 for v.

_M64 = (1 << 64) - 1
Q8_BLOCK = 256  # elements per 8-bit block (one absmax each)
Q8_M_EMIN, Q8_V_EMIN = -15, -15  # smallest exponent of the m and v codes
Q8_M_MB, Q8_V_MB = 3, 4  # mantissa bits of the m and v codes (csrc/adamw.c says why)
Q8_CODE = 2  # the codes' version: 1 had m with 4 mantissa bits over 7 octaves (Q8_M_EMIN -7)


def _mix64(z):
    """splitmix64's finalizer, on Python ints or uint64 arrays (wrapping)."""
    if isinstance(z, int):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sr_key(seed: int, step: int, stream: int) -> int:
    return _mix64((_mix64((_mix64(seed & _M64) + step) & _M64) + stream) & _M64)


def _mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 (C. Wellons' 32-bit integer hash) on uint32 arrays (wrapping)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def sr_bits(key: int, index: np.ndarray) -> np.ndarray:
    """uint32 random bits of each flat-buffer index (int64 array): the index's two 32-bit
    halves folded into one word, the key's high half added, then _mix32 (32-bit arithmetic
    only, so the C kernels hash in 32-bit SIMD lanes)."""
    with np.errstate(over="ignore"):
        idx = np.asarray(index).astype(np.uint64)
        lo = (idx & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        hi = (idx >> np.uint64(32)).astype(np.uint32)
        word = lo * np.uint32(0x9E3779B9) + hi * np.uint32(0x85EBCA77)
        return _mix32(word + np.uint32((key >> 32) & 0xFFFFFFFF))


def bf16_decode(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def bf16_round_sr(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """x (float64) -> bf16 bits, the magnitude rounded up with probability (distance to the
    bf16 below) / (bf16 spacing), decided by the low 16 bits of r."""
    lo = (x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000))
    lo_val = np.abs(lo.view(np.float32).astype(np.float64))
    hi_val = np.abs((lo + np.uint32(0x10000)).view(np.float32).astype(np.float64))
    frac = (np.abs(x) - lo_val) / (hi_val - lo_val)
    lo = np.where(frac < 0, (lo - np.uint32(0x10000)), lo)  # x's fp32 rounding crossed a bf16 value
    frac = np.where(frac < 0, frac + 1, frac)
    up = (r & np.uint32(0xFFFF)).astype(np.float64) >= 65536.0 * (1.0 - frac)
    return ((lo >> np.uint32(16)) + up).astype(np.uint16)


# ---- bf16 weights: decoded to float32 for compute and the update, stored back with
# stochastic rounding from stream 2: sr_bits(sr_key(seed, step, 2), offset + i)
SR_STREAM_WEIGHTS = 2


def bf16_to_f32(out, h):
    """out (n,) float32 = the values of the bf16 bits h (n,) uint16 (exact)."""
    out[:] = (h.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_sr(out, x, seed, step, offset):
    """out (n,) uint16 = x (n,) rounded to bf16 stochastically: up with probability (distance to
    the bf16 below) / (bf16 spacing), from the bits of (seed, step, stream 2, offset + i)."""
    idx = offset + np.arange(x.shape[0], dtype=np.int64)
    out[:] = bf16_round_sr(np.asarray(x, np.float64), sr_bits(sr_key(seed, step, SR_STREAM_WEIGHTS), idx))


def bf16_round_nearest(x: np.ndarray) -> np.ndarray:
    """x (any shape, finite float32) -> bf16 bits (uint16), rounded to nearest, ties to even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def q8_values(emin: int, mb: int) -> np.ndarray:
    """(256,) float64: the magnitude / absmax of each code of a small float with mb mantissa
    bits whose smallest exponent is emin (0 for code 0; codes above 1.0 unused)."""
    c = np.arange(256)
    vals = 2.0 ** ((c >> mb) + emin) * (1.0 + (c & ((1 << mb) - 1)) / 2.0 ** mb)
    vals[0] = 0.0
    return vals


def q8_decode_m(codes: np.ndarray) -> np.ndarray:
    mag = q8_values(Q8_M_EMIN, Q8_M_MB)[codes & 127]
    return np.where(codes & 128, -mag, mag)


def q8_decode_v(codes: np.ndarray) -> np.ndarray:
    return q8_values(Q8_V_EMIN, Q8_V_MB)[codes]


def q8_m_codes_from_v1() -> np.ndarray:
    """(256,) uint8: for each m code of version 1 (4 mantissa bits, 7 octaves), the nearest m
    code of this version (ties away from zero), so moments saved by version 1 resume."""
    u = q8_values(-7, 4)[:128]  # version 1's m magnitudes
    vals = q8_values(Q8_M_EMIN, Q8_M_MB)[:(-Q8_M_EMIN << Q8_M_MB) + 1]
    lo = np.clip(np.searchsorted(vals, u, side="right") - 1, 0, len(vals) - 2)
    mag = lo + (u - vals[lo] >= vals[lo + 1] - u)
    return np.concatenate([mag, mag | 128]).astype(np.uint8)


def q8_encode(u: np.ndarray, emin: int, r: np.ndarray, floor_up: bool, mb: int) -> np.ndarray:
    """u in [0, 1] (float64) -> codes with mb mantissa bits, rounded stochastically between
    the two neighbouring codes (decided by the low 23 - mb bits of r, or the top 24 under the
    smallest code); with floor_up, a u > 0 under the smallest code becomes the smallest code,
    never 0."""
    vals = q8_values(emin, mb)[:(-emin << mb) + 1]  # up to the code of 1.0, ascending
    lo = np.clip(np.searchsorted(vals, u, side="right") - 1, 0, len(vals) - 2)
    frac = (u - vals[lo]) / (vals[lo + 1] - vals[lo])
    under = lo == 0
    low = 23 - mb  # the float32 mantissa bits a code drops
    up = np.where(under, (r >> np.uint32(8)).astype(np.float64) / 2.0 ** 24 < frac,
                  (r & np.uint32((1 << low) - 1)).astype(np.float64) >= 2.0 ** low * (1.0 - frac))
    if floor_up:
        up |= under & (u > 0)
    up &= u > vals[lo]  # exactly on a code: stays
    return (lo + up).astype(np.uint8)


def _moments_update(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay, step, grad_scale):
    """The fp32-state update on float64 copies; returns the new (params, m, v)."""
    p, m, v = params.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    adamw_step(p, grads.astype(np.float64), m, v, decay, lr, beta1, beta2, eps, weight_decay,
               step, grad_scale)
    return p, m, v


def adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                    step, grad_scale, seed, offset):
    """As adamw_step with m, v (n,) bf16 bits (uint16), stored back with stochastic rounding."""
    p, mn, vn = _moments_update(params, grads, bf16_decode(m), bf16_decode(v), decay, lr, beta1,
                                beta2, eps, weight_decay, step, grad_scale)
    idx = offset + np.arange(params.shape[0], dtype=np.int64)
    params[:] = p
    m[:] = bf16_round_sr(mn, sr_bits(sr_key(seed, step, 0), idx))
    v[:] = bf16_round_sr(vn, sr_bits(sr_key(seed, step, 1), idx))


def _block_max(x: np.ndarray) -> np.ndarray:
    """(ceil(n / Q8_BLOCK),) max of each block of x (n,) >= 0."""
    nb = -(-len(x) // Q8_BLOCK)
    padded = np.zeros(nb * Q8_BLOCK)
    padded[:len(x)] = x
    return padded.reshape(nb, Q8_BLOCK).max(axis=1)


def adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                  weight_decay, step, grad_scale, seed, offset):
    """As adamw_step with m, v (n,) 8-bit codes scaled per block of Q8_BLOCK by m_absmax,
    v_absmax (ceil(n / Q8_BLOCK),): decode, update, take each block's new absmax, re-encode."""
    n = params.shape[0]
    blk = np.arange(n) // Q8_BLOCK
    m64 = q8_decode_m(m) * m_absmax.astype(np.float64)[blk]
    v64 = q8_decode_v(v) * v_absmax.astype(np.float64)[blk]
    p, mn, vn = _moments_update(params, grads, m64, v64, decay, lr, beta1, beta2, eps,
                                weight_decay, step, grad_scale)
    am, av = _block_max(np.abs(mn)), _block_max(vn)
    idx = offset + np.arange(n, dtype=np.int64)
    um = np.minimum(np.abs(mn) / np.where(am > 0, am, 1.0)[blk], 1.0)
    uv = np.minimum(vn / np.where(av > 0, av, 1.0)[blk], 1.0)
    cm = q8_encode(um, Q8_M_EMIN, sr_bits(sr_key(seed, step, 0), idx), floor_up=False, mb=Q8_M_MB)
    params[:] = p
    m[:] = cm | np.where((mn < 0) & (cm > 0), 128, 0).astype(np.uint8)
    v[:] = q8_encode(uv, Q8_V_EMIN, sr_bits(sr_key(seed, step, 1), idx), floor_up=True, mb=Q8_V_MB)
    m_absmax[:] = am
    v_absmax[:] = av


def adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                        weight_decay, step, grad_scale, seed, offset):
    """As adamw_step_q8 with params (n,) bf16 bits (uint16): decoded, updated, then stored back
    rounded stochastically with stream 2 (bf16_to_f32, adamw_step_q8, f32_to_bf16_sr)."""
    p = bf16_decode(params)  # (n,) float64
    adamw_step_q8(p, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps, weight_decay,
                  step, grad_scale, seed, offset)
    f32_to_bf16_sr(params, p, seed, step, offset)

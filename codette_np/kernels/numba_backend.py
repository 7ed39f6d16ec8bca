"""Numba backend: every kernel of kernels/ref.py, JIT-compiled, float32 only.

The fallback where the C extension is not built. Each kernel is a thin
Python wrapper with the name and argument order of its reference (it calls
the check of the same name in kernels/checks.py, the contract shared with
the C backend) around an `@njit(cache=True)` inner
function; strided (B, T, NH, hs) views (q/k/v of the (N, 3C) buffer) are
passed as they are. No fastmath: operation order follows the reference, NaNs propagate.

Determinism: every output element is computed by exactly one thread, and
every reduction across rows (bias/LayerNorm parameter gradients, the grad
norm) sums fixed blocks of rows in a fixed order, so results are bitwise
the same for any thread count (numba.set_num_threads).

Reductions along a row accumulate in float64 with a fixed number of
independent partial sums (no fastmath means LLVM cannot reorder a sum, so
the unrolling is written out). Inner loops index 1-D row views, which LLVM
vectorizes; libm's expf/tanhf are scalar calls, so the softmax exp and
GELU's tanh are written as float32 polynomial/rational approximations
(within 1 and 7 ulp) that vectorize.

Attention is flash-style: per (batch, head) a thread gathers q, k, v into
contiguous scratch, runs an online softmax over blocks of keys and saves the
per-row log-sum-exp; backward recomputes the probabilities from it. Memory
is O(T * hs) per thread, never a (T, T) matrix.

Compile cache: `cache=True` stores compiled kernels next to this file in
__pycache__ when that is writable; otherwise Numba itself falls back to
NUMBA_CACHE_DIR when set, else to the user cache directory
($XDG_CACHE_HOME/numba or ~/.cache/numba). If none of them is writable,
the kernels are compiled without a cache (every process compiles again).

Dimensions: B batch, T time, C channels, NH heads, hs head size, F d_ff,
V vocab, N = B*T rows, R rows of logits, P parameters.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from codette_np.kernels import checks, ref
from codette_np.kernels.ref import Q8_BLOCK

NAME = "numba"

ROW_BLOCK = 32  # rows per partial sum in column reductions (fixed: thread-count independent)
NORM_CHUNK = 1 << 14  # elements per partial sum in grad_norm_sq (as the C kernel)
KEY_BLOCK = 64  # keys per step of the online softmax

_F32 = np.float32
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_GELU_C = np.float32(math.sqrt(2.0 / math.pi))
_GELU_A = np.float32(0.044715)
_GELU_3A = np.float32(3.0 * 0.044715)
_NEG_INF = np.float32(-np.inf)


def _jit(parallel=False):
    """njit(cache=True); without a cache when no cache directory is writable.

    error_model="numpy": a float division by zero gives inf/nan as in NumPy
    instead of raising, which also lets LLVM vectorize loops that divide.
    nogil: the kernels touch arrays only, so other threads (the MPI watchdog's
    heartbeat) run while they do.
    """

    def deco(fn):
        try:
            return njit(cache=True, parallel=parallel, error_model="numpy", nogil=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, parallel=parallel, error_model="numpy", nogil=True)(fn)

    return deco


# ---------------------------------------------------------------------------
# shared helpers (compiled into their callers)


@_jit()
def _row_sum(x):
    """sum of x (n,) in float64, four interleaved partial sums then added in order."""
    n = x.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    n4 = n - n % 4
    for c in range(0, n4, 4):
        s0 += x[c]
        s1 += x[c + 1]
        s2 += x[c + 2]
        s3 += x[c + 3]
    for c in range(n4, n):
        s0 += x[c]
    return (s0 + s1) + (s2 + s3)


@_jit()
def _row_dot(x, y):
    """sum of x * y over x, y (n,) (float32 products), in float64, four partial sums as _row_sum."""
    n = x.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    n4 = n - n % 4
    for c in range(0, n4, 4):
        s0 += x[c] * y[c]
        s1 += x[c + 1] * y[c + 1]
        s2 += x[c + 2] * y[c + 2]
        s3 += x[c + 3] * y[c + 3]
    for c in range(n4, n):
        s0 += x[c] * y[c]
    return (s0 + s1) + (s2 + s3)


@_jit()
def _row_sumsq_centered(x, mean):
    """sum of (x - mean)^2 over x (n,), float64, four partial sums."""
    n = x.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    n4 = n - n % 4
    for c in range(0, n4, 4):
        d0 = x[c] - mean
        d1 = x[c + 1] - mean
        d2 = x[c + 2] - mean
        d3 = x[c + 3] - mean
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
    for c in range(n4, n):
        d = x[c] - mean
        s0 += d * d
    return (s0 + s1) + (s2 + s3)


@_jit()
def _row_max(x):
    """max of x (n,) ignoring NaN (callers let NaN propagate through their sums); eight
    interleaved partial maxima (exact in any order)."""
    n = x.shape[0]
    acc = np.full(8, -np.inf, np.float32)
    n8 = n - n % 8
    for c in range(0, n8, 8):
        for u in range(8):
            v = x[c + u]
            if v > acc[u]:
                acc[u] = v
    m = acc[0]
    for u in range(1, 8):
        if acc[u] > m:
            m = acc[u]
    for c in range(n8, n):
        if x[c] > m:
            m = x[c]
    return m


# exp for float32 (Cephes expf: 2^n * p(r), within 1 ulp), written as plain
# arithmetic so that the loop vectorizes (libm's expf is a scalar call).
# Inputs above 88.38 saturate to 2.4e38: callers only pass x - max <= 0.
_EXP_HI = np.float32(88.3762626647949)
_EXP_LO = np.float32(-88.3762626647949)  # exp below this flushes to 0
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EP0 = np.float32(1.9875691500e-4)
_EP1 = np.float32(1.3981999507e-3)
_EP2 = np.float32(8.3334519073e-3)
_EP3 = np.float32(4.1665795894e-2)
_EP4 = np.float32(1.6666665459e-1)
_EP5 = np.float32(5.0000001201e-1)


@_jit()
def _exp_shifted(y, x, shift, bits):
    """y (n,) = exp(x - shift) for x (n,); y may alias x; bits (n,) int32 scratch."""
    n = x.shape[0]
    for j in range(n):
        v = x[j] - shift
        if v > _EXP_HI:
            v = _EXP_HI
        if v < _EXP_LO:
            v = _EXP_LO
        k = np.floor(v * _LOG2E + _HALF)
        r = v - k * _LN2_HI - k * _LN2_LO
        p = ((((_EP0 * r + _EP1) * r + _EP2) * r + _EP3) * r + _EP4) * r + _EP5
        y[j] = p * (r * r) + r + _ONE
        if k != k:  # NaN: y is NaN already; keep the int conversion defined
            k = _F32(0.0)
        bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)  # the float 2^k
    pow2 = bits.view(np.float32)
    for j in range(n):
        y[j] *= pow2[j]


@_jit()
def _store_block(pr, acc):
    """pr (C,) float64 = acc (C,) float32: one block's column sums."""
    for c in range(acc.shape[0]):
        pr[c] = acc[c]


@_jit()
def _reduce_blocks(out, part):
    """out (C,) float32 = sum over blocks of part (nblk, C) float64, in block order."""
    nblk, C = part.shape
    acc = np.zeros(C, np.float64)
    for i in range(nblk):
        pr = part[i]
        for c in range(C):
            acc[c] += pr[c]
    for c in range(C):
        out[c] = acc[c]


# ---------------------------------------------------------------------------
# embedding


@_jit(parallel=True)
def _embedding_forward(out, tokens, wte):
    N, C = out.shape
    for n in prange(N):
        src = wte[tokens[n]]
        dst = out[n]
        for c in range(C):
            dst[c] = src[c]


@_jit(parallel=True)
def _embedding_backward(dwte, dout, tokens):
    # counting sort of the rows by token (stable: each token's rows stay in row order)
    V, C = dwte.shape
    N = tokens.shape[0]
    start = np.zeros(V + 1, np.int64)
    for n in range(N):
        start[tokens[n] + 1] += 1
    for t in range(V):
        start[t + 1] += start[t]
    fill = start[:V].copy()
    order = np.empty(N, np.int64)
    for n in range(N):
        t = tokens[n]
        order[fill[t]] = n
        fill[t] += 1
    # one thread per token row of dwte: adds its rows in row order, as np.add.at
    for t in prange(V):
        dst = dwte[t]
        for i in range(start[t], start[t + 1]):
            src = dout[order[i]]
            for c in range(C):
                dst[c] += src[c]


# ---------------------------------------------------------------------------
# layernorm


@_jit(parallel=True)
def _layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    N, C = inp.shape
    for n in prange(N):
        x = inp[n]
        m = _row_sum(x) / C
        var = _row_sumsq_centered(x, m) / C
        m32 = _F32(m)
        r32 = _F32(1.0 / math.sqrt(var + eps))
        mean[n] = m32
        rstd[n] = r32
        y = out[n]
        for c in range(C):
            y[c] = (x[c] - m32) * r32 * weight[c] + bias[c]


@_jit(parallel=True)
def _layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, add):
    """As the reference; dweight, dbias are summed over row blocks as in _bias_backward.
    add=False writes dinp (N, C); add=True adds the input gradient into it (dinp += ...),
    rounded as writing it and then adding it with _residual_backward."""
    N, C = inp.shape
    nblk = (N + ROW_BLOCK - 1) // ROW_BLOCK
    dweight_part = np.empty((nblk, C), np.float64)
    dbias_part = np.empty((nblk, C), np.float64)
    for blk in prange(nblk):
        g = np.empty(C, np.float32)  # dout * weight, one row
        xh = np.empty(C, np.float32)  # xhat, one row
        pw = np.zeros(C, np.float32)  # this block's sum of dout * xhat
        pb = np.zeros(C, np.float32)  # this block's sum of dout
        for n in range(blk * ROW_BLOCK, min(N, (blk + 1) * ROW_BLOCK)):
            m = mean[n]
            r = rstd[n]
            xr = inp[n]
            dr = dout[n]
            for c in range(C):
                d = dr[c]
                xh[c] = (xr[c] - m) * r
                g[c] = d * weight[c]
                pb[c] += d
                pw[c] += d * xh[c]
            gm = _F32(_row_sum(g) / C)  # the row means of g and of g * xhat
            gxm = _F32(_row_dot(g, xh) / C)
            di = dinp[n]
            if add:
                for c in range(C):
                    di[c] += r * (g[c] - gm - xh[c] * gxm)
            else:
                for c in range(C):
                    di[c] = r * (g[c] - gm - xh[c] * gxm)
        _store_block(dweight_part[blk], pw)
        _store_block(dbias_part[blk], pb)
    _reduce_blocks(dweight, dweight_part)
    _reduce_blocks(dbias, dbias_part)


# ---------------------------------------------------------------------------
# bias, residual


@_jit(parallel=True)
def _bias_forward(out, bias):
    N, O = out.shape
    for n in prange(N):
        y = out[n]
        for o in range(O):
            y[o] += bias[o]


@_jit(parallel=True)
def _bias_backward(dbias, x):
    """dbias (O,) = column sums of x (N, O): blocks of ROW_BLOCK rows are summed in
    float32 (rows in order), then the block sums in float64 (blocks in order)."""
    N, O = x.shape
    nblk = (N + ROW_BLOCK - 1) // ROW_BLOCK
    part = np.empty((nblk, O), np.float64)
    for blk in prange(nblk):
        acc = np.zeros(O, np.float32)
        for n in range(blk * ROW_BLOCK, min(N, (blk + 1) * ROW_BLOCK)):
            xr = x[n]
            for o in range(O):
                acc[o] += xr[o]
        _store_block(part[blk], acc)
    _reduce_blocks(dbias, part)


@_jit(parallel=True)
def _residual_forward(out, resid, branch, bias):
    N, C = out.shape
    for n in prange(N):
        y = out[n]
        r = resid[n]
        x = branch[n]
        for c in range(C):
            y[c] = r[c] + x[c] + bias[c]


@_jit(parallel=True)
def _residual_backward(dresid, dbranch):
    N, C = dresid.shape
    for n in prange(N):
        y = dresid[n]
        x = dbranch[n]
        for c in range(C):
            y[c] += x[c]


# ---------------------------------------------------------------------------
# RoPE (NEOX pairs j, j + hs/2)


@_jit(parallel=True)
def _rope(out, inp, cos, sin, sign):
    """out = rotation of inp by sign * theta; out may alias inp (each pair is read before written)."""
    B, T, NH, hs = inp.shape
    h2 = hs // 2
    for bt in prange(B * T):
        b = bt // T
        t = bt % T
        c = cos[t]  # (hs/2,)
        s = sin[t]
        for h in range(NH):
            x = inp[b, t, h]  # (hs,)
            y = out[b, t, h]
            for j in range(h2):
                sj = sign * s[j]
                x1 = x[j]
                x2 = x[j + h2]
                y[j] = x1 * c[j] - x2 * sj
                y[j + h2] = x2 * c[j] + x1 * sj


# ---------------------------------------------------------------------------
# causal attention
#
# q, k, v, out and their gradients arrive as (B, T, NH, hs) views, usually
# strided (q, k, v side by side in one (N, 3C) buffer). The wrappers pass each
# as a 1-D contiguous view of the memory it spans plus its strides in
# elements, so the kernels seek rows directly (off = b*sb + t*st + h*sh) and
# the copy loops vectorize; only the view's own elements are read or written.


@_jit()
def _load_head(dst, src, st, b, h, T, hs, transpose):
    """dst (T, hs), or transposed (hs, >=T), = head h of batch b of src (flat, strides st)."""
    sb, stt, sh, sd = st
    for t in range(T):
        off = b * sb + t * stt + h * sh
        if transpose:
            for d in range(hs):
                dst[d, t] = src[off + d * sd]
        elif sd == 1:
            row = src[off:off + hs]
            drow = dst[t]
            for d in range(hs):
                drow[d] = row[d]
        else:
            drow = dst[t]
            for d in range(hs):
                drow[d] = src[off + d * sd]


@_jit()
def _store_head(dst, st, src, b, h, T, hs):
    """head h of batch b of dst (flat, strides st) = src (T, hs)."""
    sb, stt, sh, sd = st
    for t in range(T):
        off = b * sb + t * stt + h * sh
        srow = src[t]
        if sd == 1:
            row = dst[off:off + hs]
            for d in range(hs):
                row[d] = srow[d]
        else:
            for d in range(hs):
                dst[off + d * sd] = srow[d]


@_jit()
def _scores_block(s, x, Kt, j0):
    """s (KEY_BLOCK,) = x (hs,) . key j for j0 <= j < j0 + KEY_BLOCK, keys given transposed
    and zero-padded to whole blocks, Kt (hs, Tp). The fixed trip count lets LLVM unroll
    the key loop into whole vectors (twice as fast as a variable-length loop)."""
    hs = x.shape[0]
    for j in range(KEY_BLOCK):
        s[j] = 0.0
    for d in range(hs):
        xd = x[d]
        kd = Kt[d, j0:j0 + KEY_BLOCK]
        for j in range(KEY_BLOCK):
            s[j] += xd * kd[j]


@_jit()
def _add_weighted_rows(acc, w, X, j0, n):
    """acc (hs,) += w[j] * X[j0 + j] for j = 0..n-1, added in j order (four rows per pass)."""
    hs = acc.shape[0]
    n4 = n - n % 4
    for j in range(0, n4, 4):
        w0 = w[j]
        w1 = w[j + 1]
        w2 = w[j + 2]
        w3 = w[j + 3]
        x0 = X[j0 + j]
        x1 = X[j0 + j + 1]
        x2 = X[j0 + j + 2]
        x3 = X[j0 + j + 3]
        for d in range(hs):
            acc[d] = (((acc[d] + w0 * x0[d]) + w1 * x1[d]) + w2 * x2[d]) + w3 * x3[d]
    for j in range(n4, n):
        wj = w[j]
        xj = X[j0 + j]
        for d in range(hs):
            acc[d] += wj * xj[d]


@_jit(parallel=True)
def _attention_forward(out, ost, lse, q, qst, k, kst, v, vst, B, T, NH, hs):
    for bh in prange(B * NH):  # one thread per (b, h): it alone writes out[b, :, h], lse[b, h]
        _attention_forward_head(out, ost, lse, q, qst, k, kst, v, vst, bh // NH, bh % NH, T, hs)


@_jit()
def _attention_forward_head(out, ost, lse, q, qst, k, kst, v, vst, b, h, T, hs):
    scale = _F32(1.0 / math.sqrt(hs))
    Tp = (T + KEY_BLOCK - 1) // KEY_BLOCK * KEY_BLOCK
    # contiguous scratch for this (b, h): Q, V, O (T, hs) and K transposed, zero-padded (hs, Tp)
    Q = np.empty((T, hs), np.float32)
    Kt = np.zeros((hs, Tp), np.float32)
    Vs = np.empty((T, hs), np.float32)
    O = np.empty((T, hs), np.float32)
    _load_head(Q, q, qst, b, h, T, hs, False)
    _load_head(Kt, k, kst, b, h, T, hs, True)
    _load_head(Vs, v, vst, b, h, T, hs, False)
    s = np.empty(KEY_BLOCK, np.float32)  # scores, then probabilities, of one key block
    bits = np.empty(KEY_BLOCK, np.int32)  # scratch of _exp_shifted
    for i in range(T):
        acc = O[i]  # unnormalized output row
        for d in range(hs):
            acc[d] = 0.0
        m = _NEG_INF  # running max of the scores
        l = 0.0  # running sum of exp(score - m), float64
        for j0 in range(0, i + 1, KEY_BLOCK):
            nj = min(i + 1 - j0, KEY_BLOCK)  # keys j0..i of this block are visible
            _scores_block(s, Q[i], Kt, j0)
            bm = _NEG_INF
            for j in range(nj):
                s[j] *= scale
                bm = max(bm, s[j])
            if bm > m:  # new running max: rescale what was summed so far
                corr = _F32(math.exp(m - bm))
                l *= corr
                for d in range(hs):
                    acc[d] *= corr
                m = bm
            sb = s[:nj]
            _exp_shifted(sb, sb, m, bits)  # probabilities times exp(m - lse)
            l += _row_sum(sb)
            _add_weighted_rows(acc, s, Vs, j0, nj)
        inv = _F32(1.0 / l)
        for d in range(hs):
            acc[d] *= inv
        lse[b, h, i] = m + math.log(l)
    _store_head(out, ost, O, b, h, T, hs)


@_jit()
def _attention_backward_row(dqi, p, ds, bits, Q, K, Kt, Vt, dO, O, lse_i, i, scale):
    """Query row i: p[:i+1] = probabilities, ds[:i+1] = d scores, dqi (hs,) = d q_i.
    p and ds are zeroed from i+1 up to the end of this group of four rows."""
    hs = Q.shape[1]
    n = i + 1
    qi = Q[i]
    doi = dO[i]
    oi = O[i]
    di = 0.0  # delta_i = dout_i . out_i
    for d in range(hs):
        di += doi[d] * oi[d]
    for j0 in range(0, n, KEY_BLOCK):
        _scores_block(p[j0:j0 + KEY_BLOCK], qi, Kt, j0)  # q_i . k_j
        _scores_block(ds[j0:j0 + KEY_BLOCK], doi, Vt, j0)  # dout_i . v_j
    pn = p[:n]
    for j in range(n):
        pn[j] *= scale
    _exp_shifted(pn, pn, lse_i, bits)  # probabilities, recomputed from lse
    di32 = _F32(di)
    for j in range(n):
        ds[j] = p[j] * (ds[j] - di32) * scale
    for j in range(n, min(p.shape[0], (i // 4) * 4 + 4)):  # masked keys of the group
        p[j] = 0.0
        ds[j] = 0.0
    for d in range(hs):
        dqi[d] = 0.0
    _add_weighted_rows(dqi, ds, K, 0, n)


@_jit(parallel=True)
def _attention_backward(dq, dqst, dk, dkst, dv, dvst, dout, dost, q, qst, k, kst, v, vst,
                        out, ost, lse, B, T, NH, hs):
    for bh in prange(B * NH):  # one thread per (b, h): it alone writes dq, dk, dv[b, :, h]
        _attention_backward_head(dq, dqst, dk, dkst, dv, dvst, dout, dost, q, qst, k, kst, v, vst,
                                 out, ost, lse, bh // NH, bh % NH, T, hs)


@_jit()
def _attention_backward_head(dq, dqst, dk, dkst, dv, dvst, dout, dost, q, qst, k, kst, v, vst,
                             out, ost, lse, b, h, T, hs):
    scale = _F32(1.0 / math.sqrt(hs))
    Tp = (T + KEY_BLOCK - 1) // KEY_BLOCK * KEY_BLOCK
    Q = np.empty((T, hs), np.float32)
    K = np.empty((T, hs), np.float32)
    Kt = np.zeros((hs, Tp), np.float32)  # transposed, zero-padded to whole key blocks
    Vt = np.zeros((hs, Tp), np.float32)
    dO = np.empty((T, hs), np.float32)
    O = np.empty((T, hs), np.float32)
    _load_head(Q, q, qst, b, h, T, hs, False)
    _load_head(K, k, kst, b, h, T, hs, False)
    _load_head(Kt, k, kst, b, h, T, hs, True)
    _load_head(Vt, v, vst, b, h, T, hs, True)
    _load_head(dO, dout, dost, b, h, T, hs, False)
    _load_head(O, out, ost, b, h, T, hs, False)
    dQ = np.empty((T, hs), np.float32)
    dK = np.zeros((T, hs), np.float32)  # accumulated over query rows
    dV = np.zeros((T, hs), np.float32)
    P = np.zeros((4, Tp), np.float32)  # probabilities of four query rows (0 where masked)
    dS = np.zeros((4, Tp), np.float32)  # their d scores
    bits = np.empty(Tp, np.int32)  # scratch of _exp_shifted
    for i0 in range(0, T, 4):
        nr = min(4, T - i0)  # query rows i0 .. i0 + nr - 1
        for r in range(nr):
            _attention_backward_row(dQ[i0 + r], P[r], dS[r], bits, Q, K, Kt, Vt, dO, O,
                                    lse[b, h, i0 + r], i0 + r, scale)
        # dK[j] += sum_r dS[r, j] q_r, dV[j] += sum_r P[r, j] dout_r, rows added in order
        if nr == 4:
            q0, q1, q2, q3 = Q[i0], Q[i0 + 1], Q[i0 + 2], Q[i0 + 3]
            o0, o1, o2, o3 = dO[i0], dO[i0 + 1], dO[i0 + 2], dO[i0 + 3]
            for j in range(i0 + 4):
                s0, s1, s2, s3 = dS[0, j], dS[1, j], dS[2, j], dS[3, j]
                p0, p1, p2, p3 = P[0, j], P[1, j], P[2, j], P[3, j]
                dkj = dK[j]
                dvj = dV[j]
                for d in range(hs):
                    dkj[d] = (((dkj[d] + s0 * q0[d]) + s1 * q1[d]) + s2 * q2[d]) + s3 * q3[d]
                    dvj[d] = (((dvj[d] + p0 * o0[d]) + p1 * o1[d]) + p2 * o2[d]) + p3 * o3[d]
        else:
            for r in range(nr):
                qi = Q[i0 + r]
                doi = dO[i0 + r]
                for j in range(i0 + r + 1):
                    sj = dS[r, j]
                    pj = P[r, j]
                    dkj = dK[j]
                    dvj = dV[j]
                    for d in range(hs):
                        dkj[d] += sj * qi[d]
                        dvj[d] += pj * doi[d]
    _store_head(dq, dqst, dQ, b, h, T, hs)
    _store_head(dk, dkst, dK, b, h, T, hs)
    _store_head(dv, dvst, dV, b, h, T, hs)


# ---------------------------------------------------------------------------
# GELU (tanh approximation)


# Eigen's rational approximation of tanh for float32 (p/q, odd/even polynomials
# on x clamped to +-7.9053; within 7 ulp of tanh). Unlike libm's tanhf it is
# plain arithmetic, so the GELU loops vectorize. NaN passes through.
_TANH_CLAMP = np.float32(7.90531110763549805)
_TA1 = np.float32(4.89352455891786e-03)
_TA3 = np.float32(6.37261928875436e-04)
_TA5 = np.float32(1.48572235717979e-05)
_TA7 = np.float32(5.12229709037114e-08)
_TA9 = np.float32(-8.60467152213735e-11)
_TA11 = np.float32(2.00018790482477e-13)
_TA13 = np.float32(-2.76076847742355e-16)
_TB0 = np.float32(4.89352518554385e-03)
_TB2 = np.float32(2.26843463243900e-03)
_TB4 = np.float32(1.18534705686654e-04)
_TB6 = np.float32(1.19825839466702e-06)


@_jit()
def _tanh(x):
    if x > _TANH_CLAMP:
        x = _TANH_CLAMP
    if x < -_TANH_CLAMP:
        x = -_TANH_CLAMP
    x2 = x * x
    p = ((((((_TA13 * x2 + _TA11) * x2 + _TA9) * x2 + _TA7) * x2 + _TA5) * x2 + _TA3) * x2 + _TA1) * x
    q = ((_TB6 * x2 + _TB4) * x2 + _TB2) * x2 + _TB0
    return p / q


@_jit()
def _gelu(x):
    """gelu(x) = 0.5 x (1 + tanh(c (x + a x^3))), float32."""
    t = _tanh(_GELU_C * (x + _GELU_A * x * x * x))
    return _HALF * x * (_ONE + t)


@_jit()
def _gelu_grad(x):
    """gelu'(x), float32."""
    t = _tanh(_GELU_C * (x + _GELU_A * x * x * x))
    dt = _GELU_C * (_ONE + _GELU_3A * x * x)
    return _HALF * (_ONE + t) + _HALF * x * (_ONE - t * t) * dt


@_jit(parallel=True)
def _gelu_forward(out, inp):
    N, F = inp.shape
    for n in prange(N):
        xr = inp[n]
        y = out[n]
        for f in range(F):
            y[f] = _gelu(xr[f])


@_jit(parallel=True)
def _gelu_backward(dinp, dout, inp):
    N, F = inp.shape
    for n in prange(N):
        xr = inp[n]
        dr = dout[n]
        y = dinp[n]
        for f in range(F):
            y[f] = dr[f] * _gelu_grad(xr[f])


@_jit(parallel=True)
def _bias_gelu_forward(out, pre, bias):
    """pre (N, F) += bias (F,); out (N, F) = gelu(pre): one pass over pre."""
    N, F = pre.shape
    for n in prange(N):
        xr = pre[n]
        y = out[n]
        for f in range(F):
            h = xr[f] + bias[f]
            xr[f] = h
            y[f] = _gelu(h)


@_jit(parallel=True)
def _gelu_bias_backward(dinp, dbias, dout, pre):
    """dinp (N, F) = dout * gelu'(pre); dbias (F,) = column sums of dinp, summed over
    the row blocks of _bias_backward: one pass over dout and pre."""
    N, F = pre.shape
    nblk = (N + ROW_BLOCK - 1) // ROW_BLOCK
    part = np.empty((nblk, F), np.float64)
    for blk in prange(nblk):
        acc = np.zeros(F, np.float32)
        for n in range(blk * ROW_BLOCK, min(N, (blk + 1) * ROW_BLOCK)):
            xr = pre[n]
            dr = dout[n]
            y = dinp[n]
            for f in range(F):
                d = dr[f] * _gelu_grad(xr[f])
                y[f] = d
                acc[f] += d
        _store_block(part[blk], acc)
    _reduce_blocks(dbias, part)


# ---------------------------------------------------------------------------
# cross-entropy fused with softmax


@_jit(parallel=True)
def _crossentropy(losses, dlogits, logits, targets, dscale):
    R, V = logits.shape
    ds = _F32(dscale)
    for r in prange(R):
        t = targets[r]
        dr = dlogits[r]
        if t < 0:
            losses[r] = 0.0
            for c in range(V):
                dr[c] = 0.0
            continue
        xr = logits[r]
        lt = xr[t]
        m = _row_max(xr)  # a NaN in the row makes the sum, so the loss and gradient, NaN
        bits = np.empty(V, np.int32)
        _exp_shifted(dr, xr, m, bits)  # e = exp(logits - m); dlogits may alias logits
        et = dr[t]
        ssum = _row_sum(dr)
        losses[r] = (m + math.log(ssum)) - lt
        s32 = _F32(ssum)
        for c in range(V):
            dr[c] = dr[c] / s32 * ds
        dr[t] = (et / s32 - _ONE) * ds


# ---------------------------------------------------------------------------
# optimizer


@_jit(parallel=True)
def _sumsq_chunks(part, x):
    """part (nchunks,) float64 = sum of squares of each NORM_CHUNK slice of x (P,)."""
    P = x.shape[0]
    for ci in prange(part.shape[0]):
        lo = ci * NORM_CHUNK
        hi = min(P, lo + NORM_CHUNK)
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        hi4 = hi - (hi - lo) % 4
        for i in range(lo, hi4, 4):
            a0 = np.float64(x[i])
            a1 = np.float64(x[i + 1])
            a2 = np.float64(x[i + 2])
            a3 = np.float64(x[i + 3])
            s0 += a0 * a0
            s1 += a1 * a1
            s2 += a2 * a2
            s3 += a3 * a3
        for i in range(hi4, hi):
            a0 = np.float64(x[i])
            s0 += a0 * a0
        part[ci] = (s0 + s1) + (s2 + s3)


@_jit(parallel=True)
def _adamw(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay, step, grad_scale):
    n = params.shape[0]
    b1 = _F32(beta1)
    b2 = _F32(beta2)
    bc1 = _F32(1.0 - math.pow(np.float64(b1), step))
    bc2 = _F32(1.0 - math.pow(np.float64(b2), step))
    omb1 = _ONE - b1
    omb2 = _ONE - b2
    lr32 = _F32(lr)
    lr_wd = lr32 * _F32(weight_decay) if decay else _F32(0.0)
    eps32 = _F32(eps)
    gs = _F32(grad_scale)
    for i in prange(n):  # element-wise: any partition gives the same result
        g = grads[i] * gs
        mi = b1 * m[i] + omb1 * g
        vi = b2 * v[i] + omb2 * (g * g)
        m[i] = mi
        v[i] = vi
        p = params[i]
        p = p - lr_wd * p
        mhat = mi / bc1
        vhat = vi / bc2
        params[i] = p - lr32 * mhat / (math.sqrt(vhat) + eps32)


# ---- low-precision moments (as csrc/adamw.c; oracle kernels/ref.py) ----
_U64 = np.uint64


@_jit()
def _adam_consts(lr, beta1, beta2, eps, weight_decay, decay, step, grad_scale):
    """(b1, b2, bc1, bc2, lr, lr * wd, eps, grad_scale) in float32, as csrc/adamw.c's adam_setup."""
    b1 = _F32(beta1)
    b2 = _F32(beta2)
    lr32 = _F32(lr)
    return (b1, b2, _F32(1.0 - math.pow(np.float64(b1), step)), _F32(1.0 - math.pow(np.float64(b2), step)),
            lr32, lr32 * _F32(weight_decay) if decay else _F32(0.0), _F32(eps), _F32(grad_scale))


@_jit()
def _adam_param(p, mi, vi, lr32, lr_wd, bc1, bc2, eps32):
    p = p - lr_wd * p
    return p - lr32 * (mi / bc1) / (math.sqrt(vi / bc2) + eps32)


@_jit()
def _mix32(x):
    """lowbias32 on a uint64 holding a 32-bit value (products masked to 32 bits)."""
    m = _U64(0xFFFFFFFF)
    x = x ^ (x >> _U64(16))
    x = (x * _U64(0x7FEB352D)) & m
    x = x ^ (x >> _U64(15))
    x = (x * _U64(0x846CA68B)) & m
    return x ^ (x >> _U64(16))


@_jit()
def _sr_bits(key, index):
    """ref.sr_bits for one index."""
    m = _U64(0xFFFFFFFF)
    i = _U64(index)
    word = ((i & m) * _U64(0x9E3779B9) + (i >> _U64(32)) * _U64(0x85EBCA77)) & m
    return np.uint32(_mix32((word + (key >> _U64(32))) & m))


@_jit()
def _f32_of(u):
    return np.array([np.uint32(u)]).view(np.float32)[0]


@_jit()
def _bits_of(x):
    return np.array([_F32(x)]).view(np.uint32)[0]


@_jit()
def _bf16_decode(h):
    return _f32_of(np.uint32(h) << np.uint32(16))


@_jit()
def _bf16_round_sr(x, r):
    return np.uint16((_bits_of(x) + (r & np.uint32(0xFFFF))) >> np.uint32(16))


@_jit()
def _q8_value(code, emin, mb):
    return _f32_of(np.uint32(((code >> mb) + emin + 127) << 23) | np.uint32((code & ((1 << mb) - 1)) << (23 - mb)))


@_jit()
def _q8_encode(u, emin, mb, r, floor_up):
    umin = _q8_value(1, emin, mb)
    if not u > _F32(0.0):
        return 0
    if u < umin:
        if floor_up:
            return 1
        return 1 if _F32(r >> np.uint32(8)) * _F32(1.0 / 16777216.0) * umin < u else 0
    t = _bits_of(u) + (r & np.uint32((1 << (23 - mb)) - 1))
    e = np.int64(t >> np.uint32(23)) - 127
    f = np.int64(t >> np.uint32(23 - mb)) & ((1 << mb) - 1)
    return ((e - emin) << mb) | f


@_jit()
def _q8_decode_m(c):
    mag = c & 127
    u = _q8_value(mag, ref.Q8_M_EMIN, ref.Q8_M_MB) if mag else _F32(0.0)
    return -u if c & 128 else u


@_jit()
def _q8_decode_v(c):
    return _q8_value(c, ref.Q8_V_EMIN, ref.Q8_V_MB) if c else _F32(0.0)


@_jit(parallel=True)
def _adamw_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay, step, grad_scale,
                km, kv, offset):
    n = params.shape[0]
    b1, b2, bc1, bc2, lr32, lr_wd, eps32, gs = _adam_consts(lr, beta1, beta2, eps, weight_decay, decay,
                                                            step, grad_scale)
    for i in prange(n):
        g = grads[i] * gs
        mi = b1 * _bf16_decode(m[i]) + (_ONE - b1) * g
        vi = b2 * _bf16_decode(v[i]) + (_ONE - b2) * (g * g)
        m[i] = _bf16_round_sr(mi, _sr_bits(km, offset + i))
        v[i] = _bf16_round_sr(vi, _sr_bits(kv, offset + i))
        params[i] = _adam_param(params[i], mi, vi, lr32, lr_wd, bc1, bc2, eps32)


@_jit(parallel=True)
def _adamw_q8(pf, pw, bf16w, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
              weight_decay, step, grad_scale, km, kv, kw, offset):
    """Weights float32 pf (n,), or with bf16w bf16 bits pw (n,) decoded, updated and stored back
    rounded stochastically with the bits of key kw (the other array is unused)."""
    n = grads.shape[0]
    b1, b2, bc1, bc2, lr32, lr_wd, eps32, gs = _adam_consts(lr, beta1, beta2, eps, weight_decay, decay,
                                                            step, grad_scale)
    nblocks = (n + Q8_BLOCK - 1) // Q8_BLOCK
    for b in prange(nblocks):
        lo = b * Q8_BLOCK
        hi = min(lo + Q8_BLOCK, n)
        mb = np.empty(hi - lo, np.float32)
        vb = np.empty(hi - lo, np.float32)
        sm = m_absmax[b]
        sv = v_absmax[b]
        am = _F32(0.0)
        av = _F32(0.0)
        for i in range(lo, hi):
            g = grads[i] * gs
            mi = b1 * (_q8_decode_m(m[i]) * sm) + (_ONE - b1) * g
            vi = b2 * (_q8_decode_v(v[i]) * sv) + (_ONE - b2) * (g * g)
            mb[i - lo] = mi
            vb[i - lo] = vi
            am = max(am, abs(mi))
            av = max(av, vi)
            if bf16w:
                p = _adam_param(_bf16_decode(pw[i]), mi, vi, lr32, lr_wd, bc1, bc2, eps32)
                pw[i] = _bf16_round_sr(p, _sr_bits(kw, offset + i))
            else:
                pf[i] = _adam_param(pf[i], mi, vi, lr32, lr_wd, bc1, bc2, eps32)
        m_absmax[b] = am
        v_absmax[b] = av
        rm = _ONE / am if am > 0 else _F32(0.0)
        rv = _ONE / av if av > 0 else _F32(0.0)
        for i in range(lo, hi):
            um = min(abs(mb[i - lo]) * rm, _ONE)
            uv = min(vb[i - lo] * rv, _ONE)
            cm = _q8_encode(um, ref.Q8_M_EMIN, ref.Q8_M_MB, _sr_bits(km, offset + i), False)
            m[i] = np.uint8(cm | (128 if (mb[i - lo] < 0 and cm) else 0))
            v[i] = np.uint8(_q8_encode(uv, ref.Q8_V_EMIN, ref.Q8_V_MB, _sr_bits(kv, offset + i), True))


@_jit(parallel=True)
def _bf16_to_f32(out, h):
    for i in prange(h.shape[0]):
        out[i] = _bf16_decode(h[i])


@_jit(parallel=True)
def _f32_to_bf16_sr(out, x, k, offset):
    for i in prange(x.shape[0]):
        out[i] = _bf16_round_sr(x[i], _sr_bits(k, offset + i))


@_jit()
def _sum_in_order(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


# ---------------------------------------------------------------------------
# wrappers: the reference signatures; the boundary checks are kernels/checks.py,
# shared with the C backend


def _rows(a):
    """A checked (C-contiguous) array as (rows, last dim), sharing memory."""
    return a.reshape(-1, a.shape[-1]) if a.ndim != 2 else a


def embedding_forward(out, tokens, wte):
    """out (N, C) = wte[tokens]; tokens (N,) int32, wte (V, C)."""
    checks.embedding_forward(out, tokens, wte)
    _embedding_forward(out, tokens, wte)


def embedding_backward(dwte, dout, tokens):
    """dwte (V, C) += scatter of dout (N, C) rows at tokens (N,). Adds; deterministic."""
    checks.embedding_backward(dwte, dout, tokens)
    _embedding_backward(dwte, dout, tokens)


def layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    """out (N, C), mean (N,), rstd (N,) <- inp (N, C), weight (C,), bias (C,)."""
    checks.layernorm_forward(out, mean, rstd, inp, weight, bias, eps)
    _layernorm_forward(out, mean, rstd, inp, weight, bias, float(eps))


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    """dinp (N, C), dweight (C,), dbias (C,) <- dout (N, C), saved inp/mean/rstd."""
    checks.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd)
    _layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, False)


def layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd):
    """dresid (N, C) += dinp; dweight (C,), dbias (C,) written; as layernorm_backward."""
    checks.layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd)
    _layernorm_backward(dresid, dweight, dbias, dout, inp, weight, mean, rstd, True)


def bias_forward(out, bias):
    """out (N, O) += bias (O,)."""
    checks.bias_forward(out, bias)
    _bias_forward(_rows(out), bias)


def bias_backward(dbias, dout):
    """dbias (O,) = column sums of dout (N, O), summed over fixed row blocks."""
    checks.bias_backward(dbias, dout)
    _bias_backward(dbias, _rows(dout))


def residual_forward(out, resid, branch, bias):
    """out (N, C) = resid + branch + bias; out may alias branch."""
    checks.residual_forward(out, resid, branch, bias)
    _residual_forward(out, resid, branch, bias)


def residual_backward(dresid, dbranch):
    """dresid (N, C) += dbranch (N, C)."""
    checks.residual_backward(dresid, dbranch)
    _residual_backward(_rows(dresid), _rows(dbranch))


def rope_forward(out, inp, cos, sin):
    """out (B, T, NH, hs) = rotate(inp); cos/sin (T, hs/2). out may alias inp."""
    checks.rope_forward(out, inp, cos, sin)
    _rope(out, inp, cos, sin, _ONE)


def rope_backward(dinp, dout, cos, sin):
    """dinp (B, T, NH, hs) = rotation of dout by -theta. dinp may alias dout."""
    checks.rope_backward(dinp, dout, cos, sin)
    _rope(dinp, dout, cos, sin, _F32(-1.0))


def _flat4(a):
    """(flat, strides): a checked (B, T, NH, hs) float32 view as a 1-D contiguous view of the
    memory it spans, and its strides in elements."""
    st = tuple(s // 4 for s in a.strides)
    span = 1 + sum((n - 1) * x for n, x in zip(a.shape, st))
    return np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(4,)), st


def attention_forward(out, lse, q, k, v):
    """out (B, T, NH, hs), lse (B, NH, T) <- q, k, v (B, T, NH, hs), causal, scale 1/sqrt(hs)."""
    (B, T, NH, hs), _ = checks.attention_forward(out, lse, q, k, v)
    if q.size == 0:
        return
    (o, ost), (qf, qst), (kf, kst), (vf, vst) = map(_flat4, (out, q, k, v))
    _attention_forward(o, ost, lse, qf, qst, kf, kst, vf, vst, B, T, NH, hs)


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse):
    """dq, dk, dv (B, T, NH, hs) <- dout and the forward's q, k, v, out, lse (B, NH, T)."""
    (B, T, NH, hs), _ = checks.attention_backward(dq, dk, dv, dout, q, k, v, out, lse)
    if q.size == 0:
        return
    (dqf, dqst), (dkf, dkst), (dvf, dvst), (df, dst), (qf, qst), (kf, kst), (vf, vst), (of, ost) = map(
        _flat4, (dq, dk, dv, dout, q, k, v, out))
    _attention_backward(dqf, dqst, dkf, dkst, dvf, dvst, df, dst, qf, qst, kf, kst, vf, vst,
                        of, ost, lse, B, T, NH, hs)


def gelu_forward(out, inp):
    """out (N, F) = 0.5 x (1 + tanh(c (x + a x^3)))."""
    checks.gelu_forward(out, inp)
    if inp.ndim:
        _gelu_forward(_rows(out), _rows(inp))
    else:
        _gelu_forward(out.reshape(1, 1), inp.reshape(1, 1))


def gelu_backward(dinp, dout, inp):
    """dinp (N, F) = dout * gelu'(inp)."""
    checks.gelu_backward(dinp, dout, inp)
    if inp.ndim:
        _gelu_backward(_rows(dinp), _rows(dout), _rows(inp))
    else:
        _gelu_backward(dinp.reshape(1, 1), dout.reshape(1, 1), inp.reshape(1, 1))


def bias_gelu_forward(out, pre, bias):
    """pre (N, F) += bias (F,) in place; out (N, F) = gelu(pre). out must not alias pre."""
    checks.bias_gelu_forward(out, pre, bias)
    _bias_gelu_forward(_rows(out), _rows(pre), bias)


def gelu_bias_backward(dinp, dbias, dout, pre):
    """dinp (N, F) = dout * gelu'(pre); dbias (F,) = column sums of dinp (fixed row blocks)."""
    checks.gelu_bias_backward(dinp, dbias, dout, pre)
    _gelu_bias_backward(_rows(dinp), dbias, _rows(dout), _rows(pre))


def crossentropy_forward_backward(losses, dlogits, logits, targets, dscale):
    """losses (R,), dlogits (R, V) <- logits (R, V), targets (R,) int32 (-1: ignored).

    dlogits = (softmax - onehot) * dscale; dlogits may alias logits.
    """
    checks.crossentropy_forward_backward(losses, dlogits, logits, targets, dscale)
    _crossentropy(losses, dlogits, logits, targets, float(dscale))


def grad_norm_sq(grads):
    """Sum of squares of grads (P,) in float64: fixed chunks, then the chunk sums in order."""
    checks.grad_norm_sq(grads)
    part = np.empty((grads.shape[0] + NORM_CHUNK - 1) // NORM_CHUNK, np.float64)
    _sumsq_chunks(part, grads)
    return float(_sum_in_order(part))


def adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
               step, grad_scale):
    """One fused AdamW update of one tensor (n,), in place (operation order of the C kernel)."""
    checks.adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                      step, grad_scale)
    _adamw(params, grads, m, v, bool(decay), float(lr), float(beta1), float(beta2), float(eps),
           float(weight_decay), int(step), float(grad_scale))


def adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                    step, grad_scale, seed, offset):
    """As adamw_step with bf16 moments (uint16), stored with stochastic rounding."""
    checks.adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                           step, grad_scale, seed, offset)
    _adamw_bf16(params, grads, m, v, bool(decay), float(lr), float(beta1), float(beta2), float(eps),
                float(weight_decay), int(step), float(grad_scale), np.uint64(ref.sr_key(seed, step, 0)),
                np.uint64(ref.sr_key(seed, step, 1)), int(offset))


_NO_F32, _NO_BF16 = np.zeros(0, np.float32), np.zeros(0, np.uint16)  # _adamw_q8's weights not in use


def adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                  weight_decay, step, grad_scale, seed, offset):
    """As adamw_step with 8-bit blockwise moments (csrc/adamw.c's codes)."""
    checks.adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                         weight_decay, step, grad_scale, seed, offset)
    _adamw_q8(params, _NO_BF16, False, grads, m, v, m_absmax, v_absmax, bool(decay), float(lr),
              float(beta1), float(beta2), float(eps), float(weight_decay), int(step), float(grad_scale),
              np.uint64(ref.sr_key(seed, step, 0)), np.uint64(ref.sr_key(seed, step, 1)), np.uint64(0),
              int(offset))


def adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                        weight_decay, step, grad_scale, seed, offset):
    """As adamw_step_q8 with bf16 weights (uint16 bits), decoded, updated and stored back with
    stochastic rounding (stream 2) in the same pass."""
    checks.adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                               weight_decay, step, grad_scale, seed, offset)
    _adamw_q8(_NO_F32, params, True, grads, m, v, m_absmax, v_absmax, bool(decay), float(lr),
              float(beta1), float(beta2), float(eps), float(weight_decay), int(step), float(grad_scale),
              np.uint64(ref.sr_key(seed, step, 0)), np.uint64(ref.sr_key(seed, step, 1)),
              np.uint64(ref.sr_key(seed, step, ref.SR_STREAM_WEIGHTS)), int(offset))


def bf16_to_f32(out, h):
    """out (n,) float32 = the values of the bf16 bits h (n,)."""
    checks.bf16_to_f32(out, h)
    _bf16_to_f32(out, h)


def f32_to_bf16_sr(out, x, seed, step, offset):
    """out (n,) bf16 bits = x (n,) rounded stochastically (stream 2, as csrc/adamw.c)."""
    checks.f32_to_bf16_sr(out, x, seed, step, offset)
    _f32_to_bf16_sr(out, x, np.uint64(ref.sr_key(seed, step, ref.SR_STREAM_WEIGHTS)), int(offset))

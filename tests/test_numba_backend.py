"""The Numba backend against the float64 oracle, on what is specific to it.

Strided views (as the model passes q/k/v), edge shapes (T=1, hs=80, C=37,
T across key blocks), NaN propagation, bitwise determinism across thread
counts, the whole nano model and the golden training run, argument checks,
and the compile cache when the package directory is read-only.

Tolerance: max|numba - oracle| / max|oracle| (conftest.rel_err) per output,
from TOL. Inputs are drawn in float32 and cast to float64 for the oracle,
so both sides see the same numbers.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from codette_np import Model, ModelConfig  # noqa: E402
from codette_np import backend as be  # noqa: E402
from codette_np.kernels import numba_backend as nb  # noqa: E402
from codette_np.kernels import ref  # noqa: E402
from codette_np.model import _split_qkv  # noqa: E402
from conftest import rel_err  # noqa: E402
from codette_np.kernels.tolerances import GOLDEN_TOL, KERNEL_TOL, MODEL_TOL, tolerance  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# max|numba - float64 oracle| / max|oracle| for every output of each kernel: the one table
TOL = {k: tolerance(k, "numba") for k in KERNEL_TOL}

ROW_SHAPES = [(1, 37), (5, 37), (33, 80), (70, 513)]  # (N, C): odd widths, N across row blocks
ATT_SHAPES = [(1, 1, 1, 80), (2, 1, 3, 80), (1, 65, 2, 80), (2, 130, 1, 16), (1, 37, 3, 64)]  # (B, T, NH, hs)
SENTINEL = np.float32(-31337.25)


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def f64(*arrays):
    return [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a
            for a in arrays]


def check(name, got, want, joint=False):
    """Each output within TOL[name] of the oracle, relative to its own max, or with joint=True to
    the largest of all outputs (for an output that is zero in exact arithmetic, such as dq at T=1)."""
    scale = max(float(np.max(np.abs(w))) for w in want) if joint else None
    for i, (g, w) in enumerate(zip(got, want)):
        if joint:
            err = float(np.max(np.abs(np.asarray(g, np.float64) - w))) / max(scale, 1e-300)
        else:
            err = rel_err(g, w)
        assert err <= TOL[name], f"{name} output {i}: relative error {err:.2e} > {TOL[name]:.0e}"


GUARD = 67  # sentinel elements before and after a guarded array (odd: misaligns it)


def guarded(shape, rng=None):
    """A C-contiguous float32 array of `shape` inside a flat sentinel buffer (GUARD on each side)."""
    shape = tuple(shape)
    n = int(np.prod(shape))
    buf = np.full(n + 2 * GUARD, SENTINEL, np.float32)
    view = buf[GUARD:GUARD + n].reshape(shape)
    if rng is not None:
        view[:] = f32(rng, *shape)
    return buf, view


def untouched(buf, _n=None):
    """The sentinels around a guarded array are intact."""
    return np.all(buf[:GUARD] == SENTINEL) and np.all(buf[-GUARD:] == SENTINEL)


# ---------------------------------------------------------------------------
# the module


def test_backend_provides_every_kernel():
    assert nb.NAME == "numba"
    b = be.get("numba")
    assert b.name == "numba"
    assert all(src == "numba" for src in b.sources.values()), b.sources


# ---------------------------------------------------------------------------
# row kernels on strided (non-contiguous) inputs and outputs, edge widths


@pytest.mark.parametrize("N,C", ROW_SHAPES)
def test_row_kernels_guarded(rng, N, C):
    """Every row kernel inside sentinel buffers: the oracle's numbers, nothing written outside."""
    x = f32(rng, N, C, scale=2.0) + np.float32(0.5)
    w, b = f32(rng, C), f32(rng, C)
    xb, xs = guarded((N, C))
    xs[:] = x
    # layernorm forward: every input and output guarded
    ob, out = guarded((N, C))
    mb, mean = guarded((1, N))
    rb, rstd = guarded((1, N))
    nb.layernorm_forward(out, mean[0], rstd[0], xs, w, b, 1e-5)
    o64, m64, r64 = np.zeros((N, C)), np.zeros(N), np.zeros(N)
    ref.layernorm_forward(o64, m64, r64, *f64(x, w, b), 1e-5)
    check("layernorm_forward", (out, mean[0], rstd[0]), (o64, m64, r64))
    assert untouched(ob, C) and untouched(mb, N) and untouched(rb, N)
    # layernorm backward from the saved float32 mean/rstd; inputs and outputs guarded
    dbuf, dout = guarded((N, C), rng)
    dib, dinp = guarded((N, C))
    drb, dr = guarded((N, C))
    dwb, dw = guarded((1, C))
    dbb, db = guarded((1, C))
    mean32, rstd32 = mean[0].copy(), rstd[0].copy()
    nb.layernorm_backward(dinp, dw[0], db[0], dout, xs, w, mean32, rstd32)
    want = [np.zeros((N, C)), np.zeros(C), np.zeros(C)]
    ref.layernorm_backward(*want, *f64(dout, x, w, mean32, rstd32))
    check("layernorm_backward", (dinp, dw[0], db[0]), want)
    assert untouched(dib, C) and untouched(dwb, C) and untouched(dbb, C)
    # the same on contiguous arrays gives bitwise the same numbers
    c_out = [np.zeros((N, C), np.float32), np.zeros(C, np.float32), np.zeros(C, np.float32)]
    nb.layernorm_backward(*c_out, np.ascontiguousarray(dout), x, w, mean32, rstd32)
    assert np.array_equal(c_out[0], dinp) and np.array_equal(c_out[1], dw[0])
    # bias, residual, gelu
    bb, y = guarded((N, C), rng)
    y0 = y.copy()
    nb.bias_forward(y, b)
    check("bias_forward", (y,), (y0.astype(np.float64) + b,))
    assert untouched(bb, C)
    nb.bias_backward(db[0], dout)
    check("bias_backward", (db[0],), (dout.astype(np.float64).sum(axis=0),))
    rbuf, r = guarded((N, C))
    nb.residual_forward(r, xs, dout, b)
    want = np.zeros((N, C))
    ref.residual_forward(want, *f64(x, dout, b))
    check("residual_forward", (r,), (want,))
    assert untouched(rbuf, C)
    r0 = r.copy()
    nb.residual_backward(r, dout)
    check("residual_backward", (r,), (r0.astype(np.float64) + dout,))
    gb, g = guarded((N, C))
    nb.gelu_forward(g, xs)
    want = np.zeros((N, C))
    ref.gelu_forward(want, x.astype(np.float64))
    check("gelu_forward", (g,), (want,))
    nb.gelu_backward(g, dout, xs)
    ref.gelu_backward(want, *f64(dout, x))
    check("gelu_backward", (g,), (want,))
    assert untouched(gb, C)
    # the fused kernels: the oracle's numbers, and bitwise the unfused pairs
    pb, pre = guarded((N, C))
    pre[:] = x
    nb.bias_gelu_forward(g, pre, b)
    want_pre, want = x.astype(np.float64), np.zeros((N, C))
    ref.bias_gelu_forward(want, want_pre, b.astype(np.float64))
    check("bias_gelu_forward", (pre, g), (want_pre, want))
    assert untouched(pb, C) and untouched(gb, C)
    pre2, g2 = x.copy(), np.zeros((N, C), np.float32)
    nb.bias_forward(pre2, b)
    nb.gelu_forward(g2, pre2)
    assert np.array_equal(pre, pre2) and np.array_equal(g, g2)
    nb.gelu_bias_backward(g, db[0], dout, pre)
    want, want_db = np.zeros((N, C)), np.zeros(C)
    ref.gelu_bias_backward(want, want_db, *f64(dout, pre))
    check("gelu_bias_backward", (g, db[0]), (want, want_db))
    assert untouched(gb, C) and untouched(dbb, C)
    nb.gelu_backward(g2, dout, pre2)
    db2 = np.zeros(C, np.float32)
    nb.bias_backward(db2, g2)
    assert np.array_equal(g, g2) and np.array_equal(db[0], db2)
    # layernorm_backward_add: bitwise layernorm_backward then residual_backward
    r0 = f32(rng, N, C)
    dr[:] = r0
    nb.layernorm_backward_add(dr, dw[0], db[0], dout, xs, w, mean32, rstd32)
    want = [r0.astype(np.float64), np.zeros(C), np.zeros(C)]
    ref.layernorm_backward_add(*want, *f64(dout, x, w, mean32, rstd32))
    check("layernorm_backward_add", (dr, dw[0], db[0]), want)
    assert untouched(drb, C) and untouched(dwb, C) and untouched(dbb, C)
    r2 = r0.copy()
    nb.residual_backward(r2, c_out[0])
    assert np.array_equal(dr, r2) and np.array_equal(dw[0], c_out[1]) and np.array_equal(db[0], c_out[2])


def test_elementwise_kernels_accept_nd_contiguous(rng):
    x = f32(rng, 2, 3, 37)
    out = np.zeros_like(x)
    nb.gelu_forward(out, x)
    want = np.zeros(x.shape)
    ref.gelu_forward(want, x.astype(np.float64))
    check("gelu_forward", (out,), (want,))
    with pytest.raises(ValueError, match="C-contiguous"):
        nb.gelu_forward(np.zeros((2, 3, 74), np.float32)[..., ::2], x)


@pytest.mark.parametrize("N,V,C", [(1, 1, 37), (9, 4, 37), (300, 50, 80)])
def test_embedding_guarded_and_exact(rng, N, V, C):
    tokens = rng.integers(0, V, N).astype(np.int32)  # repeats
    wte = f32(rng, V, C)
    ob, out = guarded((N, C))
    nb.embedding_forward(out, tokens, wte)
    assert np.array_equal(out, wte[tokens]) and untouched(ob, C)
    dout = guarded((N, C), rng)[1]
    db, dwte = guarded((V, C), rng)
    want32 = dwte.copy()
    np.add.at(want32, tokens, dout)  # the float32 reference: rows added in row order
    want64 = dwte.astype(np.float64)
    ref.embedding_backward(want64, dout.astype(np.float64), tokens)
    nb.embedding_backward(dwte, dout, tokens)
    check("embedding_backward", (dwte,), (want64,))
    assert np.array_equal(dwte, want32), "not the row-order sum of np.add.at"
    assert untouched(db, C)


# ---------------------------------------------------------------------------
# RoPE and attention on the model's strided q/k/v views


def _qkv(rng, B, T, NH, hs):
    qkv = f32(rng, B * T, 3 * NH * hs)
    return qkv, _split_qkv(qkv, B, T, NH, hs)


@pytest.mark.parametrize("B,T,NH,hs", [(1, 1, 1, 80), (2, 5, 3, 80), (2, 17, 4, 6)])
def test_rope_strided_in_place(rng, B, T, NH, hs):
    cos, sin = ref.rope_tables(T, hs, 10000.0, np.float32)
    qkv, (q, k, v) = _qkv(rng, B, T, NH, hs)
    before = qkv.copy()
    want = np.zeros(q.shape)
    ref.rope_forward(want, *f64(q, cos, sin))
    nb.rope_forward(q, q, cos, sin)  # in place, as the model does
    check("rope_forward", (q,), (want,))
    C = NH * hs
    assert np.array_equal(qkv[:, C:], before[:, C:]), "rope wrote outside q"
    ref.rope_backward(want, *f64(k, cos, sin))
    nb.rope_backward(k, k, cos, sin)
    check("rope_backward", (k,), (want,))


@pytest.mark.parametrize("B,T,NH,hs", ATT_SHAPES)
def test_attention_strided(rng, B, T, NH, hs):
    _, (q, k, v) = _qkv(rng, B, T, NH, hs)
    out = np.full((B, T, NH, hs), SENTINEL, np.float32)
    lse = np.full((B, NH, T), SENTINEL, np.float32)
    nb.attention_forward(out, lse, q, k, v)
    o64, l64 = np.zeros(out.shape), np.zeros(lse.shape)
    ref.attention_forward(o64, l64, *f64(q, k, v))
    check("attention_forward", (out, lse), (o64, l64))
    # backward: dq, dk, dv strided views of one (N, 3C) buffer, as in the model
    dqkv = np.full((B * T, 3 * NH * hs), SENTINEL, np.float32)
    dq, dk, dv = _split_qkv(dqkv, B, T, NH, hs)
    dout = f32(rng, B, T, NH, hs)
    o32, l32 = o64.astype(np.float32), l64.astype(np.float32)
    nb.attention_backward(dq, dk, dv, dout, q, k, v, o32, l32)
    want = [np.zeros(q.shape) for _ in range(3)]
    ref.attention_backward(*want, *f64(dout, q, k, v, o32, l32))
    check("attention_backward", (dq, dk, dv), want, joint=T == 1)
    assert not np.any(dqkv == SENTINEL), "some of dq/dk/dv was not written"


def test_attention_contiguous_equals_strided(rng):
    B, T, NH, hs = 2, 70, 2, 80
    _, (q, k, v) = _qkv(rng, B, T, NH, hs)
    outs = []
    for args in ((q, k, v), tuple(np.ascontiguousarray(a) for a in (q, k, v))):
        out, lse = np.zeros((B, T, NH, hs), np.float32), np.zeros((B, NH, T), np.float32)
        nb.attention_forward(out, lse, *args)
        outs.append((out, lse))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])


def test_attention_unusual_strides_are_refused(rng):
    """Every-other-element heads (last stride 2) and time-reversed views (negative strides) are
    refused, as by the C backend (the shared contract of kernels/checks.py)."""
    B, T, NH, hs = 2, 9, 2, 8
    q = f32(rng, B, T, NH, 2 * hs)[..., ::2]  # last-axis stride 2
    k = v = f32(rng, B, T, NH, hs)
    out, lse = np.zeros((B, T, NH, hs), np.float32), np.zeros((B, NH, T), np.float32)
    with pytest.raises(ValueError, match=r"the last two dims \(NH, hs\) must be contiguous"):
        nb.attention_forward(out, lse, q, k, v)
    with pytest.raises(ValueError, match="must be non-negative multiples"):
        nb.attention_forward(out, lse, k[:, ::-1], k, v)


# ---------------------------------------------------------------------------
# cross-entropy, optimizer


@pytest.mark.parametrize("R,V", [(1, 1), (3, 37), (9, 16385)])
def test_crossentropy_aliased(rng, R, V):
    logits = f32(rng, R, V, scale=3.0)
    targets = rng.integers(0, V, R).astype(np.int32)
    targets[R // 2] = -1
    losses = np.zeros(R, np.float32)
    buf = logits.copy()
    nb.crossentropy_forward_backward(losses, buf, buf, targets, 0.25)  # dlogits aliases logits
    l64, d64 = np.zeros(R), np.zeros((R, V))
    ref.crossentropy_forward_backward(l64, d64, logits.astype(np.float64), targets, 0.25)
    check("crossentropy_forward_backward", (losses, buf), (l64, d64))
    assert losses[R // 2] == 0 and np.all(buf[R // 2] == 0)


def test_crossentropy_extreme_logits(rng):
    """Very negative logits underflow to exactly zero probability, as in float64."""
    logits = f32(rng, 2, 300)
    logits[0, :100] = -1e4
    logits[1, 5] = 80.0
    targets = np.array([0, 5], np.int32)
    losses, d = np.zeros(2, np.float32), np.zeros_like(logits)
    nb.crossentropy_forward_backward(losses, d, logits, targets, 1.0)
    l64, d64 = np.zeros(2), np.zeros((2, 300))
    ref.crossentropy_forward_backward(l64, d64, logits.astype(np.float64), targets, 1.0)
    check("crossentropy_forward_backward", (losses, d), (l64, d64))
    assert np.all(d[0, 1:100] == 0)


def test_optimizer_kernels(rng):
    P = 70001
    params, grads = f32(rng, P), f32(rng, P)
    m, v = f32(rng, P, scale=0.1), np.abs(f32(rng, P, scale=0.1))
    assert abs(nb.grad_norm_sq(grads) - ref.grad_norm_sq(grads)) <= TOL["grad_norm_sq"] * ref.grad_norm_sq(grads)
    want = f64(params, grads, m, v)
    ref.adamw_step(want[0], want[1], want[2], want[3], True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 0.6)
    nb.adamw_step(params, grads, m, v, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 0.6)
    check("adamw_step", (params, m, v), (want[0], want[2], want[3]))
    assert np.isnan(nb.grad_norm_sq(np.array([1.0, np.nan], np.float32)))
    assert nb.grad_norm_sq(np.zeros(0, np.float32)) == 0.0


# ---------------------------------------------------------------------------
# NaN propagation: NaN where the oracle has NaN, finite elsewhere


def _nan_cases(rng):
    N, C, V = 6, 37, 29
    x = f32(rng, N, C)
    x[2, 5] = np.nan
    w, b = f32(rng, C), f32(rng, C)
    yield "layernorm_forward", [np.zeros((N, C)), np.zeros(N), np.zeros(N), x, w, b, 1e-5], (0, 1, 2)
    mean, rstd = np.zeros(N, np.float32), np.ones(N, np.float32)
    yield "layernorm_backward", [np.zeros((N, C)), np.zeros(C), np.zeros(C), x, f32(rng, N, C), w, mean, rstd], (0, 1, 2)
    yield "bias_backward", [np.zeros(C), x], (0,)
    yield "gelu_forward", [np.zeros((N, C)), x], (0,)
    yield "gelu_backward", [np.zeros((N, C)), f32(rng, N, C), x], (0,)
    yield "bias_gelu_forward", [np.zeros((N, C)), x.copy(), b], (0, 1)
    yield "gelu_bias_backward", [np.zeros((N, C)), np.zeros(C), f32(rng, N, C), x], (0, 1)
    yield "layernorm_backward_add", [f32(rng, N, C), np.zeros(C), np.zeros(C), x, f32(rng, N, C), w, mean,
                                     rstd], (0, 1, 2)
    yield "residual_forward", [np.zeros((N, C)), x, f32(rng, N, C), b], (0,)
    logits = f32(rng, N, V)
    logits[1, 3] = np.nan  # a counted row: its loss and gradient row become NaN
    logits[4, 0] = np.nan  # an ignored row: stays zero
    targets = np.array([1, 2, 3, 4, -1, 5], np.int32)
    yield "crossentropy_forward_backward", [np.zeros(N), np.zeros((N, V)), logits, targets, 0.5], (0, 1)
    B, T, NH, hs = 1, 9, 2, 8
    q, k, v = f32(rng, B, T, NH, hs), f32(rng, B, T, NH, hs), f32(rng, B, T, NH, hs)
    k[0, 4, 1, 2] = np.nan  # head 1: rows 4.. see the NaN key, rows 0..3 do not
    yield "attention_forward", [np.zeros((B, T, NH, hs)), np.zeros((B, NH, T)), q, k, v], (0, 1)
    g = f32(rng, 1000)
    g[17] = np.nan
    yield "adamw_step", [f32(rng, 1000), g, np.zeros(1000, np.float32), np.zeros(1000, np.float32),
                         True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0], (0, 2, 3)


NAN_KERNELS = ["layernorm_forward", "layernorm_backward", "layernorm_backward_add", "bias_backward",
               "gelu_forward", "gelu_backward", "bias_gelu_forward", "gelu_bias_backward",
               "residual_forward", "crossentropy_forward_backward", "attention_forward", "adamw_step"]


@pytest.mark.parametrize("name", NAN_KERNELS)
def test_nan_propagates_like_the_oracle(name):
    args, outs = {n: (a, o) for n, a, o in _nan_cases(np.random.default_rng(5))}[name]
    a32 = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else
           (a.copy() if isinstance(a, np.ndarray) else a) for a in args]
    a64 = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in a32]
    with np.errstate(invalid="ignore"):
        getattr(ref, name)(*a64)
    getattr(nb, name)(*a32)
    for i in outs:
        assert np.array_equal(np.isnan(a32[i]), np.isnan(a64[i])), f"{name} output {i}: NaN pattern differs"
        assert np.any(np.isnan(a32[i])), f"{name} output {i}: the NaN was lost"
        fin = ~np.isnan(a64[i])
        assert rel_err(a32[i][fin], a64[i][fin]) <= max(TOL[name], 1e-6), name


# ---------------------------------------------------------------------------
# determinism: bitwise the same for any thread count


def _det_outputs(seed=7):
    """Outputs of the kernels whose work is split across threads, on shapes with many blocks."""
    rng = np.random.default_rng(seed)
    N, C, V = 203, 96, 40
    x, dout, w, b = f32(rng, N, C), f32(rng, N, C), f32(rng, C), f32(rng, C)
    res = {}
    out, mean, rstd = np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)
    nb.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
    res["ln_out"], res["ln_rstd"] = out, rstd
    dx, dw, db = np.zeros((N, C), np.float32), np.zeros(C, np.float32), np.zeros(C, np.float32)
    nb.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)
    res["ln_dx"], res["ln_dw"], res["ln_db"] = dx, dw, db
    db2 = np.zeros(C, np.float32)
    nb.bias_backward(db2, dout)
    res["bias_db"] = db2
    dr, dw2, db3 = x.copy(), np.zeros(C, np.float32), np.zeros(C, np.float32)
    nb.layernorm_backward_add(dr, dw2, db3, dout, x, w, mean, rstd)
    res["lnadd_dr"], res["lnadd_dw"], res["lnadd_db"] = dr, dw2, db3
    pre, ge = x.copy(), np.zeros((N, C), np.float32)
    nb.bias_gelu_forward(ge, pre, b)
    res["bg_pre"], res["bg_out"] = pre, ge
    dg, dgb = np.zeros((N, C), np.float32), np.zeros(C, np.float32)
    nb.gelu_bias_backward(dg, dgb, dout, pre)
    res["gb_dinp"], res["gb_dbias"] = dg, dgb
    tokens = rng.integers(0, V, N).astype(np.int32)
    dwte = np.zeros((V, C), np.float32)
    nb.embedding_backward(dwte, dout, tokens)
    res["emb_dwte"] = dwte
    B, T, NH, hs = 2, 101, 3, 16
    _, (q, k, v) = _qkv(rng, B, T, NH, hs)
    o, lse = np.zeros((B, T, NH, hs), np.float32), np.zeros((B, NH, T), np.float32)
    nb.attention_forward(o, lse, q, k, v)
    dq, dk, dv = (np.zeros((B, T, NH, hs), np.float32) for _ in range(3))
    nb.attention_backward(dq, dk, dv, f32(rng, B, T, NH, hs), q, k, v, o, lse)
    res.update(att_o=o, att_lse=lse, att_dq=dq, att_dk=dk, att_dv=dv)
    logits = f32(rng, 50, 3001, scale=2.0)
    losses = np.zeros(50, np.float32)
    nb.crossentropy_forward_backward(losses, logits, logits, rng.integers(0, 3001, 50).astype(np.int32), 0.02)
    res["ce_losses"], res["ce_d"] = losses, logits
    res["norm"] = np.array([nb.grad_norm_sq(f32(rng, 100_003))])
    return res


def _digest(res):
    return {k: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for k, a in sorted(res.items())}


def test_bitwise_deterministic_across_thread_counts():
    top = numba.config.NUMBA_NUM_THREADS
    try:
        numba.set_num_threads(1)
        one = _digest(_det_outputs())
        numba.set_num_threads(top)
        many = _digest(_det_outputs())
        again = _digest(_det_outputs())
    finally:
        numba.set_num_threads(top)
    assert many == again, "two runs with the same thread count differ"
    assert many == one, f"1 vs {top} threads differ: " + str([k for k in one if one[k] != many[k]])
    # an odd thread count (a different static partition), in a fresh process
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_numba_backend as t
        print(json.dumps(t._digest(t._det_outputs())))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       cwd=REPO, env=dict(os.environ, NUMBA_NUM_THREADS="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    three = json.loads(r.stdout.strip().splitlines()[-1])
    assert three == one, "1 vs 3 threads differ: " + str([k for k in one if one[k] != three[k]])


# ---------------------------------------------------------------------------
# the whole model


def test_nano_model_matches_float64_oracle(rng):
    cfg = ModelConfig.preset("nano")
    m32 = Model(cfg, seed=0, backend="numba")
    m64 = Model(cfg, seed=0, dtype=np.float64)
    assert m32.backend_name == "numba"
    tokens = rng.integers(0, cfg.vocab_size, (2, 33)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (2, 33)).astype(np.int32)
    targets[0, :3] = -1
    l32 = m32.forward_backward(tokens, targets)
    l64 = m64.forward_backward(tokens, targets)
    assert abs(l32 - l64) / l64 < MODEL_TOL
    g32, g64 = dict(m32.named_grads()), dict(m64.named_grads())
    for name in g64:
        assert rel_err(g32[name], g64[name]) < MODEL_TOL, name
    assert rel_err(m32.forward(tokens), m64.forward(tokens)) < MODEL_TOL


def test_golden_losses_numba():
    from test_model import GOLDEN, golden_run

    expect = json.loads(GOLDEN.read_text())["losses"]
    got = golden_run(backend="numba")
    for i, (g, e) in enumerate(zip(got, expect)):
        assert abs(g - e) / e < GOLDEN_TOL, f"step {i}: {g} vs recorded {e}"


# ---------------------------------------------------------------------------
# argument checks at the boundary


def test_wrappers_reject_bad_arguments():
    x = np.zeros((4, 16), np.float32)
    with pytest.raises(TypeError, match="float32"):
        nb.gelu_forward(np.zeros((4, 16)), x)
    with pytest.raises(TypeError, match="float32"):
        nb.layernorm_forward(x, np.zeros(4, np.float32), np.zeros(4, np.float32), x.astype(np.float64),
                             np.ones(16, np.float32), np.zeros(16, np.float32), 1e-5)
    with pytest.raises(ValueError, match="shape"):
        nb.residual_backward(x, np.zeros((4, 15), np.float32))
    with pytest.raises(TypeError, match="int32"):
        nb.embedding_forward(x, np.zeros(4, np.int64), np.zeros((3, 16), np.float32))
    with pytest.raises(IndexError, match="outside"):
        nb.embedding_forward(x, np.array([0, 1, 2, 3], np.int32), np.zeros((3, 16), np.float32))
    with pytest.raises(IndexError, match="outside"):
        nb.crossentropy_forward_backward(np.zeros(4, np.float32), x, x, np.array([0, -2, 1, 1], np.int32), 1.0)
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros((4, 16), np.float32)
        ro.flags.writeable = False
        nb.gelu_forward(ro, x)
    with pytest.raises(ValueError, match="overlaps"):  # pre must keep the pre-activation
        nb.bias_gelu_forward(x, x, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="length"):
        nb.bias_gelu_forward(x.copy(), x, np.zeros(15, np.float32))  # pre (4, 16) must end in bias's length
    with pytest.raises(ValueError, match="shape"):
        nb.gelu_bias_backward(x.copy(), np.zeros(15, np.float32), x, x)
    with pytest.raises(TypeError, match="float32"):
        nb.layernorm_backward_add(np.zeros((4, 16)), np.zeros(16, np.float32), np.zeros(16, np.float32), x, x,
                                  np.ones(16, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32))
    q = np.zeros((1, 4, 2, 8), np.float32)
    with pytest.raises(ValueError, match="lse"):
        nb.attention_forward(q.copy(), np.zeros((1, 4, 2), np.float32), q, q, q)


# ---------------------------------------------------------------------------
# compile cache when the package directory is read-only

_CACHE_SCRIPT = """
import numpy as np
from codette_np.kernels import numba_backend as nb
a, b = np.ones((3, 5), np.float32), np.ones((3, 5), np.float32)
nb.residual_backward(a, b)
assert np.all(a == 2)
print("ok", nb.__file__)
"""


def _readonly_prefix():
    """How to run a child that cannot write into a read-only directory (root ignores modes)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only for the child")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _cache_files(root):
    return sorted(p for p in Path(root).rglob("*") if p.suffix in (".nbi", ".nbc"))


@pytest.mark.slow
def test_compile_cache_with_read_only_package(tmp_path):
    """cache=True needs a writable cache directory: Numba falls back to NUMBA_CACHE_DIR, else the
    user cache dir, else the kernels are compiled without a cache. The package stays unwritten."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "codette_np", site / "codette_np",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    for d, _, _ in os.walk(site):
        os.chmod(d, 0o555)
    home = tmp_path / "home"
    home.mkdir()
    prefix = _readonly_prefix()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1")

    def run(extra_env):
        r = subprocess.run(prefix + [sys.executable, "-c", _CACHE_SCRIPT], capture_output=True, text=True,
                           cwd=tmp_path, env=dict(env, **extra_env), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert str(site) in r.stdout  # the read-only copy was imported, not the repo
        return r

    try:
        # 1) no NUMBA_CACHE_DIR: the user cache directory under HOME
        run({})
        assert _cache_files(home / ".cache" / "numba"), "no cache files in ~/.cache/numba"
        # 2) NUMBA_CACHE_DIR wins
        cdir = tmp_path / "numba_cache"
        run({"NUMBA_CACHE_DIR": str(cdir)})
        assert _cache_files(cdir), "no cache files in NUMBA_CACHE_DIR"
        # 3) nothing writable: still runs, without a cache
        home2 = tmp_path / "home2"
        home2.mkdir(mode=0o555)
        os.chmod(home2, 0o555)
        run({"HOME": str(home2)})
        assert not _cache_files(site) and not _cache_files(home2)
    finally:
        for d, _, _ in os.walk(tmp_path):
            os.chmod(d, 0o755)

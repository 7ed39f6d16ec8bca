"""Every kernel of every available backend against the float64 oracle.

Each case builds float32 inputs, runs the backend's kernel on them with its
outputs inside guard buffers, runs the NumPy reference on the same values cast
to float64, and compares each output with the kernel's tolerance from
codette_np.kernels.tolerances (relative max error, max|got - oracle| / max|oracle|).

Backends come from codette_np.backend.available(): a backend that is not
available is skipped, except the C backend when CI is set, which fails.
Attention is tested elsewhere.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codette_np import Model, ModelConfig
from codette_np import backend as be
from codette_np.kernels import ref
from codette_np.kernels.tolerances import MODEL_TOL, tolerance
from conftest import need_backend, rel_err

# max|float32 backend - float64 oracle| / max|oracle|, per kernel (every output): the one table

ROW_SHAPES = [(1, 1), (1, 37), (3, 80), (37, 64), (65, 512), (4, 1000)]  # (N, C)
EMB_SHAPES = [(1, 1, 1), (7, 5, 37), (64, 33, 80), (300, 257, 64)]  # (N, V, C)
ROPE_SHAPES = [(1, 1, 1, 2), (2, 5, 3, 80), (1, 37, 2, 64), (3, 7, 4, 6), (2, 17, 1, 34)]  # (B, T, NH, hs)
FLAT_SHAPES = [(1, 1), (1, 37), (3, 80), (16, 1000), (3, 4099)]  # (N, F)
FUSED_SHAPES = FLAT_SHAPES + [(0, 37), (65, 131)]  # (N, F): also no rows, and more rows than row blocks
CE_SHAPES = [(1, 1), (1, 37), (5, 257), (17, 1001), (3, 16384)]  # (R, V)

GUARD = 67  # guard elements on each side of every output (odd: misaligns the output)
SENTINEL = np.float32(-31337.25)


# ---------------------------------------------------------------------------
# backends


@pytest.fixture(params=be.ORDER)
def K(request):
    return _backend(request.param)


@pytest.fixture(params=[n for n in be.ORDER if n != "numpy"])
def KC(request):
    """The compiled backends only (the NumPy backend's fused kernels are ref.py's compositions)."""
    return _backend(request.param)


_backend = need_backend


def test_c_backend_is_available():
    """Fails under CI when the C extension is missing; skips elsewhere. Every kernel,
    attention included, comes from C."""
    c = _backend("c")
    assert set(c.sources) == set(be.KERNELS)
    assert all(src == "c" for src in c.sources.values()), c.sources


# ---------------------------------------------------------------------------
# cases: each returns (outs, ins, call); outs holds the outputs' initial
# float32 content (garbage for written outputs, values for accumulated ones)


def _f32(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def case_embedding_forward(rng, N, V, C):
    ins = dict(tokens=rng.integers(0, V, N).astype(np.int32), wte=_f32(rng, V, C))
    return dict(out=_f32(rng, N, C)), ins, lambda f, o, i: f(o["out"], i["tokens"], i["wte"])


def case_embedding_backward(rng, N, V, C):
    ins = dict(dout=_f32(rng, N, C), tokens=rng.integers(0, V, N).astype(np.int32))
    return (dict(dwte=_f32(rng, V, C)), ins,
            lambda f, o, i: f(o["dwte"], i["dout"], i["tokens"]))


def case_layernorm_forward(rng, N, C):
    ins = dict(inp=_f32(rng, N, C, scale=2.0, shift=3.0), weight=_f32(rng, C, shift=1.0),
               bias=_f32(rng, C))
    outs = dict(out=_f32(rng, N, C), mean=_f32(rng, N), rstd=_f32(rng, N))
    return outs, ins, lambda f, o, i: f(o["out"], o["mean"], o["rstd"], i["inp"], i["weight"],
                                        i["bias"], 1e-5)


def case_layernorm_backward(rng, N, C):
    inp = _f32(rng, N, C, scale=2.0, shift=3.0)
    mean, rstd = np.empty(N), np.empty(N)
    ref.layernorm_forward(np.empty((N, C)), mean, rstd, inp.astype(np.float64), np.ones(C),
                          np.zeros(C), 1e-5)
    ins = dict(dout=_f32(rng, N, C), inp=inp, weight=_f32(rng, C, shift=1.0),
               mean=mean.astype(np.float32), rstd=rstd.astype(np.float32))
    outs = dict(dinp=_f32(rng, N, C), dweight=_f32(rng, C), dbias=_f32(rng, C))
    return outs, ins, lambda f, o, i: f(o["dinp"], o["dweight"], o["dbias"], i["dout"], i["inp"],
                                        i["weight"], i["mean"], i["rstd"])


def case_layernorm_backward_add(rng, N, C):
    outs, ins, _ = case_layernorm_backward(rng, N, C)
    outs = dict(dresid=outs.pop("dinp"), **outs)  # dresid holds values: the kernel adds into it
    return outs, ins, lambda f, o, i: f(o["dresid"], o["dweight"], o["dbias"], i["dout"], i["inp"],
                                        i["weight"], i["mean"], i["rstd"])


def case_bias_forward(rng, N, C):
    return dict(out=_f32(rng, N, C)), dict(bias=_f32(rng, C)), lambda f, o, i: f(o["out"], i["bias"])


def case_bias_backward(rng, N, C):
    return dict(dbias=_f32(rng, C)), dict(dout=_f32(rng, N, C)), lambda f, o, i: f(o["dbias"], i["dout"])


def case_residual_forward(rng, N, C):
    ins = dict(resid=_f32(rng, N, C), branch=_f32(rng, N, C), bias=_f32(rng, C))
    return (dict(out=_f32(rng, N, C)), ins,
            lambda f, o, i: f(o["out"], i["resid"], i["branch"], i["bias"]))


def case_residual_backward(rng, N, C):
    return (dict(dresid=_f32(rng, N, C)), dict(dbranch=_f32(rng, N, C)),
            lambda f, o, i: f(o["dresid"], i["dbranch"]))


def _rope_case(rng, B, T, NH, hs):
    cos, sin = ref.rope_tables(T + 3, hs, 10000.0, np.float32, pos0=5)
    ins = dict(inp=_f32(rng, B, T, NH, hs), cos=cos[:T].copy(), sin=sin[:T].copy())
    return dict(out=_f32(rng, B, T, NH, hs)), ins


def case_rope_forward(rng, *shape):
    outs, ins = _rope_case(rng, *shape)
    return outs, ins, lambda f, o, i: f(o["out"], i["inp"], i["cos"], i["sin"])


def case_rope_backward(rng, *shape):
    outs, ins = _rope_case(rng, *shape)
    return outs, ins, lambda f, o, i: f(o["out"], i["inp"], i["cos"], i["sin"])


def case_gelu_forward(rng, N, F):
    return dict(out=_f32(rng, N, F)), dict(inp=_f32(rng, N, F, scale=3.0)), \
        lambda f, o, i: f(o["out"], i["inp"])


def case_gelu_backward(rng, N, F):
    ins = dict(dout=_f32(rng, N, F), inp=_f32(rng, N, F, scale=3.0))
    return dict(dinp=_f32(rng, N, F)), ins, lambda f, o, i: f(o["dinp"], i["dout"], i["inp"])


def case_bias_gelu_forward(rng, N, F):
    outs = dict(out=_f32(rng, N, F), pre=_f32(rng, N, F, scale=3.0))  # pre: added to in place
    return outs, dict(bias=_f32(rng, F)), lambda f, o, i: f(o["out"], o["pre"], i["bias"])


def case_gelu_bias_backward(rng, N, F):
    ins = dict(dout=_f32(rng, N, F), pre=_f32(rng, N, F, scale=3.0))
    outs = dict(dinp=_f32(rng, N, F), dbias=_f32(rng, F))
    return outs, ins, lambda f, o, i: f(o["dinp"], o["dbias"], i["dout"], i["pre"])


def case_crossentropy_forward_backward(rng, R, V):
    targets = rng.integers(0, V, R).astype(np.int32)
    targets[::3] = -1 if R > 1 else targets[::3]
    ins = dict(logits=_f32(rng, R, V, scale=3.0), targets=targets)
    outs = dict(losses=_f32(rng, R), dlogits=_f32(rng, R, V))
    dscale = 1.0 / max(1, int((targets >= 0).sum()))
    return outs, ins, lambda f, o, i: f(o["losses"], o["dlogits"], i["logits"], i["targets"], dscale)


CASES = (
    [("embedding_forward", s) for s in EMB_SHAPES]
    + [("embedding_backward", s) for s in EMB_SHAPES]
    + [(k, s) for k in ("layernorm_forward", "layernorm_backward", "layernorm_backward_add",
                        "bias_forward", "bias_backward", "residual_forward", "residual_backward")
       for s in ROW_SHAPES]
    + [(k, s) for k in ("rope_forward", "rope_backward") for s in ROPE_SHAPES]
    + [(k, s) for k in ("gelu_forward", "gelu_backward") for s in FLAT_SHAPES]
    + [(k, s) for k in ("bias_gelu_forward", "gelu_bias_backward") for s in FUSED_SHAPES]
    + [("layernorm_backward_add", (0, 37))]  # no rows: dweight, dbias written as zeros
    + [("crossentropy_forward_backward", s) for s in CE_SHAPES]
)


def build(kernel, shape, seed=0):
    return globals()["case_" + kernel](np.random.default_rng(seed), *shape)


# ---------------------------------------------------------------------------
# running a case


def guarded(init):
    """(full, view): view holds init, with GUARD sentinels on each side in full."""
    full = np.full(init.size + 2 * GUARD, SENTINEL, dtype=init.dtype)
    view = full[GUARD:GUARD + init.size].reshape(init.shape)
    view[...] = init
    return full, view


def assert_guards(full, what):
    assert np.all(full[:GUARD] == SENTINEL), f"{what}: write before the output"
    assert np.all(full[-GUARD:] == SENTINEL), f"{what}: write after the output"


def run(K, kernel, outs, ins, call):
    """Runs K's kernel on guarded float32 outputs; returns those outputs."""
    bufs = {n: guarded(a) for n, a in outs.items()}
    got = {n: v for n, (_, v) in bufs.items()}
    with np.errstate(all="ignore"):
        call(getattr(K, kernel), got, {n: a.copy() for n, a in ins.items()})
    for n, (full, _) in bufs.items():
        assert_guards(full, f"{K.name} {kernel} {n}")
    return got


def oracle(kernel, outs, ins, call):
    o = {n: a.astype(np.float64) for n, a in outs.items()}
    i = {n: a.astype(np.float64) if a.dtype == np.float32 else a for n, a in ins.items()}
    with np.errstate(all="ignore"):
        call(getattr(ref, kernel), o, i)
    return o


def assert_close(got, want, tol, what):
    """Same NaN and inf positions; finite values within tol (relative to max|want|)."""
    got = np.asarray(got, dtype=np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ"
    assert np.array_equal(np.isposinf(got), np.isposinf(want)), f"{what}: +inf positions differ"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{what}: -inf positions differ"
    fin = np.isfinite(want)
    if fin.any() and np.any(want[fin] != 0):
        err = rel_err(got[fin], want[fin])
        assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"
    elif fin.any():
        assert np.all(got[fin] == 0), f"{what}: expected zeros"


# ---------------------------------------------------------------------------
# every kernel, every backend, against the oracle


@pytest.mark.parametrize("kernel,shape", CASES, ids=[f"{k}-{'x'.join(map(str, s))}" for k, s in CASES])
def test_kernel_matches_oracle(K, kernel, shape):
    outs, ins, call = build(kernel, shape)
    got = run(K, kernel, outs, ins, call)
    want = oracle(kernel, outs, ins, call)
    for n in outs:
        assert_close(got[n], want[n], tolerance(kernel, K.name), f"{K.name} {kernel} {shape} {n}")


def test_rope_in_place_on_strided_views(K):
    """q and k as views of one (N, 3C) buffer, rotated in place; v and the guards untouched.
    The views start one step into T, so their B stride is not T times their T stride."""
    rng = np.random.default_rng(1)
    B, T, NH, hs = 2, 9, 3, 80
    C = NH * hs
    full, qkv = guarded(_f32(rng, B * T, 3 * C))
    before = qkv.copy()
    x = qkv.reshape(B, T, 3, NH, hs)[:, 1:]
    q, k = x[:, :, 0], x[:, :, 1]
    cos, sin = ref.rope_tables(T - 1, hs, 10000.0, np.float32)
    want_q, want_k = np.empty(q.shape), np.empty(q.shape)
    ref.rope_forward(want_q, q.astype(np.float64), cos.astype(np.float64), sin.astype(np.float64))
    ref.rope_backward(want_k, k.astype(np.float64), cos.astype(np.float64), sin.astype(np.float64))
    K.rope_forward(q, q, cos, sin)
    K.rope_backward(k, k, cos, sin)
    assert_guards(full, f"{K.name} rope on views")
    assert_close(q, want_q, tolerance("rope_forward", K.name), "q")
    assert_close(k, want_k, tolerance("rope_backward", K.name), "k")
    after = qkv.reshape(B, T, 3, NH, hs)
    b4 = before.reshape(B, T, 3, NH, hs)
    assert np.array_equal(after[:, :, 2], b4[:, :, 2]), "v changed"
    assert np.array_equal(after[:, 0], b4[:, 0]), "the row outside the views changed"


@pytest.mark.parametrize("kernel", ["residual_forward", "crossentropy_forward_backward", "gelu_forward",
                                    "gelu_bias_backward"])
def test_in_place(K, kernel):
    """The aliasing ref.py allows: residual out is branch, dlogits is logits, gelu out is inp,
    gelu_bias_backward dinp is dout."""
    outs, ins, call = build(kernel, (9, 1001))
    want = oracle(kernel, outs, ins, call)
    alias = {"residual_forward": ("out", "branch"), "crossentropy_forward_backward": ("dlogits", "logits"),
             "gelu_forward": ("out", "inp"), "gelu_bias_backward": ("dinp", "dout")}[kernel]
    full, buf = guarded(ins[alias[1]])
    got = {n: guarded(a)[1] for n, a in outs.items()}
    got[alias[0]] = buf
    i = dict(ins)
    i[alias[1]] = buf
    call(getattr(K, kernel), got, i)
    assert_guards(full, f"{K.name} {kernel} in place")
    for n in outs:
        assert_close(got[n], want[n], tolerance(kernel, K.name), f"{K.name} {kernel} in place {n}")


# ---------------------------------------------------------------------------
# NaN and inf propagate as in the oracle

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 5.0, -5.0, 12.0, -12.0,
                     50.0, -50.0, 1e4, -1e4], dtype=np.float32)
HUGE = np.array([1e20, -1e20, 3e38, -3e38], dtype=np.float32)  # x^3 overflows float32


def _spread(vals, n, rng):
    """n values: vals at random positions (vector body and tail), the rest normal."""
    x = _f32(rng, n, scale=2.0)
    pos = rng.choice(n, size=min(n, 3 * len(vals)), replace=False)
    x[pos] = np.resize(vals, len(pos))
    return x


@pytest.mark.parametrize("kernel", ["gelu_forward", "gelu_backward", "bias_gelu_forward",
                                    "gelu_bias_backward"])
def test_gelu_specials(K, kernel):
    """The flat kernels on one row; the fused ones on 7 rows (a vector body and a
    tail in each), their column sums of dbias carrying the NaNs and infs down."""
    rng = np.random.default_rng(2)
    n = 2 * 4096 + 77
    rows = 1 if kernel in ("gelu_forward", "gelu_backward") else 7
    shape = (rows, n // rows)
    forward = kernel.endswith("forward")
    vals = np.concatenate([SPECIALS, HUGE]) if forward else SPECIALS
    x = _spread(vals, n, rng)[:shape[0] * shape[1]].reshape(shape)
    outs = dict(out=np.zeros(shape, np.float32))
    if kernel == "gelu_forward":
        ins = dict(inp=x)
        call = lambda f, o, i: f(o["out"], i["inp"])
    elif kernel == "bias_gelu_forward":
        outs["pre"] = x
        ins = dict(bias=_f32(rng, shape[1]))
        call = lambda f, o, i: f(o["out"], o["pre"], i["bias"])
    else:
        ins = dict(inp=x, dout=_spread(np.array([np.inf, -np.inf, np.nan], np.float32), n, rng)
                   [:x.size].reshape(shape))
        ins["dout"][np.abs(x) > 20] = 1.0  # dout = inf times a gradient that underflows is ill-posed
        if kernel == "gelu_backward":
            call = lambda f, o, i: f(o["out"], i["dout"], i["inp"])
        else:
            outs["dbias"] = np.zeros(shape[1], np.float32)
            call = lambda f, o, i: f(o["out"], o["dbias"], i["dout"], i["inp"])
    got, want = run(K, kernel, outs, ins, call), oracle(kernel, outs, ins, call)
    for name in outs:
        assert_close(got[name], want[name], tolerance(kernel, K.name), f"{K.name} {kernel} {name}")


def test_elementwise_specials(K):
    rng = np.random.default_rng(3)
    N, C = 7, 83
    sp = lambda: _spread(SPECIALS[:3], N * C, rng).reshape(N, C)
    bias = _f32(rng, C)
    bias[[0, 40, 82]] = [np.inf, -np.inf, np.nan]
    cases = [
        ("residual_forward", dict(out=_f32(rng, N, C)), dict(resid=sp(), branch=sp(), bias=bias),
         lambda f, o, i: f(o["out"], i["resid"], i["branch"], i["bias"])),
        ("residual_backward", dict(dresid=sp()), dict(dbranch=sp()),
         lambda f, o, i: f(o["dresid"], i["dbranch"])),
        ("bias_forward", dict(out=sp()), dict(bias=bias), lambda f, o, i: f(o["out"], i["bias"])),
        ("bias_backward", dict(dbias=_f32(rng, C)), dict(dout=sp()),
         lambda f, o, i: f(o["dbias"], i["dout"])),
    ]
    for kernel, outs, ins, call in cases:
        got, want = run(K, kernel, outs, ins, call), oracle(kernel, outs, ins, call)
        for n in outs:
            assert_close(got[n], want[n], tolerance(kernel, K.name), f"{K.name} {kernel} {n}")


def test_layernorm_specials(K):
    """A NaN or an inf in a row makes that row NaN, and only that row."""
    outs, ins, call = build("layernorm_forward", (6, 83))
    ins["inp"][1, 5] = np.nan
    ins["inp"][3, 80] = np.inf
    ins["inp"][4, 0] = -np.inf
    got, want = run(K, "layernorm_forward", outs, ins, call), oracle("layernorm_forward", outs, ins, call)
    assert np.isnan(want["out"][[1, 3, 4]]).all() and np.isfinite(want["out"][[0, 2, 5]]).all()
    for n in outs:
        assert_close(got[n], want[n], tolerance("layernorm_forward", K.name), f"{K.name} layernorm {n}")
    for kernel in ("layernorm_backward", "layernorm_backward_add"):
        outs, ins, call = build(kernel, (6, 83))
        ins["dout"][2, 7] = np.nan
        if kernel == "layernorm_backward_add":  # what dresid held propagates too
            outs["dresid"][4, 9], outs["dresid"][5, 82] = np.inf, np.nan
        got, want = run(K, kernel, outs, ins, call), oracle(kernel, outs, ins, call)
        for n in outs:
            assert_close(got[n], want[n], tolerance(kernel, K.name), f"{K.name} {kernel} {n}")


def test_crossentropy_specials(K):
    V = 1001
    outs, ins, call = build("crossentropy_forward_backward", (8, V))
    lg, t = ins["logits"], ins["targets"]
    t[:] = np.arange(8) * 7
    lg[0, 500] = np.inf  # +inf logit: the row is NaN
    lg[1, 3] = np.nan  # NaN logit: the row is NaN
    lg[2, 3], t[2] = np.nan, -1  # ignored row: zero whatever the logits
    lg[3, 100] = -np.inf  # -inf elsewhere: probability 0
    lg[4, t[4]] = -np.inf  # -inf at the target: loss +inf, finite gradient
    lg[5, :] = -np.inf  # all -inf: NaN
    lg[6, :] = 1e30  # huge equal logits: uniform
    got = run(K, "crossentropy_forward_backward", outs, ins, call)
    want = oracle("crossentropy_forward_backward", outs, ins, call)
    assert np.isnan(want["losses"][[0, 1, 5]]).all() and want["losses"][2] == 0
    assert np.isposinf(want["losses"][4])
    for n in outs:
        assert_close(got[n], want[n], tolerance("crossentropy_forward_backward", K.name), f"{K.name} ce {n}")


# ---------------------------------------------------------------------------
# determinism and thread counts

DET_CASES = [("embedding_backward", (2000, 300, 200)), ("layernorm_forward", (300, 520)),
             ("layernorm_backward", (300, 520)), ("layernorm_backward_add", (300, 520)),
             ("bias_backward", (300, 520)), ("residual_backward", (30, 5000)),
             ("rope_forward", (2, 64, 4, 80)), ("gelu_forward", (7, 3001)), ("gelu_backward", (7, 3001)),
             ("bias_gelu_forward", (7, 3001)), ("gelu_bias_backward", (300, 523)),
             ("crossentropy_forward_backward", (64, 1001))]


@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_fused_kernels_equal_their_unfused_pairs_bitwise(KC, shape):
    """bias_gelu_forward, gelu_bias_backward and layernorm_backward_add give the
    same bits as the kernels they fuse, run one after the other (the model's
    numbers do not depend on the fusion). Each fused kernel also meets the
    float64 oracle in test_kernel_matches_oracle."""
    K = KC
    N, F = shape
    rng = np.random.default_rng(5)
    pre, bias, dout = _f32(rng, N, F, scale=3.0), _f32(rng, F), _f32(rng, N, F)
    # forward: bias then GELU
    pre1, out1 = pre.copy(), np.zeros((N, F), np.float32)
    K.bias_gelu_forward(out1, pre1, bias)
    pre2, out2 = pre.copy(), np.zeros((N, F), np.float32)
    K.bias_forward(pre2, bias)
    K.gelu_forward(out2, pre2)
    assert np.array_equal(pre1, pre2) and np.array_equal(out1, out2), f"{K.name} bias_gelu_forward"
    # backward: GELU gradient then its column sums
    d1, db1 = np.zeros((N, F), np.float32), np.zeros(F, np.float32)
    K.gelu_bias_backward(d1, db1, dout, pre1)
    d2, db2 = np.zeros((N, F), np.float32), np.zeros(F, np.float32)
    K.gelu_backward(d2, dout, pre1)
    K.bias_backward(db2, d2)
    assert np.array_equal(d1, d2) and np.array_equal(db1, db2), f"{K.name} gelu_bias_backward"
    # LayerNorm backward added into the residual gradient vs written, then added
    x, w = _f32(rng, N, F), _f32(rng, F)
    ln, mean, rstd = np.zeros((N, F), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)
    K.layernorm_forward(ln, mean, rstd, x, w, _f32(rng, F), 1e-5)
    resid = _f32(rng, N, F)
    r1, dw1, dbb1 = resid.copy(), np.zeros(F, np.float32), np.zeros(F, np.float32)
    K.layernorm_backward_add(r1, dw1, dbb1, dout, x, w, mean, rstd)
    r2, dx, dw2, dbb2 = resid.copy(), np.zeros((N, F), np.float32), np.zeros(F, np.float32), np.zeros(F, np.float32)
    K.layernorm_backward(dx, dw2, dbb2, dout, x, w, mean, rstd)
    K.residual_backward(r2, dx)
    assert (np.array_equal(r1, r2) and np.array_equal(dw1, dw2)
            and np.array_equal(dbb1, dbb2)), f"{K.name} layernorm_backward_add"


def test_same_thread_count_is_bit_identical(K):
    for kernel, shape in DET_CASES:
        outs, ins, call = build(kernel, shape)
        a, b = run(K, kernel, outs, ins, call), run(K, kernel, outs, ins, call)
        for n in outs:
            assert np.array_equal(a[n], b[n], equal_nan=True), f"{K.name} {kernel} {n}"


def _det_outputs(K):
    res = {}
    for kernel, shape in DET_CASES:
        outs, ins, call = build(kernel, shape)
        for n, a in run(K, kernel, outs, ins, call).items():
            res[kernel + "/" + n] = a
    x = _f32(np.random.default_rng(3), 1_000_003)  # many chunks, and a tail
    res["grad_norm_sq"] = np.array(K.grad_norm_sq(x))
    return res


_THREAD_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import test_kernels as tk
from codette_np import backend as be
np.savez(sys.argv[2], **tk._det_outputs(be.get("c")))
"""


def test_c_thread_count_independent(tmp_path):
    """OMP_NUM_THREADS 1, 2 and 3 give bit-identical results: no partition in
    the C kernels depends on the thread count."""
    _backend("c")
    runs = []
    for nt in ("1", "2", "3"):
        path = tmp_path / f"{nt}.npz"
        subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, str(Path(__file__).parent), str(path)],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS=nt),
                       cwd=Path(__file__).parent.parent, timeout=300)
        runs.append(dict(np.load(path)))
    for other in runs[1:]:
        for key, a in runs[0].items():
            assert np.array_equal(a, other[key], equal_nan=True), key


def test_numba_thread_count_independent():
    """1 vs 2 Numba threads (set in process) give bit-identical results, as in C."""
    K = _backend("numba")
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    if top < 2:
        pytest.skip("Numba has a single thread here")
    try:
        numba.set_num_threads(1)
        one = _det_outputs(K)
        numba.set_num_threads(2)
        two = _det_outputs(K)
    finally:
        numba.set_num_threads(top)
    for key, a in one.items():
        assert np.array_equal(two[key], a, equal_nan=True), key


# ---------------------------------------------------------------------------
# the C wrappers' argument checks


def test_c_wrappers_reject_bad_arguments():
    K = _backend("c")
    x = np.zeros((4, 16), np.float32)
    with pytest.raises(TypeError, match="float32"):
        K.gelu_forward(np.zeros((4, 16)), x)
    with pytest.raises(TypeError, match="int32"):
        K.embedding_forward(x, np.zeros(4, np.int64), x)
    with pytest.raises(ValueError, match="shape"):
        K.residual_forward(x, x, np.zeros((4, 15), np.float32), np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.gelu_forward(x, np.zeros((16, 4), np.float32).T)
    with pytest.raises(ValueError, match="overlaps"):
        K.gelu_forward(x[1:], x[:-1])
    with pytest.raises(IndexError):
        K.embedding_forward(x, np.array([0, 1, 2, 4], np.int32), x.copy())
    with pytest.raises(IndexError):
        K.crossentropy_forward_backward(np.zeros(4, np.float32), x, x.copy(),
                                        np.array([0, -2, 1, 1], np.int32), 1.0)
    q = np.zeros((1, 3, 2, 8), np.float32)[..., ::2]  # hs not contiguous
    cos = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="contiguous"):
        K.rope_forward(q, q, cos, cos)
    ro = np.zeros((2, 16), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        K.gelu_forward(ro, ro.copy())
    b16 = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="overlaps"):  # pre must keep the pre-activation
        K.bias_gelu_forward(x, x, b16)
    with pytest.raises(ValueError, match="bias"):
        K.bias_gelu_forward(x.copy(), x, np.zeros(15, np.float32))
    with pytest.raises(ValueError, match="writable"):
        K.bias_gelu_forward(ro.copy(), ro, b16)
    with pytest.raises(ValueError, match="shape"):
        K.gelu_bias_backward(x.copy(), np.zeros(15, np.float32), x.copy(), x)
    with pytest.raises(ValueError, match="overlaps"):
        K.gelu_bias_backward(x.copy(), x[0], x.copy(), x)
    ln = dict(dweight=b16.copy(), dbias=b16.copy(), dout=x.copy(), inp=x.copy(), weight=b16.copy(),
              mean=np.zeros(4, np.float32), rstd=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="overlaps"):  # adds into dresid while reading dout
        K.layernorm_backward_add(ln["dout"], *ln.values())
    with pytest.raises(TypeError, match="float32"):
        K.layernorm_backward_add(np.zeros((4, 16)), *ln.values())


# ---------------------------------------------------------------------------
# the whole nano model, per backend, against the float64 oracle model


def test_nano_model_matches_float64_oracle(K):
    rng = np.random.default_rng(4)
    cfg = ModelConfig.preset("nano")
    m32 = Model(cfg, seed=3, backend=K.name)
    m64 = Model(cfg, seed=3, dtype=np.float64)
    tokens = rng.integers(0, cfg.vocab_size, (2, 33)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (2, 33)).astype(np.int32)
    targets[0, :2] = -1
    l32 = m32.forward_backward(tokens, targets)
    l64 = m64.forward_backward(tokens, targets)
    assert abs(l32 - l64) / l64 < MODEL_TOL
    g32, g64 = dict(m32.named_grads()), dict(m64.named_grads())
    for name in g64:
        assert rel_err(g32[name], g64[name]) < MODEL_TOL, name
    assert rel_err(m32.forward(tokens), m64.forward(tokens)) < MODEL_TOL

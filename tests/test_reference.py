"""Finite-difference checks of every reference backward, in float64."""

import numpy as np
import pytest

from codette_np.kernels import ref
from conftest import rel_err

EPS = 1e-6
TOL = 1e-6


def numgrad(f, x, eps=EPS):
    """Central differences of the scalar f() w.r.t. every element of x (in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def test_layernorm_backward(rng):
    N, C = 5, 7
    x = rng.standard_normal((N, C))
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    wout = rng.standard_normal((N, C))
    out, mean, rstd = np.zeros((N, C)), np.zeros(N), np.zeros(N)

    def f():
        ref.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
        return float((out * wout).sum())

    f()
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    ref.layernorm_backward(dx, dw, db, wout, x, w, mean, rstd)
    for ana, var in ((dx, x), (dw, w), (db, b)):
        assert rel_err(ana, numgrad(f, var)) < TOL


def test_layernorm_forward_matches_definition(rng):
    x = rng.standard_normal((3, 10)) * 3 + 1
    w, b = rng.standard_normal(10), rng.standard_normal(10)
    out, mean, rstd = np.zeros((3, 10)), np.zeros(3), np.zeros(3)
    ref.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
    var = x.var(axis=1, keepdims=True)  # biased variance
    expect = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(var + 1e-5) * w + b
    assert rel_err(out, expect) < 1e-12


def test_gelu_backward(rng):
    x = rng.standard_normal((4, 9)) * 2
    wout = rng.standard_normal((4, 9))
    out = np.zeros_like(x)

    def f():
        ref.gelu_forward(out, x)
        return float((out * wout).sum())

    dx = np.zeros_like(x)
    ref.gelu_backward(dx, wout, x)
    assert rel_err(dx, numgrad(f, x)) < TOL


def test_gelu_is_tanh_approximation():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    out = np.zeros_like(x)
    ref.gelu_forward(out, x)
    expect = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    assert np.allclose(out, expect, rtol=0, atol=1e-15)


def test_bias_and_residual_backward(rng):
    N, O = 6, 5
    y0 = rng.standard_normal((N, O))
    bias = rng.standard_normal(O)
    wout = rng.standard_normal((N, O))

    def f():
        y = y0.copy()
        ref.bias_forward(y, bias)
        return float((y * wout).sum())

    db = np.zeros(O)
    ref.bias_backward(db, wout)
    assert rel_err(db, numgrad(f, bias)) < TOL

    resid, branch = rng.standard_normal((N, O)), rng.standard_normal((N, O))
    out = np.zeros((N, O))
    ref.residual_forward(out, resid, branch, bias)
    assert np.allclose(out, resid + branch + bias)
    d = wout.copy()
    ref.residual_backward(d, branch)
    assert np.allclose(d, wout + branch)


def test_fused_bias_gelu(rng):
    """bias_gelu_forward / gelu_bias_backward: the gradients of sum(gelu(x + bias) * wout)."""
    N, F = 4, 9
    x = rng.standard_normal((N, F)) * 2
    bias = rng.standard_normal(F)
    wout = rng.standard_normal((N, F))

    def f():
        pre, out = x.copy(), np.zeros((N, F))
        ref.bias_gelu_forward(out, pre, bias)
        return float((out * wout).sum())

    pre, out = x.copy(), np.zeros((N, F))
    ref.bias_gelu_forward(out, pre, bias)
    assert np.array_equal(pre, x + bias)  # pre keeps the biased pre-activation
    dx, dbias = np.zeros((N, F)), np.zeros(F)
    ref.gelu_bias_backward(dx, dbias, wout, pre)
    assert rel_err(dx, numgrad(f, x)) < TOL
    assert rel_err(dbias, numgrad(f, bias)) < TOL


def test_layernorm_backward_add(rng):
    """dresid += the input gradient; dweight, dbias written as layernorm_backward writes them."""
    N, C = 5, 7
    x, w, dout = rng.standard_normal((N, C)), rng.standard_normal(C), rng.standard_normal((N, C))
    out, mean, rstd = np.zeros((N, C)), np.zeros(N), np.zeros(N)
    ref.layernorm_forward(out, mean, rstd, x, w, np.zeros(C), 1e-5)
    dx, dw, db = np.zeros((N, C)), np.zeros(C), np.zeros(C)
    ref.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)
    r0 = rng.standard_normal((N, C))
    dresid, dw2, db2 = r0.copy(), np.full(C, 7.0), np.full(C, 7.0)
    ref.layernorm_backward_add(dresid, dw2, db2, dout, x, w, mean, rstd)
    assert np.array_equal(dresid, r0 + dx) and np.array_equal(dw2, dw) and np.array_equal(db2, db)


def test_rope_backward_and_neox_pairs(rng):
    B, T, NH, hs = 2, 5, 3, 8
    x = rng.standard_normal((B, T, NH, hs))
    cos, sin = ref.rope_tables(T, hs, 10000.0, np.float64)
    wout = rng.standard_normal(x.shape)
    out = np.zeros_like(x)

    def f():
        ref.rope_forward(out, x, cos, sin)
        return float((out * wout).sum())

    f()
    # NEOX: element j pairs with j + hs/2, angle pos * base^(-2j/hs)
    t, h, j = 3, 1, 2
    ang = t * 10000.0 ** (-2 * j / hs)
    x1, x2 = x[0, t, h, j], x[0, t, h, j + hs // 2]
    assert np.isclose(out[0, t, h, j], x1 * np.cos(ang) - x2 * np.sin(ang))
    assert np.isclose(out[0, t, h, j + hs // 2], x2 * np.cos(ang) + x1 * np.sin(ang))
    dx = np.zeros_like(x)
    ref.rope_backward(dx, wout, cos, sin)
    assert rel_err(dx, numgrad(f, x)) < TOL
    # in place (out aliases inp) gives the same as out of place
    f()
    y = x.copy()
    ref.rope_forward(y, y, cos, sin)
    assert np.array_equal(y, out)


def _naive_attention(q, k, v):
    B, T, NH, hs = q.shape
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(NH):
            for t in range(T):
                s = np.array([q[b, t, h] @ k[b, u, h] for u in range(t + 1)]) / np.sqrt(hs)
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, t, h] = sum(p[u] * v[b, u, h] for u in range(t + 1))
    return out


def test_attention_forward_and_backward(rng):
    B, T, NH, hs = 2, 6, 2, 4
    q, k, v = (rng.standard_normal((B, T, NH, hs)) for _ in range(3))
    out, lse = np.zeros_like(q), np.zeros((B, NH, T))
    ref.attention_forward(out, lse, q, k, v)
    assert rel_err(out, _naive_attention(q, k, v)) < 1e-12
    wout = rng.standard_normal(q.shape)

    def f():
        ref.attention_forward(out, lse, q, k, v)
        return float((out * wout).sum())

    f()
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    ref.attention_backward(dq, dk, dv, wout, q, k, v, out, lse)
    for ana, var in ((dq, q), (dk, k), (dv, v)):
        assert rel_err(ana, numgrad(f, var)) < TOL


def test_embedding_backward(rng):
    V, C, N = 7, 3, 10
    wte = rng.standard_normal((V, C))
    tokens = rng.integers(0, V, N).astype(np.int32)
    wout = rng.standard_normal((N, C))
    out = np.zeros((N, C))

    def f():
        ref.embedding_forward(out, tokens, wte)
        return float((out * wout).sum())

    d = np.zeros_like(wte)
    ref.embedding_backward(d, wout, tokens)
    assert rel_err(d, numgrad(f, wte)) < TOL


def test_crossentropy_forward_backward(rng):
    R, V = 6, 11
    logits = rng.standard_normal((R, V)) * 3
    targets = rng.integers(0, V, R).astype(np.int32)
    targets[2] = -1
    losses, dl = np.zeros(R), np.zeros((R, V))
    n = int((targets >= 0).sum())

    def f():
        ls, d = np.zeros(R), np.zeros((R, V))
        ref.crossentropy_forward_backward(ls, d, logits, targets, 1.0 / n)
        return float(ls.sum() / n)

    ref.crossentropy_forward_backward(losses, dl, logits, targets, 1.0 / n)
    m = logits.max(1)
    expect = m + np.log(np.exp(logits - m[:, None]).sum(1)) - logits[np.arange(R), np.maximum(targets, 0)]
    expect[2] = 0
    assert rel_err(losses, expect) < 1e-12
    assert np.all(dl[2] == 0)
    assert rel_err(dl, numgrad(f, logits)) < TOL


def test_adamw_reference_matches_textbook(rng):
    P = 50
    p = rng.standard_normal(P)
    mask = (rng.random(P) < 0.5).astype(np.uint8)
    m, v = np.zeros(P), np.zeros(P)
    pe, me, ve = p.copy(), np.zeros(P), np.zeros(P)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    for t in range(1, 4):
        g = rng.standard_normal(P)
        for sel, decay in ((mask == 1, True), (mask == 0, False)):  # one call per kind of tensor
            ps, ms, vs = p[sel], m[sel], v[sel]
            ref.adamw_step(ps, g[sel], ms, vs, decay, lr, b1, b2, eps, wd, t, 0.5)
            p[sel], m[sel], v[sel] = ps, ms, vs
        gs = g * 0.5
        me = b1 * me + (1 - b1) * gs
        ve = b2 * ve + (1 - b2) * gs ** 2
        pe = pe * np.where(mask == 1, 1 - lr * wd, 1.0)
        pe = pe - lr * (me / (1 - b1 ** t)) / (np.sqrt(ve / (1 - b2 ** t)) + eps)
    assert rel_err(p, pe) < 1e-12

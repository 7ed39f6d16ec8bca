"""AdamW: C against the NumPy reference, the decay policy, the schedule, clipping."""

import math

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig, lr_schedule
from codette_np.kernels import ref
from conftest import need_backend as _need
from conftest import rel_err


@pytest.mark.parametrize("decay", [True, False])
def test_c_adamw_matches_numpy_over_10_steps(rng, decay):
    c = _need("c")
    P = 100_003  # not a multiple of any vector width
    p0 = rng.standard_normal(P).astype(np.float32)
    pc, pr = p0.copy(), p0.copy()
    mc, vc, mr, vr = (np.zeros(P, np.float32) for _ in range(4))
    for t in range(1, 11):
        g = rng.standard_normal(P).astype(np.float32)
        c.adamw_step(pc, g, mc, vc, decay, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 0.7)
        ref.adamw_step(pr, g, mr, vr, decay, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 0.7)
    assert rel_err(pc, pr) <= 1e-6
    assert rel_err(mc, mr) <= 1e-6 and rel_err(vc, vr) <= 1e-6


def test_c_grad_norm_matches_numpy(rng):
    c = _need("c")
    for n in (0, 1, 17, 70_001):
        x = rng.standard_normal(n).astype(np.float32)
        assert c.grad_norm_sq(x) == pytest.approx(ref.grad_norm_sq(x), rel=1e-12, abs=0)


def test_decay_policy_matrices_only():
    """With zero gradients only weight decay moves parameters: exactly the matrices shrink."""
    cfg = ModelConfig.preset("nano")
    for be in ("numpy", "c"):
        _need(be)
        m = Model(cfg, seed=0, backend=be)
        for name, p in m.named_parameters():
            if p.ndim == 1:
                p[:] = 0.5  # biases and norms non-zero, so decay would show
        before = {n: p.copy() for n, p in m.named_parameters()}
        opt = AdamW(m, lr=0.1, weight_decay=0.5)
        m.grads[:] = 0.0
        m.grads_valid = True  # gradients written by hand
        opt.step()
        for name, p in m.named_parameters():
            if p.ndim == 2:
                assert np.allclose(p, before[name] * (1 - 0.1 * 0.5), rtol=1e-6), name
            else:
                assert np.array_equal(p, before[name]), name


def test_schedule_warmup_then_cosine():
    lrs = [lr_schedule(s, 1.0, 0.1, 10, 110) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111]))  # cosine falls
    assert lrs[60] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 0.9)
    assert lrs[110] == lrs[119] == pytest.approx(0.1)


def test_clipping_scales_the_update(rng):
    cfg = ModelConfig.preset("nano")
    m1, m2 = Model(cfg, seed=0), Model(cfg, seed=0)
    g = rng.standard_normal(m1.grads.shape).astype(np.float32)
    m1.grads[:] = g
    m2.grads[:] = g * (1.0 / (np.linalg.norm(g.astype(np.float64)) + 1e-6))
    m1.grads_valid = m2.grads_valid = True  # gradients written by hand
    o1, o2 = AdamW(m1, lr=1e-2), AdamW(m2, lr=1e-2)
    n1 = o1.step(max_grad_norm=1.0)
    o2.step()
    assert n1 == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=1e-6)
    assert rel_err(o1.m, o2.m) < 1e-5


def test_nonfinite_grad_norm_skips(rng):
    m = Model(ModelConfig.preset("nano"), seed=0)
    opt = AdamW(m)
    before = m.params.copy()
    m.grads[:] = 0
    m.grads[5] = np.nan
    m.grads_valid = True
    with pytest.raises(FloatingPointError):
        opt.step()
    assert np.array_equal(before, m.params) and opt.t == 0


def test_step_before_any_backward_is_refused():
    """No gradients yet: the step must not decay weights or advance the step count."""
    m = Model(ModelConfig.preset("nano"), seed=0)
    opt = AdamW(m, weight_decay=0.1)
    before = m.params.copy()
    with pytest.raises(RuntimeError, match="before any forward_backward"):
        opt.step()
    assert np.array_equal(before, m.params) and opt.t == 0


@pytest.mark.parametrize("lr", [math.inf, -1.0, math.nan, "0.1", True])
def test_bad_learning_rates_are_refused(lr):
    m = Model(ModelConfig.preset("nano"), seed=0)
    with pytest.raises(ValueError, match="learning rate"):
        AdamW(m, lr=lr)
    opt = AdamW(m)
    tokens = np.zeros((1, 5), np.int32)
    m.forward_backward(tokens, tokens)
    before = m.params.copy()
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(lr=lr)
    assert np.array_equal(before, m.params) and opt.t == 0


@pytest.mark.parametrize("clip", [-1.0, math.nan, math.inf])
def test_bad_clip_is_refused(clip):
    m = Model(ModelConfig.preset("nano"), seed=0)
    tokens = np.zeros((1, 5), np.int32)
    m.forward_backward(tokens, tokens)
    with pytest.raises(ValueError, match="max_grad_norm"):
        AdamW(m).step(max_grad_norm=clip)

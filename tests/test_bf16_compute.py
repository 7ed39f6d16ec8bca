"""Model(precision="bf16"): the matrix products in bf16 through the engine's GEMM.

The oracle is a float64 model holding the same (bf16-representable) weights. The bf16 model
rounds each product's two operands to bf16 (relative error up to u16 = 2^-8 each) and
accumulates in float32, so each product's output carries a relative error of order 2 u16 in
norm; the errors of the L layers' products add up through the residual stream. Stated
tolerances: the loss within 2 u16 relative; every gradient tensor within 8 u16 = 2^-5
relative in norm (the measured worst on nano is printed by the test). A float32 model is
held to the same oracle 100 times tighter, so the test sees the difference between the two.

The weights are at their initial scale (matrices N(0, 0.02), the vectors randomized). The
errors grow with the conditioning: with matrices 15 times larger (N(0, 0.3)), the softmax is
sharp and the q, k and embedding gradients of nano differ from float64 by up to 7%.
"""

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig, gemm
from conftest import rel_err

U16 = 2.0 ** -8


def _randomize_bf16(model, rng):
    for name, _ in model.named_parameters():
        shape = model.layout.by_name[name].shape
        v = rng.standard_normal(shape) * (0.1 if len(shape) == 1 else 0.02)
        if name.endswith("norm.weight"):
            v += 1.0
        model.set_parameter(name, v.astype(np.float32))


def _f64_twin(model):
    twin = Model(model.cfg, dtype=np.float64, init=False)
    for name, a in model.parameters_f32().items():
        twin.set_parameter(name, a.astype(np.float64))
    return twin


def _batch(rng, cfg, B, T):
    x = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    y = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    y[0, :2] = -1
    return x, y


@pytest.mark.parametrize("path", [p for p in gemm.runnable() if p != "numpy"])
def test_bf16_gradients_against_float64(rng, path):
    gemm.set_path(path)
    try:
        cfg = ModelConfig.preset("nano")
        mb = Model(cfg, seed=0, precision="bf16")
        _randomize_bf16(mb, rng)
        m64 = _f64_twin(mb)
        m32 = Model(cfg, seed=0, weights="bf16")
        m32.params_bf16[:], m32.params[:] = mb.params_bf16, mb.params
        x, y = _batch(rng, cfg, 2, 48)
        l64 = m64.forward_backward(x, y)
        lb, l32 = mb.forward_backward(x, y), m32.forward_backward(x, y)
        assert abs(lb - l64) / l64 < 2 * U16
        g64 = dict(m64.named_grads())
        worst = max(rel_err(mb._g[n], g64[n]) for n in g64)
        worst32 = max(rel_err(m32._g[n], g64[n]) for n in g64)
        print(f"nano bf16 products on {path}: worst gradient relative error {worst:.2e} "
              f"(fp32 products {worst32:.2e}); loss {abs(lb - l64) / l64:.1e}")
        assert worst < 8 * U16
        assert worst32 < 8 * U16 / 100 < worst  # the bound separates the two precisions
        assert rel_err(mb.forward(x), m64.forward(x)) < 8 * U16
    finally:
        gemm.set_path(None)


def test_recompute_and_fused_update_are_exact_in_bf16(rng):
    cfg = ModelConfig.preset("nano")
    x, y = _batch(rng, cfg, 2, 32)
    plain = Model(cfg, seed=4, precision="bf16")
    again = Model(cfg, seed=4, precision="bf16", recompute=True)
    assert plain.forward_backward(x, y) == again.forward_backward(x, y)
    assert np.array_equal(plain.grads, again.grads)
    fused = Model(cfg, seed=4, precision="bf16", recompute=True, fused_update=True)
    o_full, o_fused = AdamW(plain, lr=1e-3, state="q8", seed=1), AdamW(fused, lr=1e-3, state="q8", seed=1)
    for _ in range(3):
        plain.forward_backward(x, y)
        o_full.step()
        o_fused.fused_step(x, y)
    assert np.array_equal(plain.params_bf16, fused.params_bf16)
    assert np.array_equal(plain.params, fused.params)


def test_bf16_saves_activation_bytes_and_counts_them():
    cfg = ModelConfig.preset("micro")
    B, T = 2, 64
    fp, bf = Model(cfg, seed=0, weights="bf16"), Model(cfg, seed=0, precision="bf16")
    x = np.zeros((B, T), np.int32)
    for m in (fp, bf):
        m.forward_backward(x, x)
        arrays = [v for v in vars(m._train_acts).values() if isinstance(v, np.ndarray)]
        assert sum(a.nbytes for a in arrays) == m.activation_bytes(B, T)
    # at a training shape the bf16 inputs outweigh the bf16 copies of the embedding and logits
    assert bf.activation_bytes(8, 256) < 0.85 * fp.activation_bytes(8, 256)


def test_nano_learns_in_bf16_near_fp32():
    cfg = ModelConfig.preset("nano")
    rng = np.random.default_rng(0)
    seq = np.tile(rng.integers(0, 50, 17), 4).astype(np.int32)
    x, y = seq[None, :-1].repeat(4, 0), seq[None, 1:].repeat(4, 0)
    losses = {}
    for precision in ("fp32", "bf16"):
        m = Model(cfg, seed=0, weights="bf16", precision=precision)
        opt = AdamW(m, lr=3e-3)
        for _ in range(60):
            m.forward_backward(x, y)
            opt.step(max_grad_norm=1.0)
        losses[precision] = m.forward_backward(x, y)
    assert losses["fp32"] < 1.0
    assert losses["bf16"] < 1.2 * losses["fp32"] + 0.05, losses


def test_precision_errors():
    cfg = ModelConfig.preset("nano")
    with pytest.raises(ValueError, match="precision must be one of"):
        Model(cfg, precision="fp16")
    assert Model(cfg, precision="bf16").weights == "bf16"


def test_fp32_master_weights_give_the_same_products(rng):
    """precision bf16 on float32 weights rounds each matrix to nearest bf16 before its product:
    the same numbers as a model storing those rounded weights as bf16."""
    cfg = ModelConfig.preset("nano")
    master = Model(cfg, seed=5, precision="bf16", weights="fp32")
    stored = Model(cfg, seed=5, precision="bf16", weights="bf16")  # init rounds the same draws
    for name, p in master.named_parameters():
        if p.ndim == 1 or name == "token_embd.weight":
            stored.set_parameter(name, p)
    x, y = _batch(rng, cfg, 2, 24)
    assert master.forward_backward(x, y) == stored.forward_backward(x, y)
    for name, g in master.named_grads():
        assert np.array_equal(g, stored._g[name]), name

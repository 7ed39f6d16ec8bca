"""The whole model: gradients by finite differences, float32 vs float64,
memorization, the golden losses, presets and input errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig, PRESETS, lr_schedule
from codette_np.config import PRESET_LABELS
from codette_np.kernels.tolerances import GOLDEN_TOL, MODEL_TOL
from codette_np.params import param_layout
from conftest import need_backend, rel_err

GOLDEN = Path(__file__).parent / "golden" / "nano_losses.json"
TINY = ModelConfig(vocab_size=37, d_model=12, n_layer=2, n_head=2, d_ff=20, context_length=16)


def _randomize(model, rng):
    """Give every tensor (biases and norms too) non-trivial values."""
    for name, p in model.named_parameters():
        p[:] = rng.standard_normal(p.shape) * (0.5 if p.ndim == 1 else 0.3)
        if name.endswith("norm.weight"):
            p += 1.0


def _batch(rng, cfg, B, T, ignore=True):
    tokens = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    if ignore:
        targets[0, :2] = -1
    return tokens, targets


def _check_gradients_fd(model, tokens, targets, rng, per_tensor, eps=1e-5, tol=1e-6):
    """Each tensor's analytic gradient against central differences on a few elements."""
    model.forward_backward(tokens, targets)
    grads = {n: g.copy() for n, g in model.named_grads()}
    for name, p in model.named_parameters():
        flat = p.reshape(-1)
        fd, an = [], []
        for i in rng.choice(flat.size, size=min(per_tensor, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            lp = model.forward_backward(tokens, targets)
            flat[i] = old - eps
            lm = model.forward_backward(tokens, targets)
            flat[i] = old
            fd.append((lp - lm) / (2 * eps))
            an.append(grads[name].reshape(-1)[i])
        fd, an = np.array(fd), np.array(an)
        err = np.linalg.norm(fd - an) / max(np.linalg.norm(fd), 1e-12)
        assert err < tol, f"{name}: relative error {err:.2e}"


def test_every_parameter_gradient_by_finite_differences(rng):
    """Whole model in float64: each tensor's analytic gradient vs central differences."""
    model = Model(TINY, seed=0, dtype=np.float64)
    _randomize(model, rng)
    tokens, targets = _batch(rng, TINY, 2, 7)
    _check_gradients_fd(model, tokens, targets, rng, per_tensor=6)


def test_nano_gradients_by_finite_differences(rng):
    """The nano preset itself (not only the tiny shape), a few elements per tensor."""
    cfg = ModelConfig.preset("nano")
    model = Model(cfg, seed=0, dtype=np.float64)
    _randomize(model, rng)
    tokens, targets = _batch(rng, cfg, 1, 9)
    _check_gradients_fd(model, tokens, targets, rng, per_tensor=3)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_float32_matches_float64_oracle(rng, backend):
    need_backend(backend)
    cfg = ModelConfig.preset("nano")
    m32 = Model(cfg, seed=3, backend=backend)
    m64 = Model(cfg, seed=3, dtype=np.float64)
    assert np.array_equal(m32.params.astype(np.float64), m64.params)
    tokens, targets = _batch(rng, cfg, 2, 33)
    l32 = m32.forward_backward(tokens, targets)
    l64 = m64.forward_backward(tokens, targets)
    assert abs(l32 - l64) / l64 < MODEL_TOL
    g32, g64 = dict(m32.named_grads()), dict(m64.named_grads())
    for name in g64:
        assert rel_err(g32[name], g64[name]) < MODEL_TOL, name
    assert rel_err(m32.forward(tokens), m64.forward(tokens)) < MODEL_TOL


def test_forward_equals_training_forward(rng):
    """forward()'s logits give the loss forward_backward() reports."""
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=1, dtype=np.float64)
    tokens, targets = _batch(rng, cfg, 2, 10)
    loss = m.forward_backward(tokens, targets)
    logits = m.forward(tokens).reshape(-1, cfg.vocab_size)
    t = targets.reshape(-1)
    ok = t >= 0
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    expect = (lse - logits[np.arange(len(t)), np.maximum(t, 0)])[ok].mean()
    assert abs(loss - expect) < 1e-12


def test_head_chunking_matches_unchunked(rng, monkeypatch):
    import codette_np.model as mm
    cfg = ModelConfig.preset("nano")
    tokens, targets = _batch(rng, cfg, 3, 20)
    ref_model = Model(cfg, seed=2, dtype=np.float64)
    l_ref = ref_model.forward_backward(tokens, targets)
    monkeypatch.setattr(mm, "HEAD_CHUNK_BYTES", 7 * cfg.vocab_size * 8)  # 7-row chunks
    m = Model(cfg, seed=2, dtype=np.float64)
    assert m.forward_backward(tokens, targets) == pytest.approx(l_ref, rel=1e-13)
    assert m._train_acts.head_rows == 7
    assert rel_err(m.grads, ref_model.grads) < 1e-12


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_activation_bytes_is_what_is_allocated(monkeypatch, chunk_rows):
    """activation_bytes counts exactly the arrays of the training Activations
    (with and without the LM-head chunk buffer)."""
    import codette_np.model as mm
    for cfg in (TINY, ModelConfig.preset("nano")):
        for dtype in (np.float32, np.float64):
            if chunk_rows:
                monkeypatch.setattr(mm, "HEAD_CHUNK_BYTES", chunk_rows * cfg.vocab_size * np.dtype(dtype).itemsize)
            a = mm.Activations(cfg, 3, 11, dtype, with_grad=True)
            assert (a.dwte_chunk is not None) == bool(chunk_rows)
            allocated = sum(v.nbytes for v in vars(a).values() if isinstance(v, np.ndarray))
            assert Model(cfg, dtype=dtype, init=False).activation_bytes(3, 11) == allocated


def test_nano_memorizes_a_batch(rng):
    cfg = ModelConfig.preset("nano")
    model = Model(cfg, seed=0)
    opt = AdamW(model, lr=3e-3, weight_decay=0.0)
    tokens = rng.integers(0, cfg.vocab_size, (4, 32)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)
    losses = []
    for step in range(300):
        losses.append(model.forward_backward(tokens, targets))
        if losses[-1] < 0.05:
            break
        opt.step(lr=lr_schedule(step, 3e-3, 3e-4, 20, 300), max_grad_norm=1.0)
    assert losses[-1] < 0.05, f"loss after {len(losses)} steps: {losses[-1]:.4f}"


def golden_run(dtype=np.float32, backend=None, steps=10):
    """The recorded run: nano, seed 0, one fixed batch (so the loss moves), AdamW
    with warmup, cosine decay, weight decay and clipping."""
    cfg = ModelConfig.preset("nano")
    model = Model(cfg, seed=0, dtype=dtype, backend=backend)
    opt = AdamW(model, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, (4, 65)).astype(np.int32)
    losses = []
    for s in range(steps):
        losses.append(model.forward_backward(data[:, :-1], data[:, 1:]))
        opt.step(lr=lr_schedule(s, 3e-3, 3e-4, 3, steps), max_grad_norm=1.0)
    return losses


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_golden_losses(backend):
    """First 10 losses of the fixed-seed nano run, recorded by the float64 oracle."""
    need_backend(backend)
    expect = json.loads(GOLDEN.read_text())["losses"]
    got = golden_run(backend=backend)
    for i, (g, e) in enumerate(zip(got, expect)):
        assert abs(g - e) / e < GOLDEN_TOL, f"step {i}: {g} vs recorded {e}"


def test_golden_file_is_the_float64_run():
    expect = json.loads(GOLDEN.read_text())["losses"]
    got = golden_run(dtype=np.float64)
    assert np.allclose(got, expect, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(PRESET_LABELS))
def test_promised_sizes_within_5_percent(name):
    cfg = ModelConfig.preset(name)
    n = sum(int(np.prod(s)) for _, s in param_layout(cfg))
    assert n == cfg.n_params
    label = PRESET_LABELS[name]
    assert abs(n - label) / label <= 0.05, f"{name}: {n / 1e9:.3f}B vs label {label / 1e9}B"
    assert (cfg.vocab_size, cfg.context_length, cfg.n_head, cfg.d_ff) == (32768, 2048, 32, 4 * cfg.d_model)


def test_small_presets_sizes():
    n = {k: ModelConfig.preset(k).n_params for k in ("nano", "tiny", "micro", "mini")}
    assert n["nano"] < 1_000_000
    assert 1e6 <= n["tiny"] <= 2e6
    assert 5e6 <= n["micro"] <= 15e6
    assert 30e6 <= n["mini"] <= 60e6


def test_layout_names_and_flat_views():
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert len(names) == 3 + 16 * cfg.n_layer
    assert names[0] == "token_embd.weight" and names[-1] == "output_norm.bias"
    assert "output.weight" not in names
    p = dict(m.named_parameters())
    assert p["blk.1.ffn_up.weight"].shape == (cfg.d_ff, cfg.d_model)
    assert p["blk.1.ffn_down.weight"].shape == (cfg.d_model, cfg.d_ff)
    for name, v in p.items():
        assert np.shares_memory(v, m.params), name
    assert sum(v.size for v in p.values()) == m.params.size == cfg.n_params
    for name, v in m.named_grads():
        assert np.shares_memory(v, m.grads) and v.shape == p[name].shape


def test_init_policy():
    cfg = ModelConfig.preset("nano")
    p = dict(Model(cfg, seed=0).named_parameters())
    assert np.all(p["blk.0.attn_norm.weight"] == 1) and np.all(p["blk.0.attn_q.bias"] == 0)
    assert abs(p["token_embd.weight"].std() - 0.02) < 0.002
    scaled = 0.02 / np.sqrt(2 * cfg.n_layer)
    assert abs(p["blk.0.ffn_down.weight"].std() - scaled) < 0.1 * scaled
    assert abs(p["blk.0.attn_output.weight"].std() - scaled) < 0.1 * scaled


def test_bad_input_errors():
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=0)
    ok = np.zeros((2, 4), dtype=np.int32)
    with pytest.raises(ValueError, match="outside"):
        m.forward(np.full((1, 4), cfg.vocab_size, dtype=np.int32))
    with pytest.raises(ValueError, match="outside"):
        m.forward(np.full((1, 4), -1, dtype=np.int32))
    with pytest.raises(TypeError, match="integer"):
        m.forward(ok.astype(np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        m.forward([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        m.forward(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="context_length"):
        m.forward(np.zeros((1, cfg.context_length + 1), dtype=np.int32))
    with pytest.raises(ValueError, match="targets shape"):
        m.forward_backward(ok, np.zeros((2, 5), dtype=np.int32))
    with pytest.raises(ValueError, match="all -1"):
        m.forward_backward(ok, np.full((2, 4), -1, dtype=np.int32))
    with pytest.raises(ValueError, match="targets holds id"):
        m.forward_backward(ok, np.full((2, 4), -2, dtype=np.int32))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=10, n_head=3)
    with pytest.raises(TypeError):
        Model({"d_model": 4})
    with pytest.raises(ValueError, match="unknown backend"):
        Model(cfg, backend="cuda")


def test_int64_tokens_accepted():
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=0)
    t = np.arange(8, dtype=np.int64).reshape(1, 8)
    assert np.array_equal(m.forward(t), m.forward(t.astype(np.int32)))


def test_presets_registry():
    assert set(PRESETS) == {"nano", "tiny", "micro", "mini", "small", "medium", "large"}
    assert ModelConfig.preset("medium").head_dim == 80


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_recompute_gives_the_same_bits_with_fewer_buffers(backend):
    """Backward that re-runs each layer's forward from its saved input: the same loss, logits
    and every gradient bit for bit, with the per-layer activations kept for one layer only."""
    need_backend(backend)
    cfg = ModelConfig.preset("nano").replace(n_layer=3)
    rng = np.random.default_rng(3)
    x = rng.integers(0, cfg.vocab_size, (2, 48)).astype(np.int32)
    y = np.where(rng.random((2, 48)) < 0.3, -1, rng.integers(0, cfg.vocab_size, (2, 48))).astype(np.int32)
    out = []
    for recompute in (False, True):
        m = Model(cfg, seed=1, backend=backend, recompute=recompute)
        loss = m.forward_backward(x, y)
        out.append((loss, m.grads.copy(), m.forward(x).copy(), m.activation_bytes(2, 48)))
        assert m._train_acts.ln1.shape[0] == (1 if recompute else cfg.n_layer)
    (l0, g0, f0, b0), (l1, g1, f1, b1) = out
    assert l0 == l1 and np.array_equal(g0, g1) and np.array_equal(f0, f1)
    assert b1 < 0.7 * b0

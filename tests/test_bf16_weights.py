"""bf16 weights (Model(weights="bf16")): the decode and stochastic-rounding kernels on every
backend against the float64 reference, the model's products on decoded weights, the
optimizer's chunked update, checkpoints and export."""

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig
from codette_np import optim
from codette_np.kernels import ref
from codette_np.params import ParamLayout, stored_bf16
from conftest import need_backend

HYPER = (1e-3, 0.9, 0.95, 1e-8, 0.1)


def _kernels():
    out = [("numpy", None)]
    for name in ("c", "numba"):
        try:
            out.append((name, need_backend(name)))
        except pytest.skip.Exception:
            pass
    return out


def _floats(rng, n):
    """Values of every magnitude and both signs, with exact bf16 values and zeros among them."""
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(np.float32)
    x[::7] = ref.bf16_decode(ref.bf16_round_nearest(x[::7])).astype(np.float32)  # already bf16
    x[::11] = 0.0
    x[3] = -0.0
    return x


@pytest.mark.parametrize("name,mod", _kernels())
def test_decode_and_stochastic_rounding_equal_the_reference(rng, name, mod):
    from codette_np import backend

    K = backend.get(name)
    n = 70_001
    x = _floats(rng, n)
    expect = np.empty(n, np.uint16)
    # the reference's rounding works on float64 distances, independently of the bit trick
    ref.f32_to_bf16_sr(expect, x, 9, 17, 12345)
    got = np.empty(n, np.uint16)
    K.f32_to_bf16_sr(got, x, 9, 17, 12345)
    assert np.array_equal(got, expect), f"{name}: {np.count_nonzero(got != expect)} of {n} differ"
    dec = np.empty(n, np.float32)
    K.bf16_to_f32(dec, got)
    # each value lands on one of its two bf16 neighbours
    lo = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    hi = ((x.view(np.uint32) & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32)
    assert np.all((dec == lo) | (dec == hi))
    assert np.array_equal(dec[::7], x[::7])  # exact bf16 values stay
    # the bits are a pure function of (seed, step, index): a tensor's tail alone gives the same
    part = np.empty(n - 1000, np.uint16)
    K.f32_to_bf16_sr(part, x[1000:], 9, 17, 12345 + 1000)
    assert np.array_equal(part, got[1000:])
    other = np.empty(n, np.uint16)
    K.f32_to_bf16_sr(other, x, 9, 18, 12345)  # the next step rounds differently
    assert not np.array_equal(other, got)


def test_weight_rounding_is_unbiased():
    n = 200_000
    for v in (1.0 + 1 / 300, -0.0123456, 3.3e-5):
        x = np.full(n, v, np.float32)
        h = np.empty(n, np.uint16)
        ref.f32_to_bf16_sr(h, x, 1, 1, 0)
        spacing = 2.0 ** (np.floor(np.log2(abs(v))) - 7)
        assert abs(ref.bf16_decode(h).mean() - float(x[0])) < 4 * spacing / np.sqrt(n), v


def test_round_nearest_ties_to_even():
    x = np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-9, -1.5, 0.0], np.float32)
    got = ref.bf16_decode(ref.bf16_round_nearest(x))
    assert list(got) == [1.0, 1.0 + 4 * 2**-8, 1.0, -1.5, 0.0]


def test_stored_bf16_is_the_blocks_matrices():
    cfg = ModelConfig.preset("nano")
    lay = ParamLayout(cfg)
    where, n32, n16 = lay.stores("bf16")
    assert n32 + n16 == lay.total
    assert {n for n, (st, _) in where.items() if st == "bf16"} == {
        s.name for s in lay.slots if s.name.startswith("blk.") and len(s.shape) == 2}
    assert not stored_bf16("token_embd.weight", (512, 64))
    assert lay.stores("fp32")[1:] == (lay.total, 0)
    with pytest.raises(ValueError, match="weights must be one of"):
        Model(cfg, weights="fp16")
    with pytest.raises(ValueError, match="needs dtype float32"):
        Model(cfg, weights="bf16", dtype=np.float64)


def _pair(cfg, backend, **kw):
    """A bf16-weight model and a float32 model holding exactly its decoded weights."""
    mb = Model(cfg, seed=1, weights="bf16", backend=backend, **kw)
    mf = Model(cfg, seed=1, init=False, backend=backend, **kw)
    for name, a in mb.parameters_f32().items():
        mf.set_parameter(name, a)
    return mb, mf


@pytest.mark.parametrize("recompute", [False, True])
def test_products_run_on_the_decoded_weights(rng, recompute):
    cfg = ModelConfig.preset("nano")
    for name, _ in _kernels():
        mb, mf = _pair(cfg, name, recompute=recompute)
        x = rng.integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
        y = np.roll(x, -1, 1)
        assert np.array_equal(mb.forward(x), mf.forward(x)), name
        assert mb.forward_backward(x, y) == mf.forward_backward(x, y), name
        assert np.array_equal(mb.grads, mf.grads), name
        cb, cf = mb.new_cache(), mf.new_cache()
        assert np.array_equal(mb.forward_cached(cb, x[0]), mf.forward_cached(cf, x[0])), name
    mats = sum(s.size for s in mb.layout.slots if s.name.startswith("blk.") and len(s.shape) == 2)
    assert mb.params_bf16.nbytes == 2 * mats and mb.params.nbytes == mf.params.nbytes - 4 * mats


@pytest.mark.parametrize("state", ["fp32", "bf16", "q8"])
def test_optimizer_updates_bf16_weights_as_the_reference(rng, state):
    """One step on a bf16-weight model against an independent float64 computation: decode,
    the reference update of the tensor's moment format, the reference rounding."""
    cfg = ModelConfig.preset("nano")
    x = rng.integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    y = np.roll(x, -1, 1)
    for name, _ in _kernels():
        m = Model(cfg, seed=2, weights="bf16", backend=name)
        opt = AdamW(m, *HYPER[:1], betas=HYPER[1:3], eps=HYPER[3], weight_decay=HYPER[4], state=state, seed=5)
        m.forward_backward(x, y)
        opt.step(lr=1e-3)  # moments nonzero before the compared step
        m.forward_backward(x, y)
        before = {n: m.stored(n).copy() for n, _ in m.named_parameters()}
        moments = {k: a.copy() for k, a in opt.state_arrays().items()}
        opt.step(lr=1e-3)
        for sl, kind, off, blk, _, _ in opt._plan:
            if not stored_bf16(sl.name, sl.shape):
                continue
            p64 = ref.bf16_decode(before[sl.name])
            g = m.grads[sl.offset:sl.offset + sl.size].astype(np.float64)
            args = (True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 2, 1.0)
            if kind == "fp32":
                ref.adamw_step(p64, g, moments["m"][off:off + sl.size].astype(np.float64),
                               moments["v"][off:off + sl.size].astype(np.float64), *args)
            elif kind == "bf16":
                ref.adamw_step_bf16(p64, g, moments["m_low"][off:off + sl.size].copy(),
                                    moments["v_low"][off:off + sl.size].copy(), *args, 5, sl.offset)
            else:
                nb = -(-sl.size // ref.Q8_BLOCK)
                ref.adamw_step_q8(p64, g, moments["m_low"][off:off + sl.size].copy(),
                                  moments["v_low"][off:off + sl.size].copy(),
                                  moments["m_absmax"][blk:blk + nb].copy(),
                                  moments["v_absmax"][blk:blk + nb].copy(), *args, 5, sl.offset)
            expect = np.empty(sl.size, np.uint16)
            ref.f32_to_bf16_sr(expect, p64.astype(np.float32), 5, 2, sl.offset)
            got = m.stored(sl.name)
            diff = np.abs(got.astype(np.int32) - expect.astype(np.int32))
            # float32 vs float64 arithmetic may put a value on the other side of a rounding
            # threshold: one bf16 step. Where the update nearly cancels the weight, the float32
            # rounding of the operands (a few ulps of |p|) is many bf16 steps of the tiny result:
            # there the values agree within those ulps and one bf16 step.
            far = np.nonzero(diff > 1)[0]
            p_old = np.abs(ref.bf16_decode(before[sl.name].ravel()[far]))
            step_at = np.abs(ref.bf16_decode(expect[far] + np.uint16(1)) - ref.bf16_decode(expect[far]))
            gap = np.abs(ref.bf16_decode(got.ravel()[far]) - ref.bf16_decode(expect[far]))
            assert np.all(gap <= step_at + 4 * np.spacing(p_old.astype(np.float32))), (name, sl.name, far)
            assert np.count_nonzero(diff) <= max(2, sl.size // 200), (name, sl.name)
            assert not np.array_equal(got, before[sl.name])


def test_chunked_update_is_the_whole_tensor_update(rng, monkeypatch):
    """The chunk size is invisible: the bits and the 8-bit blocks are indexed by element."""
    cfg = ModelConfig.preset("nano")
    x = rng.integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    y = np.roll(x, -1, 1)
    out = []
    for chunk in (optim.WEIGHT_CHUNK, 512):
        monkeypatch.setattr(optim, "WEIGHT_CHUNK", chunk)
        m = Model(cfg, seed=3, weights="bf16")
        opt = AdamW(m, state="q8", seed=1)
        for _ in range(3):
            m.forward_backward(x, y)
            opt.step(lr=1e-3, max_grad_norm=1.0)
        out.append((m.params_bf16.copy(), m.params.copy(), opt.m_low.copy(), opt.m_absmax.copy()))
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_fused_update_with_bf16_weights_is_the_same_update(rng):
    """The fused model's matrix gradients overwrite the decoded weights they follow; without
    clipping its steps equal the full-gradient model's bit for bit."""
    cfg = ModelConfig.preset("nano")
    x = rng.integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    y = np.roll(x, -1, 1)
    full = Model(cfg, seed=6, weights="bf16")
    fused = Model(cfg, seed=6, weights="bf16", fused_update=True, recompute=True)
    o_full, o_fused = AdamW(full, state="q8", seed=2), AdamW(fused, state="q8", seed=2)
    for _ in range(3):
        loss = full.forward_backward(x, y)
        o_full.step(lr=1e-3)
        loss_fused, norm = o_fused.fused_step(x, y, lr=1e-3)
        assert loss == loss_fused and norm == pytest.approx(o_full.last_grad_norm, rel=1e-6)
    assert np.array_equal(full.params_bf16, fused.params_bf16)
    assert np.array_equal(full.params, fused.params)
    assert fused.grad_buffer_bytes() < 0.5 * full.grad_buffer_bytes()


def test_nano_trains_with_bf16_weights_near_fp32():
    cfg = ModelConfig.preset("nano")
    rng = np.random.default_rng(0)
    seq = np.tile(rng.integers(0, 50, 17), 4).astype(np.int32)  # a pattern to learn
    x, y = seq[None, :-1].repeat(4, 0), seq[None, 1:].repeat(4, 0)
    losses = {}
    for weights in ("fp32", "bf16"):
        m = Model(cfg, seed=0, weights=weights)
        opt = AdamW(m, lr=3e-3, state="q8" if weights == "bf16" else "fp32")
        for _ in range(60):
            m.forward_backward(x, y)
            opt.step(max_grad_norm=1.0)
        losses[weights] = m.forward_backward(x, y)
    assert losses["fp32"] < 1.0  # it learned
    assert losses["bf16"] < 1.5 * losses["fp32"] + 0.05, losses


def test_checkpoint_and_export_of_bf16_weights(tmp_path):
    from codette_np import checkpoint as ck
    from codette_np import data, gguf_io
    from codette_np.tokenizer import train_or_load

    tok = train_or_load([e["text"] for e in data.generate(300, seed=0)], 400, tmp_path / "tokenizer")
    cfg = ModelConfig.preset("nano", vocab_size=tok.vocab_size)
    m = Model(cfg, seed=4, weights="bf16", fused_update=True)
    path = tmp_path / "m.ckpt"
    ck.save_checkpoint(path, {"config": cfg.to_dict(), "weights": "bf16"},
                       {**ck.model_blobs(m), "tokenizer": np.frombuffer(tok.model_proto, np.uint8)})
    back, _, head = ck.load_model_and_tokenizer(path)
    assert back.weights == "bf16"
    assert np.array_equal(back.params_bf16, m.params_bf16) and np.array_equal(back.params, m.params)
    out = tmp_path / "m.gguf"
    gguf_io.write_gguf(out, cfg, m.parameters_f32(), tok, dtype="f32")
    _, tensors, _, _ = gguf_io.read_gguf(out)
    for name, a in m.parameters_f32().items():
        assert np.array_equal(np.asarray(tensors[name]), a), name

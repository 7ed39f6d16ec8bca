"""Low-precision AdamW moments (bf16 and 8-bit blockwise): the codes, stochastic rounding,
every backend against the float64 reference, and the optimizer's formats end to end."""

import subprocess
import sys

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig
from codette_np.kernels import ref
from codette_np.optim import state_bytes_per_param
from codette_np.kernels.tolerances import KERNEL_TOL
from conftest import need_backend, rel_err

HYPER = (1e-3, 0.9, 0.95, 1e-8, 0.1)


def _backends():
    out = []
    for name in ("c", "numba"):
        try:
            out.append(need_backend(name))
        except pytest.skip.Exception:
            pass
    return out


def test_code_tables_are_small_floats_over_fifteen_octaves():
    vm, vv = ref.q8_values(ref.Q8_M_EMIN, ref.Q8_M_MB), ref.q8_values(ref.Q8_V_EMIN, ref.Q8_V_MB)
    used_m, used_v = vm[:(-ref.Q8_M_EMIN << ref.Q8_M_MB) + 1], vv[:(-ref.Q8_V_EMIN << ref.Q8_V_MB) + 1]
    assert len(used_m) <= 128 and len(used_v) <= 256  # m keeps a sign bit
    assert used_m[-1] == 1.0 and used_v[-1] == 1.0 and used_m[0] == 0 and used_v[0] == 0
    assert np.all(np.diff(used_m) > 0) and np.all(np.diff(used_v) > 0)
    # neighbouring codes at most 1/8 (m) and 1/16 (v) apart relative to the smaller
    assert np.max(np.diff(used_m[1:]) / used_m[1:-1]) <= 1 / 8 + 1e-12
    assert np.max(np.diff(used_v[1:]) / used_v[1:-1]) <= 1 / 16 + 1e-12
    # both span 15 octaves below 1.0 (m as many as v: Adam divides m by sqrt(v))
    assert used_m[1] == 2.0 ** -15 * 9 / 8 and used_v[1] == 2.0 ** -15 * 17 / 16


def test_version_1_m_codes_map_to_their_nearest():
    """A checkpoint of code version 1 (m: 4 mantissa bits over 7 octaves) resumes with each m
    code replaced by this version's nearest, the sign kept."""
    lut = ref.q8_m_codes_from_v1()
    old = np.arange((7 << 4) + 1)  # version 1's codes up to 1.0
    u_old = np.where(old == 0, 0.0, 2.0 ** ((old >> 4) - 7) * (1 + (old & 15) / 16))
    u_new = ref.q8_decode_m(lut[old].astype(np.uint8))
    assert u_new[0] == 0 and u_new[-1] == 1.0
    assert np.all(np.abs(u_new[1:] - u_old[1:]) <= u_old[1:] / 16 + 1e-15)  # half a step of 1/8
    assert np.all(u_new[old % 2 == 0] == u_old[old % 2 == 0])  # the representable ones exactly
    assert np.all(ref.q8_decode_m(lut[old + 128].astype(np.uint8)) == -u_new)


def test_c_codes_and_keys_equal_the_reference():
    need_backend("c")
    from codette_np.kernels.cbackend import lib
    codes = np.arange(256, dtype=np.uint8)
    assert [lib.q8_decode_m(int(x)) for x in codes] == list(ref.q8_decode_m(codes).astype(np.float32))
    assert [lib.q8_decode_v(int(x)) for x in codes] == list(ref.q8_decode_v(codes).astype(np.float32))
    for seed, step, stream in ((0, 1, 0), (7, 123456, 1), (2**62 + 5, 3, 0)):
        assert lib.sr_key(seed, step, stream) == ref.sr_key(seed, step, stream)
    assert lib.Q8_BLOCK == ref.Q8_BLOCK


def test_stochastic_rounding_is_unbiased(rng):
    n = 200_000
    r = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    for u in (0.3, 0.0123, 0.77, 2.0 ** -17):  # between codes, and under the smallest m code
        codes = ref.q8_encode(np.full(n, u), ref.Q8_M_EMIN, r, floor_up=False, mb=ref.Q8_M_MB)
        assert len(np.unique(codes)) <= 2
        mean = ref.q8_decode_m(codes).mean()
        assert abs(mean - u) < 4 * 0.07 * u / np.sqrt(n) + 1e-12 + (0.02 * u if u < 0.008 else 0), (u, mean)
    x = np.full(n, 1.0 + 1 / 300)
    mean = ref.bf16_decode(ref.bf16_round_sr(x, r)).mean()
    assert abs(mean - x[0]) < 4 * 2**-8 / np.sqrt(n)
    # v never rounds a positive value to 0
    assert np.all(ref.q8_encode(np.full(100, 1e-9), ref.Q8_V_EMIN, r[:100], floor_up=True, mb=ref.Q8_V_MB) == 1)


def _state(rng, n, fmt):
    """A random optimizer state of format fmt for n elements, plus params and grads."""
    p = rng.standard_normal(n).astype(np.float32) * 0.05
    g = rng.standard_normal(n).astype(np.float32) * np.exp(rng.standard_normal(n)).astype(np.float32)
    if fmt == "bf16":
        m = (rng.standard_normal(n).astype(np.float32) * 0.01).view(np.uint32) >> 16
        v = (np.abs(rng.standard_normal(n)).astype(np.float32) * 1e-4).view(np.uint32) >> 16
        return p, g, [m.astype(np.uint16), v.astype(np.uint16)]
    nb = -(-n // ref.Q8_BLOCK)
    m = rng.integers(0, 256, n).astype(np.uint8)
    m[(m & 127) > 112] &= 0xF0  # only codes up to 1.0 occur
    v = rng.integers(0, 241, n).astype(np.uint8)
    return p, g, [m, v, (rng.random(nb) * 0.01).astype(np.float32), (rng.random(nb) * 1e-4).astype(np.float32)]


@pytest.mark.parametrize("fmt", ["bf16", "q8"])
@pytest.mark.parametrize("n", [1, 255, 257, 70_001])
def test_lowp_adamw_backends_match_the_reference(rng, fmt, n):
    """One step from the same state: params within fp32 rounding of the float64 update; the
    stored moments identical to the reference's codes except where fp32 and float64 land on
    opposite sides of a rounding decision (rare, and then one code apart)."""
    p, g, st = _state(rng, n, fmt)
    step, seed, offset = 5, 11, 1000
    want_p, want_st = p.copy(), [a.copy() for a in st]
    fn = "adamw_step_" + fmt
    getattr(ref, fn)(want_p, g, *want_st, True, *HYPER, step, 0.8, seed, offset)
    for K in _backends():
        got_p, got_st = p.copy(), [a.copy() for a in st]
        getattr(K, fn)(got_p, g, *got_st, True, *HYPER, step, 0.8, seed, offset)
        assert rel_err(got_p, want_p) <= KERNEL_TOL[fn], K.NAME
        for a, b in zip(got_st[:2], want_st[:2]):
            diff = a.astype(np.int64) - b.astype(np.int64)
            if fmt == "q8":
                diff = np.where((a ^ b) & 128 & ((a & 127) > 0) & ((b & 127) > 0), 999, diff)  # sign flips
            assert np.mean(diff != 0) <= max(1e-3, 1.0 / n), K.NAME
            assert np.all(np.abs(diff) <= 1), K.NAME
        for a, b in zip(got_st[2:], want_st[2:]):
            assert rel_err(a, b) <= 1e-6, K.NAME


@pytest.mark.parametrize("n", [1, 255, 257, 70_001])
def test_q8_update_of_bf16_weights_matches_the_reference(rng, n):
    """The one-pass kernel for bf16 weights against the float64 reference: weights one bf16 step
    apart at most, and only where float32 and float64 round to opposite sides (rare)."""
    p, g, st = _state(rng, n, "q8")
    w = (p.view(np.uint32) >> 16).astype(np.uint16)  # (n,) bf16 bits
    step, seed, offset = 5, 11, 1000
    want_w, want_st = w.copy(), [a.copy() for a in st]
    ref.adamw_step_q8_bf16w(want_w, g, *want_st, True, *HYPER, step, 0.8, seed, offset)
    assert np.mean(want_w != w) > 0.5  # the weights moved
    for K in _backends():
        got_w, got_st = w.copy(), [a.copy() for a in st]
        K.adamw_step_q8_bf16w(got_w, g, *got_st, True, *HYPER, step, 0.8, seed, offset)
        assert rel_err(ref.bf16_decode(got_w), ref.bf16_decode(want_w)) <= KERNEL_TOL["adamw_step_q8_bf16w"]
        diff = got_w.astype(np.int64) - want_w.astype(np.int64)
        assert np.all(np.abs(diff) <= 1) and np.mean(diff != 0) <= max(1e-3, 1.0 / n), K.NAME
        for a, b in zip(got_st[:2], want_st[:2]):
            assert np.mean(a != b) <= max(1e-3, 1.0 / n), K.NAME
        for a, b in zip(got_st[2:], want_st[2:]):
            assert rel_err(a, b) <= 1e-6, K.NAME


@pytest.mark.parametrize("n", [1, 257, 70_001])
def test_q8_update_of_bf16_weights_is_decode_update_round_bit_for_bit(rng, n):
    """On each backend, the one-pass kernel gives the bits of its three-pass equivalent:
    bf16_to_f32, adamw_step_q8 in float32, f32_to_bf16_sr (the same stream-2 bits)."""
    p, g, st = _state(rng, n, "q8")
    w = (p.view(np.uint32) >> 16).astype(np.uint16)
    step, seed, offset = 7, 3, 4096
    for K in _backends():
        one_w, one_st = w.copy(), [a.copy() for a in st]
        K.adamw_step_q8_bf16w(one_w, g, *one_st, True, *HYPER, step, 1.0, seed, offset)
        three_w, three_st, x = w.copy(), [a.copy() for a in st], np.empty(n, np.float32)
        K.bf16_to_f32(x, three_w)
        K.adamw_step_q8(x, g, *three_st, True, *HYPER, step, 1.0, seed, offset)
        K.f32_to_bf16_sr(three_w, x, seed, step, offset)
        assert np.array_equal(one_w, three_w), K.NAME
        for a, b in zip(one_st, three_st):
            assert np.array_equal(a, b), K.NAME


@pytest.mark.parametrize("fmt", ["bf16", "q8"])
def test_lowp_adamw_follows_fp32_adamw(rng, fmt):
    """200 steps on noisy quadratic-like gradients: the parameters stay within a small
    fraction of their movement from those of fp32 AdamW."""
    n = 4096
    p0 = rng.standard_normal(n).astype(np.float32)
    target = rng.standard_normal(n).astype(np.float32)
    runs = {}
    for kind in ("fp32", fmt):
        p = p0.copy()
        if kind == "fp32":
            st = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
        else:
            st = _state(rng, n, fmt)[2]
            for a in st:
                a[:] = 0
        noise = np.random.default_rng(5)
        for t in range(1, 201):
            g = ((p - target) + 0.3 * noise.standard_normal(n)).astype(np.float32)
            if kind == "fp32":
                ref.adamw_step(p, g, *st, True, 1e-2, 0.9, 0.95, 1e-8, 0.0, t, 1.0)
            else:
                getattr(ref, "adamw_step_" + fmt)(p, g, *st, True, 1e-2, 0.9, 0.95, 1e-8, 0.0, t, 1.0, 3, 0)
        runs[kind] = p
    moved = np.linalg.norm(runs["fp32"] - p0)
    assert np.linalg.norm(runs[fmt] - runs["fp32"]) < 0.05 * moved


def test_c_lowp_update_is_the_same_for_any_thread_count():
    need_backend("c")
    code = ("import numpy as np, sys\n"
            "from codette_np.kernels import cbackend as c\n"
            "r = np.random.default_rng(0); n = 300_001\n"
            "p = r.standard_normal(n).astype(np.float32); g = r.standard_normal(n).astype(np.float32)\n"
            "m = np.zeros(n, np.uint8); v = np.zeros(n, np.uint8); nb = -(-n // 256)\n"
            "am = np.zeros(nb, np.float32); av = np.zeros(nb, np.float32)\n"
            "m16 = np.zeros(n, np.uint16); v16 = np.zeros(n, np.uint16); p2 = p.copy()\n"
            "w = (p.view(np.uint32) >> 16).astype(np.uint16); mw, vw, amw, avw = m.copy(), v.copy(), am.copy(), av.copy()\n"
            "for t in (1, 2, 3):\n"
            "    c.adamw_step_q8(p, g, m, v, am, av, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 1.0, 9, 0)\n"
            "    c.adamw_step_bf16(p2, g, m16, v16, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 1.0, 9, 0)\n"
            "    c.adamw_step_q8_bf16w(w, g, mw, vw, amw, avw, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 1.0, 9, 5)\n"
            "import hashlib; h = hashlib.sha256()\n"
            "[h.update(a.tobytes()) for a in (p, m, v, am, av, p2, m16, v16, w, mw, vw, amw, avw)]\n"
            "print(h.hexdigest())\n")
    out = set()
    for threads in ("1", "2", "3"):
        import os
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout)
    assert len(out) == 1


def test_optimizer_formats_bytes_and_small_tensors():
    cfg = ModelConfig.preset("micro")
    m = Model(cfg, seed=0)
    sizes = {}
    for fmt in ("fp32", "bf16", "q8"):
        opt = AdamW(m, state=fmt)
        sizes[fmt] = opt.nbytes / cfg.n_params
        assert sizes[fmt] == pytest.approx(state_bytes_per_param(fmt, m.layout))
    assert sizes["fp32"] == 8.0 and 4.0 < sizes["bf16"] < 4.05 and 2.03 < sizes["q8"] < 2.08
    small = sum(s.size for s in m.layout.slots if s.size < 4096)
    assert AdamW(m, state="q8").m.shape == (small,)  # biases and norms keep float32 moments
    with pytest.raises(ValueError, match="optimizer state must be one of"):
        AdamW(m, state="int4")


def test_a_version_1_q8_state_loads_with_its_m_codes_upgraded():
    """A state saved before the current m code (no "q8_code": version 1) loads with each m code
    mapped to its nearest in this version; v, the scales and a current state load unchanged."""
    cfg = ModelConfig.preset("nano")
    model = Model(cfg, seed=0)
    x = np.random.default_rng(1).integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    opt = AdamW(model, lr=1e-3, state="q8", seed=4)
    for _ in range(2):
        model.forward_backward(x, x)
        opt.step()
    saved = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state_dict().items()}
    assert saved["q8_code"] == ref.Q8_CODE
    again = AdamW(model, lr=1e-3, state="q8", seed=4)
    again.load_state_dict(saved)
    assert np.array_equal(again.m_low, saved["m_low"])
    old = {k: v for k, v in saved.items() if k != "q8_code"}
    old["m_low"] = np.random.default_rng(2).integers(0, 113, saved["m_low"].shape).astype(np.uint8)
    old["m_low"] |= np.uint8(128) * (np.arange(old["m_low"].size) % 2).astype(np.uint8)  # both signs
    again.load_state_dict(old)
    assert np.array_equal(again.m_low, ref.q8_m_codes_from_v1()[old["m_low"]])
    assert np.array_equal(again.v_low, saved["v_low"]) and np.array_equal(again.m_absmax, saved["m_absmax"])
    with pytest.raises(ValueError, match="code version 9"):
        again.load_state_dict({**saved, "q8_code": 9})


@pytest.mark.parametrize("fmt", ["bf16", "q8"])
def test_nano_trains_with_lowp_moments_and_the_state_round_trips(fmt):
    cfg = ModelConfig.preset("nano")
    x = np.random.default_rng(1).integers(0, cfg.vocab_size, (4, 32)).astype(np.int32)
    losses = {}
    for kind in ("fp32", fmt):
        model = Model(cfg, seed=0)
        opt = AdamW(model, lr=3e-3, state=kind, seed=4)
        for _ in range(30):
            losses[kind] = model.forward_backward(x, x)
            opt.step(max_grad_norm=1.0)
    assert losses[fmt] < 0.9 * np.log(cfg.vocab_size)  # it learned
    assert abs(losses[fmt] - losses["fp32"]) < 0.02 * losses["fp32"]
    # state_dict -> load_state_dict -> the next steps are bit-identical
    sd = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state_dict().items()}
    p_saved = model.params.copy()
    runs = []
    for _ in range(2):
        model.params[:] = p_saved
        o2 = AdamW(model, lr=3e-3, state=fmt)
        o2.load_state_dict(sd)
        for _ in range(3):
            model.forward_backward(x, x)
            o2.step(max_grad_norm=1.0)
        runs.append((model.params.copy(), *(a.copy() for a in o2.state_arrays().values())))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    with pytest.raises(ValueError, match="optimizer state is"):
        AdamW(model, state="fp32").load_state_dict(sd)


@pytest.mark.parametrize("fmt", ["fp32", "q8"])
def test_update_fused_into_backward_is_the_same_update(fmt):
    """Without clipping, updating each layer as its gradients complete (one layer's gradient
    buffer, activations recomputed) gives the parameters of the ordinary step, bit for bit."""
    cfg = ModelConfig.preset("nano").replace(n_layer=3)
    x = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 64)).astype(np.int32)
    out = []
    for fused in (False, True):
        model = Model(cfg, seed=0, fused_update=fused, recompute=fused)
        opt = AdamW(model, lr=3e-3, state=fmt)
        for _ in range(4):
            if fused:
                opt.fused_step(x, x)
            else:
                model.forward_backward(x, x)
                opt.step()
        out.append(model.params.copy())
        assert (model.grads is None) == fused
    assert np.array_equal(*out)
    with pytest.raises(RuntimeError, match="fused_step"):
        opt.step()
    with pytest.raises(ValueError, match="on_grads"):
        model.forward_backward(x, x)


def test_fused_step_clips_by_the_previous_norm():
    cfg = ModelConfig.preset("nano")
    x = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 32)).astype(np.int32)
    fused = Model(cfg, seed=0, fused_update=True)
    ofused = AdamW(fused, lr=1e-2)
    _, n1 = ofused.fused_step(x, x, max_grad_norm=1e-3, clip="previous")  # step 1: no norm before it, no clipping
    _, n2 = ofused.fused_step(x, x, max_grad_norm=1e-3, clip="previous")  # step 2: scaled by 1e-3 / n1
    plain = Model(cfg, seed=0)
    oplain = AdamW(plain, lr=1e-2)
    plain.forward_backward(x, x)
    assert oplain.step() == pytest.approx(n1, rel=1e-9)
    plain.forward_backward(x, x)
    plain.grads *= np.float32(1e-3 / (n1 + 1e-6))
    oplain.step()
    assert rel_err(fused.params, plain.params) < 1e-6
    assert ofused.last_grad_norm == n2


@pytest.mark.parametrize("fmt", ["fp32", "q8"])
def test_fused_step_with_exact_clipping_is_the_clipped_full_buffer_step(fmt):
    """clip="exact" measures the norm in a first pass: the steps equal the full-buffer
    optimizer's, which clips each step by its own norm (up to the order of the norm's sum)."""
    cfg = ModelConfig.preset("nano")
    rng = np.random.default_rng(3)
    fused = Model(cfg, seed=0, fused_update=True, recompute=True)
    plain = Model(cfg, seed=0)
    ofused, oplain = AdamW(fused, lr=1e-2, state=fmt, seed=4), AdamW(plain, lr=1e-2, state=fmt, seed=4)
    for _ in range(4):
        x = rng.integers(0, cfg.vocab_size, (2, 32)).astype(np.int32)
        loss_f, norm_f = ofused.fused_step(x, x, max_grad_norm=0.5)
        loss_p = plain.forward_backward(x, x)
        norm_p = oplain.step(max_grad_norm=0.5)
        assert norm_p > 0.5  # clipped
        assert loss_f == pytest.approx(loss_p, rel=1e-6) and norm_f == pytest.approx(norm_p, rel=1e-5)
    assert ofused.t == oplain.t == 4
    tol = 1e-5 if fmt == "fp32" else 1e-3  # q8: a code may round the other way at a threshold
    assert rel_err(fused.params, plain.params) < tol
    with pytest.raises(ValueError, match="clip must be one of"):
        ofused.fused_step(x, x, max_grad_norm=1.0, clip="later")

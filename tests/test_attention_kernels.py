"""The C causal attention kernels against the float64 NumPy oracle.

Tolerance: every output's relative max error, max|c - oracle| / max|oracle|
(conftest.rel_err), is below TOL, the attention bound of
codette_np/kernels/tolerances.py. Inputs are drawn in float32 and
cast to float64 for the oracle, so both sides see the same numbers; the
backward gets the oracle forward's out and lse rounded to float32 on both
sides.
"""

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from codette_np.kernels import ref
from codette_np.kernels.tolerances import tolerance
from codette_np.model import _split_qkv
from conftest import rel_err

cb = pytest.importorskip("codette_np.kernels.cbackend", reason="C kernels not built")

TOL = tolerance("attention_backward", "c")  # forward and backward share the bound
SENTINEL = np.float32(-1234.5)


def _qkv(rng, B, T, NH, hs, layout):
    """q, k, v (B, T, NH, hs) float32: strided views of one (N, 3C) buffer as the
    model passes them, or three contiguous arrays."""
    C = NH * hs
    if layout == "strided":
        qkv = rng.standard_normal((B * T, 3 * C)).astype(np.float32)
        return _split_qkv(qkv, B, T, NH, hs)
    return tuple(rng.standard_normal((B, T, NH, hs)).astype(np.float32) for _ in range(3))


def _oracle_forward(q, k, v):
    B, T, NH, hs = q.shape
    out, lse = np.zeros((B, T, NH, hs)), np.zeros((B, NH, T))
    ref.attention_forward(out, lse, *(a.astype(np.float64) for a in (q, k, v)))
    return out, lse


def _oracle_backward(dout, q, k, v, out, lse):
    grads = [np.zeros(q.shape) for _ in range(3)]
    ref.attention_backward(*grads, *(a.astype(np.float64) for a in (dout, q, k, v, out, lse)))
    return grads


def _c_forward(q, k, v):
    B, T, NH, hs = q.shape
    out = np.zeros((B, T, NH, hs), np.float32)
    lse = np.zeros((B, NH, T), np.float32)
    cb.attention_forward(out, lse, q, k, v)
    return out, lse


def _c_backward(dout, q, k, v, out, lse, layout="strided"):
    B, T, NH, hs = q.shape
    if layout == "strided":
        dqkv = np.zeros((B * T, 3 * NH * hs), np.float32)
        dq, dk, dv = _split_qkv(dqkv, B, T, NH, hs)
    else:
        dq, dk, dv = (np.zeros(q.shape, np.float32) for _ in range(3))
    cb.attention_backward(dq, dk, dv, dout, q, k, v, out, lse)
    return dq, dk, dv


def _check(got, want, what=""):
    """rel_err < TOL. Where the oracle is zero up to rounding (dq, dk at T = 1:
    dS = P * (dP - D) cancels exactly), the float32 residue must be tiny too
    (the inputs are O(1), so the gradients are O(0.1) when they do not cancel)."""
    if np.max(np.abs(want)) < 1e-6:
        assert np.max(np.abs(got)) < 1e-6, what
    else:
        assert rel_err(got, want) < TOL, what


SHAPES = [(B, T, NH, hs)
          for T in (1, 7, 65, 300)
          for B, NH, hs in ((1, 1, 2), (2, 3, 16), (1, 4, 64), (2, 2, 80))]
SHAPES += [(1, 33, 2, 6), (2, 70, 1, 24), (1, 130, 2, 128), (2, 19, 3, 5)]  # odd hs works too


@pytest.mark.parametrize("layout", ["strided", "contiguous"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%d-T%d-NH%d-hs%d" % s)
def test_matches_oracle(shape, layout):
    rng = np.random.default_rng(sum(shape))
    B, T, NH, hs = shape
    q, k, v = _qkv(rng, *shape, layout)
    out, lse = _c_forward(q, k, v)
    out64, lse64 = _oracle_forward(q, k, v)
    assert rel_err(out, out64) < TOL
    assert rel_err(lse, lse64) < TOL

    dout = rng.standard_normal(shape).astype(np.float32)
    o32, l32 = out64.astype(np.float32), lse64.astype(np.float32)
    got = _c_backward(dout, q, k, v, o32, l32, layout)
    want = _oracle_backward(dout, q, k, v, o32, l32)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        _check(g, w, name)


def test_forward_then_backward_chain():
    """C forward feeding C backward vs the float64 oracle end to end."""
    rng = np.random.default_rng(7)
    shape = (2, 97, 3, 64)
    q, k, v = _qkv(rng, *shape, "strided")
    dout = rng.standard_normal(shape).astype(np.float32)
    out, lse = _c_forward(q, k, v)
    got = _c_backward(dout, q, k, v, out, lse)
    out64, lse64 = _oracle_forward(q, k, v)
    want = _oracle_backward(dout, q, k, v, out64, lse64)
    for g, w in zip(got, want):
        _check(g, w)


def test_large_scores_are_stable():
    """Scores in the hundreds (exp would overflow float32 past 88): the online
    softmax must stay finite and accurate. q and k hold small integers, so the
    scores are exact in float32 and the comparison measures the kernel alone
    (rounding a score of 300 would itself move exp by ~2e-5 relative)."""
    rng = np.random.default_rng(3)
    shape = (1, 150, 2, 16)
    q, k = (rng.integers(-12, 13, shape).astype(np.float32) for _ in range(2))
    v = rng.standard_normal(shape).astype(np.float32)
    out, lse = _c_forward(q, k, v)
    out64, lse64 = _oracle_forward(q, k, v)
    assert np.abs(lse64).max() > 100
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    assert rel_err(out, out64) < TOL and rel_err(lse, lse64) < TOL
    dout = rng.standard_normal(shape).astype(np.float32)
    o32, l32 = out64.astype(np.float32), lse64.astype(np.float32)
    got = _c_backward(dout, q, k, v, o32, l32, "contiguous")
    want = _oracle_backward(dout, q, k, v, o32, l32)
    for g, w in zip(got, want):
        _check(g, w)


# ---------------------------------------------------------------------------
# memory bounds: guard buffers around every output, NaN around every input


def _guarded(shape, row_pad, fill, rng=None):
    """(big, view): view (B, T, NH, hs) inside the flat buffer big, with row_pad
    (>= 4) extra elements between rows, 3 of them before each row, and 37
    before and after the whole; everything of big
    outside the view holds `fill`; the view holds random values if rng given."""
    B, T, NH, hs = shape
    rs = NH * hs + row_pad
    big = np.full(37 + B * T * rs + 37, fill, np.float32)
    view = big[37:37 + B * T * rs].reshape(B, T, rs)[:, :, 3:3 + NH * hs].reshape(shape)
    if rng is not None:
        view[...] = rng.standard_normal(shape)
    return big, view


def _outside(big, view):
    """The elements of big that are not in view."""
    marker = np.ones(big.shape, np.float32)  # same itemsize as big: view's strides apply
    offset = (view.__array_interface__["data"][0] - big.__array_interface__["data"][0]) // 4
    mview = np.lib.stride_tricks.as_strided(marker[offset:], view.shape, view.strides)
    mview[...] = 0.0
    return big[marker == 1.0]


def test_guard_buffers():
    rng = np.random.default_rng(11)
    shape = B, T, NH, hs = (2, 67, 3, 24)
    q, k, v, dout = (_guarded(shape, 5, np.nan, rng)[1] for _ in range(4))
    outbig, out = _guarded(shape, 4, SENTINEL)
    lsebig = np.full(11 + B * NH * T + 11, SENTINEL, np.float32)
    lse = lsebig[11:-11].reshape(B, NH, T)
    cb.attention_forward(out, lse, q, k, v)
    assert (_outside(outbig, out) == SENTINEL).all()
    assert (lsebig[:11] == SENTINEL).all() and (lsebig[-11:] == SENTINEL).all()
    # NaN padding around the inputs was never read, and the results equal a plain call
    out_c, lse_c = _c_forward(*(np.ascontiguousarray(a) for a in (q, k, v)))
    np.testing.assert_array_equal(out, out_c)
    np.testing.assert_array_equal(lse, lse_c)

    grads = [_guarded(shape, 4 + i, SENTINEL) for i in range(3)]
    cb.attention_backward(*(g[1] for g in grads), dout, q, k, v, out, lse)
    for big, view in grads:
        assert (_outside(big, view) == SENTINEL).all()
    plain = _c_backward(*(np.ascontiguousarray(a) for a in (dout, q, k, v, out, lse)),
                        layout="contiguous")
    for (_, view), p in zip(grads, plain):
        np.testing.assert_array_equal(view, p)
        assert np.isfinite(view).all()


# ---------------------------------------------------------------------------
# NaN propagation. The reference's dense products also spread NaN into
# masked entries (0 * NaN, exp(-inf - NaN)); the C kernels never form a
# product with a masked entry, so a NaN reaches exactly the outputs that
# depend on it causally. The oracle for this is a row-by-row float64 loop.


def _causal_forward(q, k, v):
    B, T, NH, hs = q.shape
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    out, lse = np.zeros((B, T, NH, hs)), np.zeros((B, NH, T))
    for b in range(B):
        for h in range(NH):
            for i in range(T):
                s = k[b, :i + 1, h] @ q[b, i, h] / np.sqrt(hs)
                m = s.max()
                p = np.exp(s - m)
                out[b, i, h] = (p / p.sum()) @ v[b, :i + 1, h]
                lse[b, h, i] = m + np.log(p.sum())
    return out, lse


def _causal_backward(dout, q, k, v, out, lse):
    B, T, NH, hs = q.shape
    dout, q, k, v, out, lse = (a.astype(np.float64) for a in (dout, q, k, v, out, lse))
    dq, dk, dv = (np.zeros(q.shape) for _ in range(3))
    for b in range(B):
        for h in range(NH):
            for i in range(T):
                ks, vs = k[b, :i + 1, h], v[b, :i + 1, h]
                p = np.exp(ks @ q[b, i, h] / np.sqrt(hs) - lse[b, h, i])
                dp = vs @ dout[b, i, h]
                ds = p * (dp - dout[b, i, h] @ out[b, i, h]) / np.sqrt(hs)
                dq[b, i, h] = ds @ ks
                dk[b, :i + 1, h] += np.outer(ds, q[b, i, h])
                dv[b, :i + 1, h] += np.outer(p, dout[b, i, h])
    return dq, dk, dv


def _same_nans_and_close(got, want):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert rel_err(got[ok], want[ok]) < TOL


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_nan_forward(which):
    rng = np.random.default_rng(5)
    shape = (2, 70, 2, 16)
    qkv = list(_qkv(rng, *shape, "strided"))
    idx = "qkv".index(which)
    qkv[idx][1, 45, 1, 3] = np.nan
    out, lse = _c_forward(*qkv)
    want_out, want_lse = _causal_forward(*qkv)
    _same_nans_and_close(out, want_out)
    _same_nans_and_close(lse, want_lse)
    last = 46 if which == "q" else 70  # a query touches its own row; a key or value every later row
    assert np.isnan(out[1, 45:last, 1]).any(axis=-1).all()
    assert not np.isnan(out[1, last:]).any()
    assert not np.isnan(out[1, :45]).any() and not np.isnan(out[0]).any()
    # every NaN of the C result is also a NaN of the dense reference
    ref_out, ref_lse = _oracle_forward(*qkv)
    assert not (np.isnan(out) & ~np.isnan(ref_out)).any()
    assert not (np.isnan(lse) & ~np.isnan(ref_lse)).any()


@pytest.mark.parametrize("which", ["dout", "q", "k", "v"])
def test_nan_backward(which):
    rng = np.random.default_rng(6)
    shape = (1, 70, 2, 16)
    q, k, v = _qkv(rng, *shape, "strided")
    dout = rng.standard_normal(shape).astype(np.float32)
    out, lse = (a.astype(np.float32) for a in _causal_forward(q, k, v))
    args = {"dout": dout, "q": q, "k": k, "v": v}
    args[which][0, 37, 1, 5] = np.nan
    got = _c_backward(args["dout"], q, k, v, out, lse)
    want = _causal_backward(args["dout"], q, k, v, out, lse)
    for g, w in zip(got, want):
        _same_nans_and_close(g, w)
    assert any(np.isnan(g).any() for g in got)
    assert not any(np.isnan(g[:, :, 0]).any() for g in got)  # the other head is untouched


# ---------------------------------------------------------------------------
# determinism


def test_bit_identical_on_repeat():
    rng = np.random.default_rng(8)
    shape = (2, 129, 4, 64)
    q, k, v = _qkv(rng, *shape, "strided")
    dout = rng.standard_normal(shape).astype(np.float32)
    first = _c_forward(q, k, v)
    g1 = _c_backward(dout, q, k, v, *first)
    for _ in range(2):
        again = _c_forward(q, k, v)
        g2 = _c_backward(dout, q, k, v, *again)
        for a, b in zip(first + tuple(g1), again + tuple(g2)):
            np.testing.assert_array_equal(a, b)


_THREAD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from codette_np.kernels import cbackend as cb
    from codette_np.model import _split_qkv
    rng = np.random.default_rng(9)
    B, T, NH, hs = 3, 150, 3, 80
    qkv = rng.standard_normal((B * T, 3 * NH * hs)).astype(np.float32)
    q, k, v = _split_qkv(qkv, B, T, NH, hs)
    dout = rng.standard_normal((B, T, NH, hs)).astype(np.float32)
    out = np.zeros((B, T, NH, hs), np.float32)
    lse = np.zeros((B, NH, T), np.float32)
    cb.attention_forward(out, lse, q, k, v)
    dqkv = np.zeros_like(qkv)
    cb.attention_backward(*_split_qkv(dqkv, B, T, NH, hs), dout, q, k, v, out, lse)
    np.savez(sys.argv[1], out=out, lse=lse, dqkv=dqkv, threads=cb.num_threads())
""")


def test_thread_count_does_not_change_results(tmp_path):
    """Each (b, h) is computed by one thread in a fixed order: OMP_NUM_THREADS=1
    and 2 give bit-identical results (stronger than the tolerance)."""
    res = {}
    for n in (1, 2):
        path = tmp_path / f"t{n}.npz"
        env = dict(os.environ, OMP_NUM_THREADS=str(n))
        subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, str(path)], env=env, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        res[n] = np.load(path)
        assert int(res[n]["threads"]) == n
    for key in ("out", "lse", "dqkv"):
        np.testing.assert_array_equal(res[1][key], res[2][key])


# ---------------------------------------------------------------------------
# memory: nothing proportional to T^2


def test_c_scratch_is_linear_in_T():
    """The C kernels' only allocation is a per-thread scratch of O(T * hs) floats
    (attention_scratch_bytes); the (T, T) scores are never stored."""
    for backward in (False, True):
        for hs in (2, 64, 80, 128):
            s1 = cb.attention_scratch_bytes(1024, hs, backward)
            s4 = cb.attention_scratch_bytes(4096, hs, backward)
            s16 = cb.attention_scratch_bytes(16384, hs, backward)
            assert s4 <= 4.05 * s1 and s16 <= 4.05 * s4
            assert s16 < 16384 * 16384  # far below one float per score (4 T^2 bytes)


_RSS_SCRIPT = textwrap.dedent("""
    import resource
    import numpy as np
    from codette_np.kernels import cbackend as cb
    B, T, NH, hs = 1, 8192, 1, 64
    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((B, T, NH, hs)).astype(np.float32) for _ in range(4))
    out = np.zeros_like(q); lse = np.zeros((B, NH, T), np.float32)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(q), np.zeros_like(q)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cb.attention_forward(out, lse, q, k, v)
    cb.attention_backward(dq, dk, dv, dout, q, k, v, out, lse)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
""")


def test_c_attention_peak_rss_at_long_T():
    """T = 8192 in a fresh process: one (T, T) float32 matrix would be 256 MB;
    the peak resident set grows by less than 32 MB over the inputs."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], env=env, check=True, text=True,
                       capture_output=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    grew = int(r.stdout.strip())
    assert grew < 32 << 20, f"peak RSS grew by {grew / 2**20:.1f} MB"


def _peak_bytes(model, T):
    cfg = model.cfg
    rng = np.random.default_rng(T)
    tokens = rng.integers(0, cfg.vocab_size, (1, T)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (1, T)).astype(np.int32)
    model.free_buffers()
    tracemalloc.start()
    try:
        model.forward_backward(tokens, targets)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_model_step_memory_grows_linearly_in_T():
    """Peak Python-side (numpy) allocation of one forward_backward, activations
    included, for a nano-like model at T = 64, 256, 1024: with the C attention
    it grows ~linearly (the preallocated Activations are linear in T); the
    reference attention materializes (B, NH, T, T) and grows ~quadratically."""
    from codette_np import Model, ModelConfig

    cfg = ModelConfig.preset("nano", context_length=1024)
    model = Model(cfg, seed=0, backend="c")
    assert model.kernels.sources["attention_forward"] == "c"
    assert model.kernels.sources["attention_backward"] == "c"
    peaks = {T: _peak_bytes(model, T) for T in (64, 256, 1024)}
    acts = {T: model.activation_bytes(1, T) for T in peaks}
    assert peaks[1024] < 6 * peaks[256] and peaks[256] < 6 * peaks[64], peaks
    # what remains beyond the activations is small and at most linear too
    assert peaks[1024] < 2 * acts[1024], (peaks, acts)

    ref_model = Model(cfg, seed=0, backend="numpy")
    ref_peaks = {T: _peak_bytes(ref_model, T) for T in (256, 1024)}
    assert ref_peaks[1024] > 8 * ref_peaks[256], ref_peaks  # the measurement does see T^2


# ---------------------------------------------------------------------------
# argument checks


def test_rejects_bad_arguments():
    rng = np.random.default_rng(1)
    shape = (1, 5, 2, 8)
    q, k, v = _qkv(rng, *shape, "strided")
    out = np.zeros(shape, np.float32)
    lse = np.zeros((1, 2, 5), np.float32)
    with pytest.raises(TypeError):
        cb.attention_forward(out, lse, q.astype(np.float64), k, v)
    with pytest.raises(ValueError):
        cb.attention_forward(out, np.zeros((1, 5, 2), np.float32), q, k, v)
    with pytest.raises(ValueError):  # hs not contiguous
        cb.attention_forward(out, lse, q, k, np.zeros((1, 5, 2, 16), np.float32)[..., ::2])
    with pytest.raises(ValueError):  # heads not adjacent
        cb.attention_forward(out, lse, q, k, np.zeros((1, 5, 3, 8), np.float32)[:, :, ::2][:, :, :2])
    with pytest.raises(ValueError):  # wrong shape
        cb.attention_forward(out[:, :4], lse, q, k, v)
    ro = np.zeros(shape, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        cb.attention_forward(ro, lse, q, k, v)

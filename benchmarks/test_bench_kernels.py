"""Every kernel x every available backend at the `mini` preset's shapes
(B 8, T 256, C 512, F 2048, NH 8, hs 64, V 16384). Each case is checked
against the float64 reference before it is timed."""


import numpy as np
import pytest

from codette_np import backend as be
from codette_np.config import ModelConfig
from codette_np.kernels import ref
from codette_np.kernels.tolerances import tolerance

CFG = ModelConfig.preset("mini")
B, T = 8, 256
N, C, F, V, NH = B * T, CFG.d_model, CFG.d_ff, CFG.vocab_size, CFG.n_head
HS = C // NH
HEAD_ROWS = 1024  # the model's cross-entropy chunk at this vocabulary (64 MB of logits)
P = CFG.n_params
BACKENDS = [n for n, why in be.available().items() if why is None]


def _rng():
    return np.random.default_rng(0)


LEAN_ADAMW = ("adamw_step_bf16", "adamw_step_q8", "adamw_step_q8_bf16w")


def make_case(name):
    """(args builder, bytes or flops, unit, outputs to check): args are float32 arrays."""
    r = _rng()
    f32 = lambda *s: r.standard_normal(s).astype(np.float32)
    tokens = r.integers(0, V, N).astype(np.int32)
    if name == "embedding_forward":
        return (lambda: [np.zeros((N, C), np.float32), tokens, f32(V, C)], 2 * N * C * 4, "bytes", [0])
    if name == "embedding_backward":
        return (lambda: [np.zeros((V, C), np.float32), f32(N, C), tokens], 3 * N * C * 4, "bytes", [0])
    if name == "layernorm_forward":
        return (lambda: [np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32),
                         f32(N, C), f32(C), f32(C), 1e-5], 2 * N * C * 4, "bytes", [0, 1, 2])
    if name == "layernorm_backward":
        def args():
            x, w, b = f32(N, C), f32(C), f32(C)
            out, mean, rstd = (np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32))
            ref.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
            return [np.zeros((N, C), np.float32), np.zeros(C, np.float32), np.zeros(C, np.float32),
                    f32(N, C), x, w, mean, rstd]
        return (args, 3 * N * C * 4, "bytes", [0, 1, 2])
    if name == "layernorm_backward_add":  # reads dout, inp; reads and writes dresid
        def args():
            x, w, b = f32(N, C), f32(C), f32(C)
            out, mean, rstd = (np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32))
            ref.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
            return [f32(N, C), np.zeros(C, np.float32), np.zeros(C, np.float32), f32(N, C), x, w, mean, rstd]
        return (args, 4 * N * C * 4, "bytes", [0, 1, 2])
    if name == "bias_forward":
        return (lambda: [f32(N, F), f32(F)], 2 * N * F * 4, "bytes", [0])
    if name == "bias_backward":
        return (lambda: [np.zeros(F, np.float32), f32(N, F)], N * F * 4, "bytes", [0])
    if name == "residual_forward":
        return (lambda: [np.zeros((N, C), np.float32), f32(N, C), f32(N, C), f32(C)], 3 * N * C * 4, "bytes", [0])
    if name == "residual_backward":
        return (lambda: [f32(N, C), f32(N, C)], 3 * N * C * 4, "bytes", [0])
    if name in ("rope_forward", "rope_backward"):
        cos, sin = ref.rope_tables(T, HS, 10000.0, np.float32)
        def args():
            qkv = f32(N, 3 * C)
            q = qkv.reshape(B, T, 3, NH, HS)[:, :, 0]  # the strided view the model passes
            return [q, q, cos, sin]
        return (args, 2 * N * C * 4, "bytes", [0])
    if name == "attention_forward":
        def args():
            qkv = f32(N, 3 * C)
            x = qkv.reshape(B, T, 3, NH, HS)
            return [np.zeros((B, T, NH, HS), np.float32), np.zeros((B, NH, T), np.float32),
                    x[:, :, 0], x[:, :, 1], x[:, :, 2]]
        return (args, 2 * 2 * B * NH * (T * (T + 1) / 2) * HS, "flops", [0, 1])
    if name == "attention_backward":
        def args():
            qkv = f32(N, 3 * C)
            x = qkv.reshape(B, T, 3, NH, HS)
            q, k, v = x[:, :, 0], x[:, :, 1], x[:, :, 2]
            out, lse = np.zeros((B, T, NH, HS), np.float32), np.zeros((B, NH, T), np.float32)
            ref.attention_forward(out, lse, q, k, v)
            d = np.zeros((N, 3 * C), np.float32).reshape(B, T, 3, NH, HS)
            return [d[:, :, 0], d[:, :, 1], d[:, :, 2], f32(B, T, NH, HS), q, k, v, out, lse]
        return (args, 5 * 2 * B * NH * (T * (T + 1) / 2) * HS, "flops", [0, 1, 2])
    if name == "gelu_forward":
        return (lambda: [np.zeros((N, F), np.float32), f32(N, F)], 2 * N * F * 4, "bytes", [0])
    if name == "gelu_backward":
        return (lambda: [np.zeros((N, F), np.float32), f32(N, F), f32(N, F)], 3 * N * F * 4, "bytes", [0])
    if name == "bias_gelu_forward":  # reads and writes pre, writes out
        # bias 0: every timed call adds it to pre again, and pre must not drift between calls
        return (lambda: [np.zeros((N, F), np.float32), f32(N, F), np.zeros(F, np.float32)], 3 * N * F * 4,
                "bytes", [0, 1])
    if name == "gelu_bias_backward":  # reads dout, pre; writes dinp
        return (lambda: [np.zeros((N, F), np.float32), np.zeros(F, np.float32), f32(N, F), f32(N, F)],
                3 * N * F * 4, "bytes", [0, 1])
    if name == "crossentropy_forward_backward":
        def args():
            lg = f32(HEAD_ROWS, V) * 3
            t = r.integers(0, V, HEAD_ROWS).astype(np.int32)
            return [np.zeros(HEAD_ROWS, np.float32), np.zeros((HEAD_ROWS, V), np.float32), lg, t, 1.0 / N]
        return (args, 2 * HEAD_ROWS * V * 4, "bytes", [0, 1])
    if name == "adamw_step":
        def args():
            return [f32(P) * 0.02, f32(P), np.zeros(P, np.float32), np.zeros(P, np.float32), True,
                    1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0]
        return (args, 7 * 4 * P, "bytes", [0, 2, 3])
    if name in LEAN_ADAMW:  # the lean optimizer state, over every parameter
        def args():
            if name.endswith("bf16"):
                state = [np.zeros(P, np.uint16), np.zeros(P, np.uint16)]
            else:
                nb = -(-P // ref.Q8_BLOCK)
                state = [np.zeros(P, np.uint8), np.zeros(P, np.uint8), np.zeros(nb, np.float32),
                         np.zeros(nb, np.float32)]
            w = f32(P) * 0.02
            if name.endswith("bf16w"):  # bf16 weights: their bits
                w = (w.view(np.uint32) >> 16).astype(np.uint16)
            return [w, f32(P), *state, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0, 0, 0]
        moments = 8 if name.endswith("bf16") else 4  # read and written, both moments
        weights = 4 if name.endswith("bf16w") else 8  # read and written
        return (args, (weights + 4 + moments) * P, "bytes", [0])
    if name == "grad_norm_sq":
        return (lambda: [f32(P)], 4 * P, "bytes", None)
    raise KeyError(name)


KERNELS = [k for k in be.KERNELS]
STREAM = "stream: dresid += dbranch over P floats"  # the memory bandwidth the lean AdamW is held to


def _check(name, kernel, args, outs, backend):
    """Run once on copies and compare with the float64 reference, within the tests' bound
    (codette_np.kernels.tolerances)."""
    tol = tolerance(name, backend)
    a32 = [a.copy() if isinstance(a, np.ndarray) and a.dtype == np.float32 and a.base is None else a for a in args]
    a32 = [a.copy() if isinstance(a, np.ndarray) and a.dtype.kind == "u" else a for a in a32]  # codes: own copies
    a64 = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else
           (a.copy() if isinstance(a, np.ndarray) and a.dtype.kind == "u" else a) for a in args]
    if name.startswith("rope"):  # in place on a strided view: keep the aliasing
        a32 = [a.copy() for a in args[:1]]
        a32 = [a32[0], a32[0], args[2], args[3]]
        a64 = [args[0].astype(np.float64)] * 2 + [args[2].astype(np.float64), args[3].astype(np.float64)]
        a64[1] = a64[0]
    got = kernel(*a32)
    want = getattr(ref, name)(*a64)
    if outs is None:
        assert abs(got - want) <= tol * abs(want), f"{name}: {got} vs {want}"
        return
    for i in outs:
        g, w = np.asarray(a32[i], np.float64), np.asarray(a64[i])
        if a32[i].dtype == np.uint16:  # bf16 weights: their values
            g, w = ref.bf16_decode(a32[i]), ref.bf16_decode(a64[i])
        err = np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30)
        assert err <= tol, f"{name} output {i}: relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", KERNELS)
def test_kernel(record, name, backend):
    b = be.get(backend)
    if b.sources[name] != backend:
        pytest.skip(f"{backend} has no {name} of its own (uses the NumPy reference)")
    make, work, unit, outs = make_case(name)
    args = make()
    kernel = getattr(b, name)
    _check(name, kernel, args, outs, backend)
    rounds = 5 if (backend == "numpy" and name.startswith("attention")) else None
    if backend == "numpy" and name in LEAN_ADAMW:
        rounds = 1  # the float64 reference over every parameter takes tens of seconds
    record("kernel", name, backend, lambda: kernel(*args), work, unit, rounds=rounds)


def test_stream_bandwidth(record):
    """The memory bandwidth of this run, for the lean AdamW's rate to be read against: the C
    residual_backward (read two arrays, write one back in place, as AdamW does) over P floats
    each, far beyond the caches."""
    b = be.get("c") if "c" in BACKENDS else None
    if b is None or b.sources["residual_backward"] != "c":
        pytest.skip("the C backend is not built")
    r = _rng()
    dresid, dbranch = np.zeros(P, np.float32), r.standard_normal(P).astype(np.float32) * 1e-3
    record("kernel", STREAM, "c", lambda: b.residual_backward(dresid, dbranch), 12 * P, "bytes")

"""C backend: thin wrappers that check arrays and call codette_np._ckernels.

Every wrapper has the name and argument order of its reference in
kernels/ref.py and first calls the check of the same name in
kernels/checks.py (the contract shared with the Numba backend), so no
array reaches C unchecked: a float64 array can never be read as float*.
"""

from __future__ import annotations

import numpy as np

from codette_np import _ckernels  # ImportError here means the C build is missing
from codette_np.kernels import checks

ffi, lib = _ckernels.ffi, _ckernels.lib

NAME = "c"


def _ptr(a: np.ndarray, ctype: str = "float *"):
    """Pointer to a checked (codette_np.kernels.checks), C-contiguous array."""
    return ffi.cast(ctype, ffi.from_buffer(a, require_writable=False))


def _ids(a: np.ndarray):
    return _ptr(a, "int32_t *")


def _view(a: np.ndarray, offset: int):
    """Pointer to a checked (B, T, NH, hs) view: its base array's memory plus the view's offset."""
    return ffi.cast("float *", ffi.from_buffer(checks.base_of(a), require_writable=False)) + offset


def _status(rc: int, name: str):
    if rc != 0:
        raise MemoryError(f"{name}: the C kernel could not allocate its scratch buffer")


def adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
               step, grad_scale):
    n = checks.adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                          step, grad_scale)
    lib.adamw_step(_ptr(params), _ptr(m), _ptr(v), _ptr(grads), int(bool(decay)),
                   lr, beta1, beta2, eps, weight_decay, int(step), grad_scale, n)


def adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                    step, grad_scale, seed, offset):
    n = checks.adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay,
                               step, grad_scale, seed, offset)
    lib.adamw_step_bf16(_ptr(params), _ptr(m, "uint16_t *"), _ptr(v, "uint16_t *"), _ptr(grads),
                        int(bool(decay)), lr, beta1, beta2, eps, weight_decay, int(step), grad_scale,
                        int(seed), int(offset), n)


def adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                  weight_decay, step, grad_scale, seed, offset):
    n = checks.adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                             weight_decay, step, grad_scale, seed, offset)
    lib.adamw_step_q8(_ptr(params), _ptr(m, "uint8_t *"), _ptr(v, "uint8_t *"), _ptr(m_absmax),
                      _ptr(v_absmax), _ptr(grads), int(bool(decay)), lr, beta1, beta2, eps, weight_decay,
                      int(step), grad_scale, int(seed), int(offset), n)


def adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                        weight_decay, step, grad_scale, seed, offset):
    n = checks.adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2,
                                   eps, weight_decay, step, grad_scale, seed, offset)
    lib.adamw_step_q8_bf16w(_ptr(params, "uint16_t *"), _ptr(m, "uint8_t *"), _ptr(v, "uint8_t *"),
                            _ptr(m_absmax), _ptr(v_absmax), _ptr(grads), int(bool(decay)), lr, beta1,
                            beta2, eps, weight_decay, int(step), grad_scale, int(seed), int(offset), n)


def bf16_to_f32(out, h):
    n = checks.bf16_to_f32(out, h)
    lib.bf16_to_f32(_ptr(out), _ptr(h, "uint16_t *"), n)


def f32_to_bf16_sr(out, x, seed, step, offset):
    n = checks.f32_to_bf16_sr(out, x, seed, step, offset)
    lib.f32_to_bf16_sr(_ptr(out, "uint16_t *"), _ptr(x), int(seed), int(step), int(offset), n)


def grad_norm_sq(grads):
    P = checks.grad_norm_sq(grads)
    out = ffi.new("double *")
    _status(lib.grad_norm_sq(_ptr(grads), P, out), "grad_norm_sq")
    return float(out[0])


# ---- element-wise and row kernels ----


def embedding_forward(out, tokens, wte):
    N, V, C = checks.embedding_forward(out, tokens, wte)
    if N and C:
        lib.embedding_forward(_ptr(out), _ids(tokens), _ptr(wte), N, C)


def embedding_backward(dwte, dout, tokens):
    N, V, C = checks.embedding_backward(dwte, dout, tokens)
    if N and C:
        lib.embedding_backward(_ptr(dwte), _ptr(dout), _ids(tokens), N, V, C)


def layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    N, C = checks.layernorm_forward(out, mean, rstd, inp, weight, bias, eps)
    if N and C:
        lib.layernorm_forward(_ptr(out), _ptr(mean), _ptr(rstd), _ptr(inp), _ptr(weight), _ptr(bias),
                              float(eps), N, C)


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    N, C = checks.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd)
    if C:
        _status(lib.layernorm_backward(_ptr(dinp), _ptr(dweight), _ptr(dbias), _ptr(dout), _ptr(inp),
                                       _ptr(weight), _ptr(mean), _ptr(rstd), N, C), "layernorm_backward")


def layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd):
    N, C = checks.layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd)
    if C:
        _status(lib.layernorm_backward_add(_ptr(dresid), _ptr(dweight), _ptr(dbias), _ptr(dout),
                                           _ptr(inp), _ptr(weight), _ptr(mean), _ptr(rstd), N, C),
                "layernorm_backward_add")


def bias_forward(out, bias):
    N, O = checks.bias_forward(out, bias)
    if out.size:
        lib.bias_forward(_ptr(out), _ptr(bias), N, O)


def bias_backward(dbias, dout):
    N, O = checks.bias_backward(dbias, dout)
    if O:
        _status(lib.bias_backward(_ptr(dbias), _ptr(dout), N, O), "bias_backward")


def residual_forward(out, resid, branch, bias):
    N, C = checks.residual_forward(out, resid, branch, bias)
    if N and C:
        lib.residual_forward(_ptr(out), _ptr(resid), _ptr(branch), _ptr(bias), N, C)


def residual_backward(dresid, dbranch):
    n = checks.residual_backward(dresid, dbranch)
    if n:
        lib.residual_backward(_ptr(dresid), _ptr(dbranch), n)


def _rope(fn, shape, o, i, out, inp, cos, sin):
    B, T, NH, hs = shape
    if inp.size:
        fn(_view(out, o[0]), _view(inp, i[0]), _ptr(cos), _ptr(sin), B, T, NH, hs, o[1], o[2], i[1], i[2])


def rope_forward(out, inp, cos, sin):
    _rope(lib.rope_forward, *checks.rope_forward(out, inp, cos, sin), out, inp, cos, sin)


def rope_backward(dinp, dout, cos, sin):
    _rope(lib.rope_backward, *checks.rope_backward(dinp, dout, cos, sin), dinp, dout, cos, sin)


def gelu_forward(out, inp):
    n = checks.gelu_forward(out, inp)
    if n:
        lib.gelu_forward(_ptr(out), _ptr(inp), n)


def gelu_backward(dinp, dout, inp):
    n = checks.gelu_backward(dinp, dout, inp)
    if n:
        lib.gelu_backward(_ptr(dinp), _ptr(dout), _ptr(inp), n)


def bias_gelu_forward(out, pre, bias):
    N, F = checks.bias_gelu_forward(out, pre, bias)
    if pre.size:
        lib.bias_gelu_forward(_ptr(out), _ptr(pre), _ptr(bias), N, F)


def gelu_bias_backward(dinp, dbias, dout, pre):
    N, F = checks.gelu_bias_backward(dinp, dbias, dout, pre)
    if F:
        _status(lib.gelu_bias_backward(_ptr(dinp), _ptr(dbias), _ptr(dout), _ptr(pre), N, F),
                "gelu_bias_backward")


def crossentropy_forward_backward(losses, dlogits, logits, targets, dscale):
    R, V = checks.crossentropy_forward_backward(losses, dlogits, logits, targets, dscale)
    if R and V:
        lib.crossentropy_forward_backward(_ptr(losses), _ptr(dlogits), _ptr(logits), _ids(targets),
                                          float(dscale), R, V)

# ---- end element-wise and row kernels ----

# ---- attention ----
# q, k, v, out and the gradients are (B, T, NH, hs) views with NH, hs
# contiguous (q/k/v/dq/dk/dv live inside (N, 3C) buffers); the C kernels
# take one row stride per tensor and need batch stride = T * row stride.


def attention_forward(out, lse, q, k, v):
    shape, views = checks.attention_forward(out, lse, q, k, v)
    B, T, NH, hs = shape
    (pq, sq), (pk, sk), (pv, sv), (po, so) = ((_view(a, off), row) for a, (off, row) in zip((q, k, v, out), views))
    _status(lib.attention_forward(po, _ptr(lse), pq, pk, pv, B, T, NH, hs, so, sq, sk, sv),
            "attention_forward")


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse):
    shape, views = checks.attention_backward(dq, dk, dv, dout, q, k, v, out, lse)
    B, T, NH, hs = shape
    arrays = (dq, dk, dv, dout, q, k, v, out)
    ptrs = [_view(a, off) for a, (off, _) in zip(arrays, views)]
    _status(lib.attention_backward(*ptrs, _ptr(lse), B, T, NH, hs, *(row for _, row in views)),
            "attention_backward")


def attention_scratch_bytes(T: int, hs: int, backward: bool) -> int:
    """Bytes of scratch each thread mallocs per attention call: O(T * hs), no T^2 term."""
    return 4 * int(lib.attention_scratch_floats(T, hs, 1 if backward else 0))


# ---- end attention ----


def num_threads() -> int:
    return int(lib.codette_num_threads())


def build_info() -> str:
    return ffi.string(lib.codette_build_info()).decode()

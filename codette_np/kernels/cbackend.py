"""C backend: thin wrappers that check arrays and call codette_np._ckernels.

Every wrapper has the name and argument order of its reference in
kernels/ref.py. `_ptr` is the one place arrays become pointers: it checks
dtype and contiguity, so a float64 array can never be read as float*.
"""

from __future__ import annotations

import numpy as np

from codette_np import _ckernels  # ImportError here means the C build is missing

ffi, lib = _ckernels.ffi, _ckernels.lib

NAME = "c"


def _ptr(a: np.ndarray, ctype: str = "float *", dtype=np.float32):
    if a.dtype != dtype:
        raise TypeError(f"C kernel expects {np.dtype(dtype)}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError("C kernel expects a C-contiguous array")
    return ffi.cast(ctype, ffi.from_buffer(a, require_writable=False))


def adamw_step(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay,
               step, grad_scale):
    P = params.shape[0]
    for name, a in (("grads", grads), ("m", m), ("v", v), ("decay_mask", decay_mask)):
        if a.shape != (P,):
            raise ValueError(f"adamw_step: {name} has shape {a.shape}, expected ({P},)")
    lib.adamw_step(_ptr(params), _ptr(m), _ptr(v), _ptr(grads),
                   _ptr(decay_mask, "uint8_t *", np.uint8),
                   lr, beta1, beta2, eps, weight_decay, int(step), grad_scale, P)


def grad_norm_sq(grads):
    return float(lib.grad_norm_sq(_ptr(grads), grads.shape[0]))


# ---- element-wise and row kernels ----
# Shapes are checked here, before any pointer reaches C; outputs must be
# writable; an output may be exactly one of its inputs where ref.py allows it
# (the C loops read each element before writing it), but never partly overlap.


def _check(name: str, a, shape, out: bool = False, dtype=np.float32):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: C kernels take {np.dtype(dtype)}, got {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    if out and not a.flags.writeable:
        raise ValueError(f"{name} is an output and must be writable")


def _arg(name: str, a, shape, out: bool = False, dtype=np.float32, ctype="float *"):
    """Checked pointer to a C-contiguous array."""
    _check(name, a, shape, out, dtype)
    return _ptr(a, ctype, dtype)


def _view_arg(name: str, a, shape, out: bool = False):
    """Checked pointer to a float32 (B, T, NH, hs) view whose last two dims are
    contiguous, e.g. q inside the (N, 3C) qkv buffer, and its B and T strides
    in elements. The pointer is taken from the contiguous array owning the
    memory (kept alive and bounds-checked by cffi) plus the view's offset."""
    _check(name, a, shape, out)
    isz = a.itemsize
    st = a.strides
    if any(s < 0 or s % isz for n, s in zip(a.shape, st) if n > 1):
        raise ValueError(f"{name}: strides {st} must be non-negative multiples of {isz}")
    if (a.shape[3] > 1 and st[3] != isz) or (a.shape[2] > 1 and st[2] != a.shape[3] * isz):
        raise ValueError(f"{name}: the last two dims (NH, hs) must be contiguous, strides {st}")
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if not base.flags.c_contiguous:
        raise ValueError(f"{name}: the array owning the view's memory must be C-contiguous")
    off = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    end = off + sum((n - 1) * s for n, s in zip(a.shape, st)) + isz
    if off < 0 or off % isz or end > base.nbytes:
        raise ValueError(f"{name}: view lies outside its base array")
    buf = ffi.cast("float *", ffi.from_buffer(base, require_writable=out))
    sb = st[0] // isz if a.shape[0] > 1 else 0
    stt = st[1] // isz if a.shape[1] > 1 else 0
    return buf + off // isz, sb, stt


def _no_overlap(out_name: str, out, in_name: str, inp, allow_same: bool = True):
    """An output may be its input exactly (same memory, same layout), nothing in between."""
    if not np.may_share_memory(out, inp):
        return
    same = (out.__array_interface__["data"][0] == inp.__array_interface__["data"][0]
            and out.strides == inp.strides and out.shape == inp.shape)
    if not (same and allow_same):
        raise ValueError(f"{out_name} overlaps {in_name}"
                         + ("" if allow_same else "; this kernel needs separate buffers")
                         + " (only an exact alias is allowed where ref.py says so)")


def _check_ids(name: str, ids, lo: int, hi: int):
    if ids.size and (int(ids.min()) < lo or int(ids.max()) >= hi):
        raise IndexError(f"{name} holds ids outside [{lo}, {hi})")


def _status(rc: int, name: str):
    if rc != 0:
        raise MemoryError(f"{name}: the C kernel could not allocate its scratch buffer")


def embedding_forward(out, tokens, wte):
    _check("wte", wte, None)
    if wte.ndim != 2:
        raise ValueError(f"wte must be (V, C), got shape {wte.shape}")
    V, C = wte.shape
    _check("tokens", tokens, None, dtype=np.int32)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be (N,), got shape {tokens.shape}")
    N = tokens.shape[0]
    po = _arg("out", out, (N, C), out=True)
    _no_overlap("out", out, "wte", wte, allow_same=False)
    _check_ids("tokens", tokens, 0, V)
    if N and C:
        lib.embedding_forward(po, _arg("tokens", tokens, (N,), dtype=np.int32, ctype="int32_t *"),
                              _arg("wte", wte, (V, C)), N, C)


def embedding_backward(dwte, dout, tokens):
    _check("dwte", dwte, None, out=True)
    if dwte.ndim != 2:
        raise ValueError(f"dwte must be (V, C), got shape {dwte.shape}")
    V, C = dwte.shape
    _check("tokens", tokens, None, dtype=np.int32)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be (N,), got shape {tokens.shape}")
    N = tokens.shape[0]
    pd = _arg("dout", dout, (N, C))
    _no_overlap("dwte", dwte, "dout", dout, allow_same=False)
    _check_ids("tokens", tokens, 0, V)
    if N and C:
        lib.embedding_backward(_arg("dwte", dwte, (V, C), out=True), pd,
                               _arg("tokens", tokens, (N,), dtype=np.int32, ctype="int32_t *"),
                               N, V, C)


def layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    _check("inp", inp, None)
    if inp.ndim != 2:
        raise ValueError(f"inp must be (N, C), got shape {inp.shape}")
    N, C = inp.shape
    args = (_arg("out", out, (N, C), out=True), _arg("mean", mean, (N,), out=True),
            _arg("rstd", rstd, (N,), out=True), _arg("inp", inp, (N, C)),
            _arg("weight", weight, (C,)), _arg("bias", bias, (C,)))
    _no_overlap("out", out, "inp", inp)
    if N and C:
        lib.layernorm_forward(*args, float(eps), N, C)


def _layernorm_backward(fn, name, dx_name, dx, dweight, dbias, dout, inp, weight, mean, rstd,
                        allow_same):
    _check("inp", inp, None)
    if inp.ndim != 2:
        raise ValueError(f"inp must be (N, C), got shape {inp.shape}")
    N, C = inp.shape
    args = (_arg(dx_name, dx, (N, C), out=True), _arg("dweight", dweight, (C,), out=True),
            _arg("dbias", dbias, (C,), out=True), _arg("dout", dout, (N, C)),
            _arg("inp", inp, (N, C)), _arg("weight", weight, (C,)),
            _arg("mean", mean, (N,)), _arg("rstd", rstd, (N,)))
    _no_overlap(dx_name, dx, "dout", dout, allow_same)
    _no_overlap(dx_name, dx, "inp", inp, allow_same)
    if C:
        _status(fn(*args, N, C), name)


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    _layernorm_backward(lib.layernorm_backward, "layernorm_backward", "dinp", dinp, dweight, dbias,
                        dout, inp, weight, mean, rstd, allow_same=True)


def layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd):
    _layernorm_backward(lib.layernorm_backward_add, "layernorm_backward_add", "dresid", dresid,
                        dweight, dbias, dout, inp, weight, mean, rstd, allow_same=False)


def bias_forward(out, bias):
    _check("out", out, None, out=True)
    _check("bias", bias, None)
    O = bias.shape[0] if bias.ndim == 1 else -1
    if O < 0 or out.ndim < 1 or out.shape[-1] != O:
        raise ValueError(f"bias_forward: out {out.shape} must end in bias's length, bias {bias.shape}")
    po = _arg("out", out, None, out=True)
    _no_overlap("out", out, "bias", bias, allow_same=False)
    if out.size:
        lib.bias_forward(po, _ptr(bias), out.size // O, O)


def bias_backward(dbias, dout):
    _check("dout", dout, None)
    if dout.ndim < 1:
        raise ValueError("bias_backward: dout must have at least one dim")
    O = dout.shape[-1]
    pb = _arg("dbias", dbias, (O,), out=True)
    _no_overlap("dbias", dbias, "dout", dout, allow_same=False)
    if O:
        _status(lib.bias_backward(pb, _arg("dout", dout, None), dout.size // O, O), "bias_backward")


def residual_forward(out, resid, branch, bias):
    _check("resid", resid, None)
    if resid.ndim != 2:
        raise ValueError(f"resid must be (N, C), got shape {resid.shape}")
    N, C = resid.shape
    args = (_arg("out", out, (N, C), out=True), _arg("resid", resid, (N, C)),
            _arg("branch", branch, (N, C)), _arg("bias", bias, (C,)))
    _no_overlap("out", out, "resid", resid)
    _no_overlap("out", out, "branch", branch)
    _no_overlap("out", out, "bias", bias, allow_same=False)
    if N and C:
        lib.residual_forward(*args, N, C)


def residual_backward(dresid, dbranch):
    pr = _arg("dresid", dresid, None, out=True)
    pb = _arg("dbranch", dbranch, dresid.shape)
    _no_overlap("dresid", dresid, "dbranch", dbranch, allow_same=False)
    if dresid.size:
        lib.residual_backward(pr, pb, dresid.size)


def _rope(fn, name_out, out, name_in, inp, cos, sin):
    _check(name_in, inp, None)
    if inp.ndim != 4 or inp.shape[3] % 2:
        raise ValueError(f"{name_in} must be (B, T, NH, hs) with hs even, got shape {inp.shape}")
    B, T, NH, hs = inp.shape
    po, osb, ost = _view_arg(name_out, out, inp.shape, out=True)
    pi, isb, ist = _view_arg(name_in, inp, inp.shape)
    pc, ps = _arg("cos", cos, (T, hs // 2)), _arg("sin", sin, (T, hs // 2))
    _no_overlap(name_out, out, name_in, inp)
    if inp.size:
        fn(po, pi, pc, ps, B, T, NH, hs, osb, ost, isb, ist)


def rope_forward(out, inp, cos, sin):
    _rope(lib.rope_forward, "out", out, "inp", inp, cos, sin)


def rope_backward(dinp, dout, cos, sin):
    _rope(lib.rope_backward, "dinp", dinp, "dout", dout, cos, sin)


def gelu_forward(out, inp):
    _check("inp", inp, None)
    po, pi = _arg("out", out, inp.shape, out=True), _arg("inp", inp, None)
    _no_overlap("out", out, "inp", inp)
    if inp.size:
        lib.gelu_forward(po, pi, inp.size)


def gelu_backward(dinp, dout, inp):
    _check("inp", inp, None)
    args = (_arg("dinp", dinp, inp.shape, out=True), _arg("dout", dout, inp.shape),
            _arg("inp", inp, None))
    _no_overlap("dinp", dinp, "dout", dout)
    _no_overlap("dinp", dinp, "inp", inp)
    if inp.size:
        lib.gelu_backward(*args, inp.size)


def bias_gelu_forward(out, pre, bias):
    _check("pre", pre, None, out=True)
    _check("bias", bias, None)
    F = bias.shape[0] if bias.ndim == 1 else -1
    if F < 0 or pre.ndim < 1 or pre.shape[-1] != F:
        raise ValueError(f"bias_gelu_forward: pre {pre.shape} must end in bias's length, bias {bias.shape}")
    args = (_arg("out", out, pre.shape, out=True), _ptr(pre), _ptr(bias))  # pre, bias checked above
    _no_overlap("out", out, "pre", pre, allow_same=False)  # pre keeps the pre-activation
    _no_overlap("out", out, "bias", bias, allow_same=False)
    _no_overlap("pre", pre, "bias", bias, allow_same=False)
    if pre.size:
        lib.bias_gelu_forward(*args, pre.size // F, F)


def gelu_bias_backward(dinp, dbias, dout, pre):
    _check("pre", pre, None)
    if pre.ndim < 1:
        raise ValueError("gelu_bias_backward: pre must have at least one dim")
    F = pre.shape[-1]
    args = (_arg("dinp", dinp, pre.shape, out=True), _arg("dbias", dbias, (F,), out=True),
            _arg("dout", dout, pre.shape), _arg("pre", pre, None))
    _no_overlap("dinp", dinp, "dout", dout)
    _no_overlap("dinp", dinp, "pre", pre)
    for name, a in (("dinp", dinp), ("dout", dout), ("pre", pre)):
        _no_overlap("dbias", dbias, name, a, allow_same=False)
    if F:
        _status(lib.gelu_bias_backward(*args, pre.size // F, F), "gelu_bias_backward")


def crossentropy_forward_backward(losses, dlogits, logits, targets, dscale):
    _check("logits", logits, None)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (R, V), got shape {logits.shape}")
    R, V = logits.shape
    args = (_arg("losses", losses, (R,), out=True), _arg("dlogits", dlogits, (R, V), out=True),
            _arg("logits", logits, (R, V)),
            _arg("targets", targets, (R,), dtype=np.int32, ctype="int32_t *"))
    _no_overlap("dlogits", dlogits, "logits", logits)
    _no_overlap("losses", losses, "logits", logits, allow_same=False)
    _check_ids("targets", targets, -1, V)
    if R and V:
        lib.crossentropy_forward_backward(*args, float(dscale), R, V)

# ---- end element-wise and row kernels ----

# ---- attention ----
# q, k, v, out and the gradients are (B, T, NH, hs) views with NH, hs
# contiguous (q/k/v/dq/dk/dv live inside (N, 3C) buffers); the C kernels
# take one row stride per tensor and need batch stride = T * row stride.


def _att_view(name: str, a, shape, out: bool = False):
    """Checked pointer and row stride (elements between rows t and t+1)."""
    ptr, sb, st = _view_arg(name, a, shape, out)
    B, T, NH, hs = shape
    row = st if T > 1 else (sb if B > 1 else NH * hs)
    if row < NH * hs:
        raise ValueError(f"{name}: rows of {NH * hs} floats overlap (row stride {row})")
    if B > 1 and sb != T * row:
        raise ValueError(f"{name}: batch stride {sb} must be T * row stride = {T * row} elements")
    return ptr, row


def _att_shape(q):
    if not isinstance(q, np.ndarray) or q.ndim != 4:
        raise ValueError("attention: q must be a (B, T, NH, hs) array")
    return q.shape


def attention_forward(out, lse, q, k, v):
    shape = B, T, NH, hs = _att_shape(q)
    pq, sq = _att_view("q", q, shape)
    pk, sk = _att_view("k", k, shape)
    pv, sv = _att_view("v", v, shape)
    po, so = _att_view("out", out, shape, out=True)
    pl = _arg("lse", lse, (B, NH, T), out=True)
    for oname, o in (("out", out), ("lse", lse)):
        for iname, i in (("q", q), ("k", k), ("v", v)):
            _no_overlap(oname, o, iname, i, allow_same=False)
    _status(lib.attention_forward(po, pl, pq, pk, pv, B, T, NH, hs, so, sq, sk, sv),
            "attention_forward")


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse):
    shape = B, T, NH, hs = _att_shape(q)
    grads = (("dq", dq), ("dk", dk), ("dv", dv))
    inputs = (("dout", dout), ("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse))
    (pdq, sdq), (pdk, sdk), (pdv, sdv) = (_att_view(n, a, shape, out=True) for n, a in grads)
    (pdo, sdo), (pq, sq), (pk, sk), (pv, sv), (po, so) = (
        _att_view(n, a, shape) for n, a in inputs[:5])
    pl = _arg("lse", lse, (B, NH, T))
    for oname, o in grads:
        for iname, i in inputs:
            _no_overlap(oname, o, iname, i, allow_same=False)
    _status(lib.attention_backward(pdq, pdk, pdv, pdo, pq, pk, pv, po, pl, B, T, NH, hs,
                                   sdq, sdk, sdv, sdo, sq, sk, sv, so),
            "attention_backward")


def attention_scratch_bytes(T: int, hs: int, backward: bool) -> int:
    """Bytes of scratch each thread mallocs per attention call: O(T * hs), no T^2 term."""
    return 4 * int(lib.attention_scratch_floats(T, hs, 1 if backward else 0))


# ---- end attention ----


def num_threads() -> int:
    return int(lib.codette_num_threads())


def build_info() -> str:
    return ffi.string(lib.codette_build_info()).decode()

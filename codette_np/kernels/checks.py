"""The boundary contract of every compiled kernel, one function per kernel.

The C and Numba wrappers call the function of the same name here before any
array reaches compiled code, so the same call raises the same error (type and
message), or none, on both backends:

- TypeError: not a numpy array, or the wrong dtype (float32; int32 ids;
  uint8 decay mask);
- ValueError: a wrong shape, an output that is not writable, an array that is
  not C-contiguous (q/k/v-style (B, T, NH, hs) views excepted, see `view4`),
  an output that partly overlaps an input (an exact alias is allowed where
  ref.py says the kernel works in place), a bad scalar;
- IndexError: a token or target id outside the vocabulary (as numpy's own
  indexing raises).

Each function returns the sizes its kernel needs.
"""

from __future__ import annotations

import numpy as np

F32 = np.dtype(np.float32)


def array(name: str, a, shape=None, out: bool = False, dtype=F32, ndim: int | None = None,
          contiguous: bool = True):
    """a is an ndarray of `dtype` (and `shape` or `ndim`), C-contiguous, writable if an output."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: kernels take {np.dtype(dtype)}, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    if out and not a.flags.writeable:
        raise ValueError(f"{name} is an output and must be writable")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous array")
    return a


def ids(name: str, a, n=None):
    """A 1-D int32 array (of length n)."""
    array(name, a, None if n is None else (n,), dtype=np.int32, ndim=1)
    return a


def id_range(name: str, a, lo: int, hi: int):
    """Every id in [lo, hi): a bad id would read or write out of bounds."""
    if a.size and (int(a.min()) < lo or int(a.max()) >= hi):
        raise IndexError(f"{name} holds ids outside [{lo}, {hi})")


def base_of(a: np.ndarray) -> np.ndarray:
    """The ndarray owning a's memory."""
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    return base


def view4(name: str, a, shape, out: bool = False):
    """A float32 (B, T, NH, hs) view whose last two dims are contiguous and whose
    memory belongs to a C-contiguous array: e.g. q inside the (N, 3C) qkv buffer.
    Returns (offset of its first element in the base, batch stride, time stride),
    in elements (a stride is 0 where that dim has one entry)."""
    array(name, a, shape, out, contiguous=False)
    isz = a.itemsize
    st = a.strides
    if any(s < 0 or s % isz for n, s in zip(a.shape, st) if n > 1):
        raise ValueError(f"{name}: strides {st} must be non-negative multiples of {isz}")
    if (a.shape[3] > 1 and st[3] != isz) or (a.shape[2] > 1 and st[2] != a.shape[3] * isz):
        raise ValueError(f"{name}: the last two dims (NH, hs) must be contiguous, strides {st}")
    base = base_of(a)
    if not base.flags.c_contiguous:
        raise ValueError(f"{name}: the array owning the view's memory must be C-contiguous")
    off = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    end = off + sum((n - 1) * s for n, s in zip(a.shape, st)) + isz
    if off < 0 or off % isz or end > base.nbytes:
        raise ValueError(f"{name}: view lies outside its base array")
    sb = st[0] // isz if a.shape[0] > 1 else 0
    stt = st[1] // isz if a.shape[1] > 1 else 0
    return off // isz, sb, stt


def no_overlap(out_name: str, out, in_name: str, inp, allow_same: bool = True):
    """An output may be its input exactly (same memory, same layout), nothing in between."""
    if not np.may_share_memory(out, inp):
        return
    same = (out.__array_interface__["data"][0] == inp.__array_interface__["data"][0]
            and out.strides == inp.strides and out.shape == inp.shape)
    if not (same and allow_same):
        raise ValueError(f"{out_name} overlaps {in_name}"
                         + ("" if allow_same else "; this kernel needs separate buffers")
                         + " (only an exact alias is allowed where ref.py says so)")


def _rows_of(name: str, a, what: str):
    """(rows, last dim) of an array with at least one dim."""
    if a.ndim < 1:
        raise ValueError(f"{what}: {name} must have at least one dim")
    O = a.shape[-1]
    return (a.size // O if O else 0), O


# ---------------------------------------------------------------------------
# one function per kernel (the argument order of ref.py)


def embedding_forward(out, tokens, wte):
    array("wte", wte, ndim=2)
    V, C = wte.shape
    ids("tokens", tokens)
    N = tokens.shape[0]
    array("out", out, (N, C), out=True)
    no_overlap("out", out, "wte", wte, allow_same=False)
    id_range("tokens", tokens, 0, V)
    return N, V, C


def embedding_backward(dwte, dout, tokens):
    array("dwte", dwte, out=True, ndim=2)
    V, C = dwte.shape
    ids("tokens", tokens)
    N = tokens.shape[0]
    array("dout", dout, (N, C))
    no_overlap("dwte", dwte, "dout", dout, allow_same=False)
    id_range("tokens", tokens, 0, V)
    return N, V, C


def layernorm_forward(out, mean, rstd, inp, weight, bias, eps):
    array("inp", inp, ndim=2)
    N, C = inp.shape
    array("out", out, (N, C), out=True)
    array("mean", mean, (N,), out=True)
    array("rstd", rstd, (N,), out=True)
    array("weight", weight, (C,))
    array("bias", bias, (C,))
    no_overlap("out", out, "inp", inp)
    return N, C


def _layernorm_backward(dx_name, dx, dweight, dbias, dout, inp, weight, mean, rstd, allow_same):
    array("inp", inp, ndim=2)
    N, C = inp.shape
    array(dx_name, dx, (N, C), out=True)
    array("dweight", dweight, (C,), out=True)
    array("dbias", dbias, (C,), out=True)
    array("dout", dout, (N, C))
    array("weight", weight, (C,))
    array("mean", mean, (N,))
    array("rstd", rstd, (N,))
    no_overlap(dx_name, dx, "dout", dout, allow_same)
    no_overlap(dx_name, dx, "inp", inp, allow_same)
    for name, a in (("dweight", dweight), ("dbias", dbias)):
        for other, b in ((dx_name, dx), ("dout", dout), ("inp", inp), ("weight", weight)):
            no_overlap(name, a, other, b, allow_same=False)
    no_overlap("dweight", dweight, "dbias", dbias, allow_same=False)
    return N, C


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    return _layernorm_backward("dinp", dinp, dweight, dbias, dout, inp, weight, mean, rstd, True)


def layernorm_backward_add(dresid, dweight, dbias, dout, inp, weight, mean, rstd):
    return _layernorm_backward("dresid", dresid, dweight, dbias, dout, inp, weight, mean, rstd, False)


def bias_forward(out, bias):
    array("out", out, out=True)
    array("bias", bias, ndim=1)
    N, O = _rows_of("out", out, "bias_forward")
    if out.shape[-1] != bias.shape[0]:
        raise ValueError(f"bias_forward: out {out.shape} must end in bias's length, bias {bias.shape}")
    no_overlap("out", out, "bias", bias, allow_same=False)
    return N, O


def bias_backward(dbias, dout):
    array("dout", dout)
    N, O = _rows_of("dout", dout, "bias_backward")
    array("dbias", dbias, (O,), out=True)
    no_overlap("dbias", dbias, "dout", dout, allow_same=False)
    return N, O


def residual_forward(out, resid, branch, bias):
    array("resid", resid, ndim=2)
    N, C = resid.shape
    array("out", out, (N, C), out=True)
    array("branch", branch, (N, C))
    array("bias", bias, (C,))
    no_overlap("out", out, "resid", resid)
    no_overlap("out", out, "branch", branch)
    no_overlap("out", out, "bias", bias, allow_same=False)
    return N, C


def residual_backward(dresid, dbranch):
    array("dresid", dresid, out=True)
    array("dbranch", dbranch, dresid.shape)
    no_overlap("dresid", dresid, "dbranch", dbranch, allow_same=False)
    return dresid.size


def _rope(out_name, out, in_name, inp, cos, sin):
    array(in_name, inp, contiguous=False)
    if inp.ndim != 4 or inp.shape[3] % 2:
        raise ValueError(f"{in_name} must be (B, T, NH, hs) with hs even, got shape {inp.shape}")
    B, T, NH, hs = inp.shape
    o = view4(out_name, out, inp.shape, out=True)
    i = view4(in_name, inp, inp.shape)
    array("cos", cos, (T, hs // 2))
    array("sin", sin, (T, hs // 2))
    no_overlap(out_name, out, in_name, inp)
    for name, a in (("cos", cos), ("sin", sin)):
        no_overlap(out_name, out, name, a, allow_same=False)
    return (B, T, NH, hs), o, i


def rope_forward(out, inp, cos, sin):
    return _rope("out", out, "inp", inp, cos, sin)


def rope_backward(dinp, dout, cos, sin):
    return _rope("dinp", dinp, "dout", dout, cos, sin)


def gelu_forward(out, inp):
    array("inp", inp)
    array("out", out, inp.shape, out=True)
    no_overlap("out", out, "inp", inp)
    return inp.size


def gelu_backward(dinp, dout, inp):
    array("inp", inp)
    array("dinp", dinp, inp.shape, out=True)
    array("dout", dout, inp.shape)
    no_overlap("dinp", dinp, "dout", dout)
    no_overlap("dinp", dinp, "inp", inp)
    return inp.size


def bias_gelu_forward(out, pre, bias):
    array("pre", pre, out=True)
    array("bias", bias, ndim=1)
    N, F = _rows_of("pre", pre, "bias_gelu_forward")
    if pre.shape[-1] != bias.shape[0]:
        raise ValueError(f"bias_gelu_forward: pre {pre.shape} must end in bias's length, bias {bias.shape}")
    array("out", out, pre.shape, out=True)
    no_overlap("out", out, "pre", pre, allow_same=False)  # pre keeps the pre-activation
    no_overlap("out", out, "bias", bias, allow_same=False)
    no_overlap("pre", pre, "bias", bias, allow_same=False)
    return N, F


def gelu_bias_backward(dinp, dbias, dout, pre):
    array("pre", pre)
    N, F = _rows_of("pre", pre, "gelu_bias_backward")
    array("dinp", dinp, pre.shape, out=True)
    array("dbias", dbias, (F,), out=True)
    array("dout", dout, pre.shape)
    no_overlap("dinp", dinp, "dout", dout)
    no_overlap("dinp", dinp, "pre", pre)
    for name, a in (("dinp", dinp), ("dout", dout), ("pre", pre)):
        no_overlap("dbias", dbias, name, a, allow_same=False)
    return N, F


def crossentropy_forward_backward(losses, dlogits, logits, targets, dscale):
    array("logits", logits, ndim=2)
    R, V = logits.shape
    array("losses", losses, (R,), out=True)
    array("dlogits", dlogits, (R, V), out=True)
    ids("targets", targets, R)
    no_overlap("dlogits", dlogits, "logits", logits)
    no_overlap("losses", losses, "logits", logits, allow_same=False)
    no_overlap("losses", losses, "dlogits", dlogits, allow_same=False)
    id_range("targets", targets, -1, V)
    return R, V


def _att_view(name, a, shape, out=False):
    """(offset, row stride): a view4 whose rows are evenly spaced, batch after batch."""
    off, sb, st = view4(name, a, shape, out)
    B, T, NH, hs = shape
    row = st if T > 1 else (sb if B > 1 else NH * hs)
    if row < NH * hs:
        raise ValueError(f"{name}: rows of {NH * hs} floats overlap (row stride {row})")
    if B > 1 and sb != T * row:
        raise ValueError(f"{name}: batch stride {sb} must be T * row stride = {T * row} elements")
    return off, row


def _att_shape(q):
    if not isinstance(q, np.ndarray) or q.ndim != 4:
        raise ValueError("attention: q must be a (B, T, NH, hs) array")
    return q.shape


def attention_forward(out, lse, q, k, v):
    """Returns shape and the (offset in its base, row stride) of q, k, v and out."""
    shape = B, T, NH, hs = _att_shape(q)
    rows = [_att_view(n, a, shape) for n, a in (("q", q), ("k", k), ("v", v))]
    rows.append(_att_view("out", out, shape, out=True))
    array("lse", lse, (B, NH, T), out=True)
    for oname, o in (("out", out), ("lse", lse)):
        for iname, i in (("q", q), ("k", k), ("v", v)):
            no_overlap(oname, o, iname, i, allow_same=False)
    no_overlap("out", out, "lse", lse, allow_same=False)
    return shape, rows


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse):
    """Returns shape and the (offset in its base, row stride) of dq, dk, dv, dout, q, k, v and out."""
    shape = B, T, NH, hs = _att_shape(q)
    grads = (("dq", dq), ("dk", dk), ("dv", dv))
    inputs = (("dout", dout), ("q", q), ("k", k), ("v", v), ("out", out))
    rows = [_att_view(n, a, shape, out=True) for n, a in grads]
    rows += [_att_view(n, a, shape) for n, a in inputs]
    array("lse", lse, (B, NH, T))
    for oname, o in grads:  # (dq, dk, dv interleave in one buffer, as q, k, v do)
        for iname, a in inputs + (("lse", lse),):
            no_overlap(oname, o, iname, a, allow_same=False)
    return shape, rows


def grad_norm_sq(grads):
    array("grads", grads, ndim=1)
    return grads.shape[0]


from codette_np.kernels.ref import Q8_BLOCK  # noqa: E402  (the one definition)


def _adamw(name, params, grads, decay, step, states, params_dtype=F32):
    """The checks every AdamW kernel shares. states: (name, array, dtype, length) with length
    "n" (one per parameter) or "blocks" (one per Q8_BLOCK); params float32 or, for the bf16
    weights' kernel, uint16 bits; returns n."""
    array("params", params, out=True, ndim=1, dtype=params_dtype)
    n = params.shape[0]
    array("grads", grads, (n,))
    lengths = {"n": n, "blocks": -(-n // Q8_BLOCK)}
    for s_name, a, dtype, length in states:
        array(s_name, a, (lengths[length],), out=True, dtype=dtype)
    named = (("params", params), ("grads", grads), *((s_name, a) for s_name, a, _, _ in states))
    for i, (a_name, a) in enumerate(named):
        for b_name, b in named[i + 1:]:
            no_overlap(a_name, a, b_name, b, allow_same=False)
    if not (isinstance(decay, (bool, np.bool_)) or (isinstance(decay, (int, np.integer)) and decay in (0, 1))):
        raise TypeError(f"{name}: decay is True or False, got {decay!r}")
    if int(step) < 1:
        raise ValueError(f"{name}: step counts from 1, got {step}")
    return n


def adamw_step(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay, step, grad_scale):
    return _adamw("adamw_step", params, grads, decay, step, (("m", m, F32, "n"), ("v", v, F32, "n")))


def adamw_step_bf16(params, grads, m, v, decay, lr, beta1, beta2, eps, weight_decay, step, grad_scale,
                    seed, offset):
    _seed_offset("adamw_step_bf16", seed, offset)
    return _adamw("adamw_step_bf16", params, grads, decay, step,
                  (("m", m, np.uint16, "n"), ("v", v, np.uint16, "n")))


def adamw_step_q8(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps, weight_decay,
                  step, grad_scale, seed, offset):
    _seed_offset("adamw_step_q8", seed, offset)
    return _adamw("adamw_step_q8", params, grads, decay, step,
                  (("m", m, np.uint8, "n"), ("v", v, np.uint8, "n"),
                   ("m_absmax", m_absmax, F32, "blocks"), ("v_absmax", v_absmax, F32, "blocks")))


def adamw_step_q8_bf16w(params, grads, m, v, m_absmax, v_absmax, decay, lr, beta1, beta2, eps,
                        weight_decay, step, grad_scale, seed, offset):
    _seed_offset("adamw_step_q8_bf16w", seed, offset)
    return _adamw("adamw_step_q8_bf16w", params, grads, decay, step,
                  (("m", m, np.uint8, "n"), ("v", v, np.uint8, "n"),
                   ("m_absmax", m_absmax, F32, "blocks"), ("v_absmax", v_absmax, F32, "blocks")),
                  params_dtype=np.uint16)


def _seed_offset(name, seed, offset):
    for what, x in (("seed", seed), ("offset", offset)):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= int(x) < 1 << 63:
            raise ValueError(f"{name}: {what} must be an integer in [0, 2^63), got {x!r}")


def bf16_to_f32(out, h):
    array("h", h, ndim=1, dtype=np.uint16)
    array("out", out, h.shape, out=True)
    no_overlap("out", out, "h", h, allow_same=False)
    return h.shape[0]


def f32_to_bf16_sr(out, x, seed, step, offset):
    array("x", x, ndim=1)
    array("out", out, x.shape, out=True, dtype=np.uint16)
    no_overlap("out", out, "x", x, allow_same=False)
    _seed_offset("f32_to_bf16_sr", seed, offset)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or int(step) < 0:
        raise ValueError(f"f32_to_bf16_sr: step must be an integer >= 0, got {step!r}")
    return x.shape[0]

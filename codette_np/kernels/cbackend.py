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

# ---- end element-wise and row kernels ----

# ---- attention ----

# ---- end attention ----


def num_threads() -> int:
    return int(lib.codette_num_threads())


def build_info() -> str:
    return ffi.string(lib.codette_build_info()).decode()

"""The one dispatch point for kernels.

    CODETTE_BACKEND=c|numba|numpy   (or Model(..., backend=...))

Unset means the best available: C, then Numba, then NumPy. A backend that is
named but unavailable is an error saying why. Falling back is never silent:
it warns once, naming the backend chosen and the reason.

A backend is a `Backend` object holding one function per kernel (the names
and argument order of codette_np/kernels/ref.py). Kernels a backend does
not implement come from the NumPy reference, and `Backend.sources` says
which module each kernel comes from.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from codette_np.kernels import ref

ORDER = ("c", "numba", "numpy")
KERNELS = (
    "embedding_forward", "embedding_backward",
    "layernorm_forward", "layernorm_backward", "layernorm_backward_add",
    "bias_forward", "bias_backward",
    "residual_forward", "residual_backward",
    "rope_forward", "rope_backward",
    "attention_forward", "attention_backward",
    "gelu_forward", "gelu_backward",
    "bias_gelu_forward", "gelu_bias_backward",
    "crossentropy_forward_backward",
    "grad_norm_sq", "adamw_step", "adamw_step_bf16", "adamw_step_q8",
    "adamw_step_q8_bf16w", "bf16_to_f32", "f32_to_bf16_sr",
)


class BackendUnavailable(RuntimeError):
    pass


class Backend:
    def __init__(self, name: str, module=None):
        self.name = name
        self.sources = {}
        for k in KERNELS:
            fn = getattr(module, k, None) if module is not None else None
            self.sources[k] = name if fn is not None else "numpy"
            setattr(self, k, fn if fn is not None else getattr(ref, k))
        self.module = module

    def __repr__(self):
        return f"<codette_np backend {self.name}>"


_cache: dict[str, Backend] = {}
_errors: dict[str, str] = {}
_warned = False


def _load(name: str) -> Backend:
    if name in _cache:
        return _cache[name]
    if name in _errors:
        raise BackendUnavailable(_errors[name])
    try:
        if name == "numpy":
            b = Backend("numpy", None)
        elif name == "c":
            from codette_np.kernels import cbackend
            b = Backend("c", cbackend)
        elif name == "numba":
            from codette_np.kernels import numba_backend
            b = Backend("numba", numba_backend)
        else:
            raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(ORDER)}")
    except Exception as e:  # noqa: BLE001 - a broken install raises more than ImportError
        reason = {
            "c": f"the C extension codette_np._ckernels is not built ({e}); "
                 "reinstall with a C compiler (gcc/clang) available",
            "numba": f"numba is not importable ({e}); pip install numba",
        }.get(name, str(e))
        _errors[name] = reason
        raise BackendUnavailable(f"backend {name!r} is unavailable: {reason}") from None
    _cache[name] = b
    return b


def available() -> dict[str, str | None]:
    """name -> None if usable, else the reason it is not."""
    out = {}
    for n in ORDER:
        try:
            _load(n)
            out[n] = None
        except BackendUnavailable as e:
            out[n] = str(e)
    return out


def get(name: str | None = None, dtype=np.float32) -> Backend:
    """The backend to run: `name`, else CODETTE_BACKEND, else the best available.

    float64 (the oracle dtype) always runs on the NumPy reference.
    """
    global _warned
    requested = name or os.environ.get("CODETTE_BACKEND") or None
    if requested is not None:
        requested = requested.strip().lower()
        if requested not in ORDER:
            raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(ORDER)}")
    if np.dtype(dtype) == np.float64:
        if requested not in (None, "numpy"):
            raise ValueError(f"backend {requested!r} runs float32 only; float64 models use 'numpy'")
        return _load("numpy")
    if requested is not None:
        return _load(requested)  # raises BackendUnavailable with the reason
    reasons = []
    for n in ORDER:
        try:
            b = _load(n)
        except BackendUnavailable as e:
            reasons.append(str(e))
            continue
        if reasons and not _warned:
            _warned = True
            warnings.warn(f"codette_np: using the {n!r} kernel backend because " + "; ".join(reasons),
                          RuntimeWarning, stacklevel=3)
        return b
    raise AssertionError("the numpy backend is always available")


def check_environment() -> None:
    """ValueError with a one-line message when CODETTE_BACKEND names no backend."""
    env = os.environ.get("CODETTE_BACKEND")
    if env and env.strip().lower() not in ORDER:
        raise ValueError(f"CODETTE_BACKEND={env!r} is not a kernel backend; use one of "
                         f"{', '.join(ORDER)}, or unset it")


def default_name() -> str:
    """Name of the backend a Model built now would use."""
    return get().name

"""bf16 matrix products with float32 accumulation (csrc/gemm_bf16.c).

    matmul(a, b, out, accumulate=False)    out (M, N) [+]= a (M, K) @ b (K, N)

a and b are bf16 bits (uint16 arrays, any 2-D strides: `w.T` is a view, not a
copy); out is float32 with unit column stride. The micro-kernel path is chosen
at run time from what the CPU and the OS allow:

    amx, avx512bf16, avx512, avx2, neon, scalar       (the best available first)

CODETTE_GEMM=<path> (or set_path) forces one; a forced path that cannot run
here is an error saying why. Without the C extension the products run as
numpy float32 products of the decoded operands (path "numpy").
"""

from __future__ import annotations

import os

import numpy as np

PATHS = ("scalar", "avx2", "avx512", "avx512bf16", "amx", "neon")  # C's GEMM_* order
PREFERENCE = ("amx", "avx512bf16", "avx512", "avx2", "neon", "scalar")


class GemmUnavailable(RuntimeError):
    pass


try:
    from codette_np import _ckernels

    _ffi, _lib = _ckernels.ffi, _ckernels.lib
    _lib.gemm_bf16_available  # an extension built before the GEMM existed has no such symbol
except (ImportError, AttributeError):
    _ffi = _lib = None

_chosen: str | None = None  # the path in use, once decided


def available() -> dict[str, str | None]:
    """path -> None if it can run here, else the reason it cannot."""
    if _lib is None:
        return {p: "the C extension is not built" for p in PATHS} | {"numpy": None}
    bits = _lib.gemm_bf16_available()
    return {p: None if bits >> i & 1 else _ffi.string(_lib.gemm_bf16_unavailable_reason(i)).decode()
            for i, p in enumerate(PATHS)}


def runnable() -> list[str]:
    """The paths that can run here, the best first."""
    av = available()
    return [p for p in (*PREFERENCE, "numpy") if av.get(p, "") is None]


def set_path(name: str | None):
    """Force micro-kernel path `name` (None: the best available, ignoring CODETTE_GEMM)."""
    global _chosen
    if name is None:
        name = runnable()[0]
    name = name.strip().lower()
    av = available()
    if name not in av:
        raise ValueError(f"unknown GEMM path {name!r}; choose one of {', '.join(PREFERENCE)}")
    if av[name] is not None:
        raise GemmUnavailable(f"GEMM path {name!r} cannot run here: {av[name]} "
                              f"(runnable here: {', '.join(runnable())})")
    if _lib is not None:
        _lib.gemm_bf16_set_path(PATHS.index(name))
    _chosen = name


def path() -> str:
    """The path the products run on: CODETTE_GEMM if set, else the best available."""
    if _chosen is None:
        forced = os.environ.get("CODETTE_GEMM", "").strip()
        try:
            set_path(forced or None)
        except (ValueError, GemmUnavailable) as e:
            raise GemmUnavailable(f"CODETTE_GEMM={forced}: {e}") from None
    return _chosen


def _check(a: np.ndarray, b: np.ndarray, out: np.ndarray):
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint16 or x.ndim != 2:
            raise TypeError(f"{name} must be a 2-D uint16 array of bf16 bits, got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 2:
        raise TypeError(f"out must be a 2-D float32 array, got {getattr(out, 'dtype', type(out).__name__)}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2 or out.shape != (M, N):
        raise ValueError(f"shapes do not match: a {a.shape} @ b {b.shape} -> out {out.shape}")
    if out.strides[1] != 4 or out.strides[0] % 4 or (M > 1 and out.strides[0] < 4 * N):
        raise ValueError("out must have unit column stride and non-overlapping rows")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    for name, x in (("a", a), ("b", b)):
        if any(s % 2 for s in x.strides):
            raise ValueError(f"{name} has strides {x.strides} that are not whole elements")


def _ptr(x: np.ndarray, ctype: str):
    """Pointer to x's first element (x may be any strided view)."""
    base = x
    while isinstance(base.base, np.ndarray):
        base = base.base
    start = x.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return _ffi.cast(ctype, _ffi.from_buffer(base, require_writable=False)) + start // np.dtype(x.dtype).itemsize


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """out (M, N) = [out +] a (M, K) @ b (K, N) for bf16 bits a, b; float32 accumulation."""
    _check(a, b, out)
    (M, K), N = a.shape, b.shape[1]
    if M == 0 or N == 0:
        return out
    p = path()
    if p == "numpy":
        prod = bits_to_f32(a) @ bits_to_f32(b)
        if accumulate:
            out += prod
        else:
            out[...] = prod
        return out
    rc = _lib.gemm_bf16(_ptr(out, "float *"), out.strides[0] // 4,
                        _ptr(a, "uint16_t *"), a.strides[0] // 2, a.strides[1] // 2,
                        _ptr(b, "uint16_t *"), b.strides[0] // 2, b.strides[1] // 2,
                        M, N, K, int(bool(accumulate)))
    if rc != 0:
        raise MemoryError("gemm_bf16: could not allocate its packing buffers")
    return out


def to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 -> bf16 bits (uint16, same shape), rounded to nearest even."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if out is None:
        out = np.empty(x.shape, np.uint16)
    if out.shape != x.shape or out.dtype != np.uint16:
        raise ValueError(f"out must be uint16 of shape {x.shape}")
    if _lib is not None and x.flags.c_contiguous and out.flags.c_contiguous:
        _lib.f32_to_bf16_rne(_ffi.cast("uint16_t *", _ffi.from_buffer(out)),
                             _ffi.cast("float *", _ffi.from_buffer(x, require_writable=False)), x.size)
    else:
        from codette_np.kernels.ref import bf16_round_nearest

        out[...] = bf16_round_nearest(x)
    return out


def to_bf16_in_place(x: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 array rounded to bf16 bits (nearest even) into the first half of its
    own bytes; returns those bits as a uint16 array of x's shape (x's values are gone)."""
    if x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("to_bf16_in_place needs a writable C-contiguous float32 array")
    out = x.reshape(-1).view(np.uint16)[:x.size].reshape(x.shape)
    if _lib is not None:
        _lib.f32_to_bf16_rne_in_place(_ffi.cast("float *", _ffi.from_buffer(x)), x.size)
    else:
        from codette_np.kernels.ref import bf16_round_nearest

        step = 1 << 16  # block b's bits land on bytes of blocks before it or of itself, already read
        for i in range(0, x.size, step):
            out.reshape(-1)[i:i + step] = bf16_round_nearest(x.reshape(-1)[i:i + step].copy())
    return out


def bits_to_f32(h: np.ndarray) -> np.ndarray:
    """bf16 bits -> float32 (exact)."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float64 oracle: a @ b of the decoded bf16 operands, in float64."""
    from codette_np.kernels.ref import bf16_decode

    return bf16_decode(np.asarray(a)) @ bf16_decode(np.asarray(b))

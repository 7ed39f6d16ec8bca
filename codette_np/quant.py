"""Tensor storage types for GGUF export: encoders and decoders in NumPy.

Supported storage types (names as used across codette_np):

    f32   float32, 4 bytes / value
    f16   IEEE half, round-to-nearest-even, 2 bytes / value
    bf16  bfloat16, round-to-nearest-even, NaN forced quiet, 2 bytes / value
    q8_0  blocks of 32: fp16 scale d = amax / 127, int8 q = round-half-away(x / d)
    q4_0  blocks of 32: fp16 scale d = (signed value of largest magnitude) / -8,
          4-bit q = min(15, trunc(x / d + 8.5)); element j in the low nibble and
          element j + 16 in the high nibble of byte j

The block encoders reproduce ggml's reference quantizers (ggml-quants.c) bit
for bit, including their float32 operation order: the scaled value is
x * (1 / d), not x / d. `quantize` returns what gguf's GGUFWriter expects:
float32 / float16 arrays for f32 / f16, and uint8 arrays of shape
(*shape[:-1], row_bytes) for bf16 / q8_0 / q4_0.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType

DTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")

GGML_TYPE = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
}
DTYPE_OF_GGML = {int(v): k for k, v in GGML_TYPE.items()}

# `general.file_type` (llama.cpp's LLAMA_FTYPE_*) for a file stored "mostly" as dtype.
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}

QK = 32  # values per q8_0 / q4_0 block
# dtype -> (values per block, bytes per block)
BLOCK = {"f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (QK, 34), "q4_0": (QK, 18)}

# Rows are encoded in chunks of about this many values to bound temporaries.
_CHUNK_VALUES = 1 << 20


def _check_dtype(dtype: str) -> str:
    if dtype not in BLOCK:
        raise ValueError(f"unknown storage dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype


def ggml_type(dtype: str) -> GGMLQuantizationType:
    """Storage dtype name -> gguf.GGMLQuantizationType."""
    return GGML_TYPE[_check_dtype(dtype)]


def file_type(dtype: str) -> int:
    """Storage dtype name -> value of the `general.file_type` key."""
    return FILE_TYPE[_check_dtype(dtype)]


def supported(dtype: str, shape) -> bool:
    """Whether a tensor of `shape` can be stored as `dtype`.

    Block types need a matrix whose rows (last dim) are whole blocks.
    """
    _check_dtype(dtype)
    shape = tuple(shape)
    if len(shape) == 0:
        return False
    block = BLOCK[dtype][0]
    if block == 1:
        return True
    return len(shape) == 2 and shape[-1] % block == 0


def storage_dtype(dtype: str, shape) -> str:
    """The type a tensor of `shape` is stored as when the file type is `dtype`.

    1-D tensors (norms, biases) are always f32; a matrix whose row length is
    not a multiple of the block size falls back to f16 for q8_0 / q4_0.
    """
    _check_dtype(dtype)
    shape = tuple(shape)
    if len(shape) <= 1:
        return "f32"
    if supported(dtype, shape):
        return dtype
    return "f16"


def row_bytes(dtype: str, n: int) -> int:
    """Bytes that a row of n values takes when stored as dtype."""
    block, size = BLOCK[_check_dtype(dtype)]
    if n % block:
        raise ValueError(f"row length {n} is not a multiple of the {dtype} block size {block}")
    return n // block * size


def nbytes(dtype: str, shape) -> int:
    """Bytes that a tensor of `shape` takes when stored as dtype."""
    shape = tuple(int(s) for s in shape)
    rows = 1
    for s in shape[:-1]:
        rows *= s
    return rows * row_bytes(dtype, shape[-1])


# --------------------------------------------------------------------------- encoders

def _round_half_away(v: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C roundf), exactly in float32."""
    a = np.abs(v)
    f = np.floor(a)
    # a - f is exact, so this is a tie-correct test (unlike trunc(a + 0.5)).
    r = f + (a - f >= np.float32(0.5)).astype(np.float32)
    return np.copysign(r, v)


def _q8_0_blocks(x: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> (n, 34) uint8."""
    n = x.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)  # (n, 1)
        inv = np.zeros_like(d)
        np.divide(np.float32(1), d, out=inv, where=d != 0)
        v = _round_half_away(x * inv)  # (n, 32), in [-127, 127] when finite
        # Blocks whose amax is below ~4e-37 overflow 1/d; their fp16 scale is 0,
        # so the codes do not matter: store 0, as ggml does on x86.
        v = np.where(np.isfinite(v), v, np.float32(0))
        out = np.empty((n, 34), dtype=np.uint8)
        out[:, :2] = d.astype(np.float16).view(np.uint8)
    out[:, 2:] = v.astype(np.int8).view(np.uint8)
    return out


def _q4_0_blocks(x: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> (n, 18) uint8."""
    n = x.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        imax = np.abs(x).argmax(axis=1)[:, None]  # first index of the largest |x|
        m = np.take_along_axis(x, imax, axis=1)  # (n, 1), signed
        d = m / np.float32(-8)
        inv = np.zeros_like(d)
        np.divide(np.float32(1), d, out=inv, where=d != 0)
        v = np.trunc(x * inv + np.float32(8.5))  # (n, 32), in [0, 16] when finite
        # Non-finite codes only occur when 1/d overflows (|max| < ~2e-38, fp16
        # scale 0): store 0, as ggml does on x86.
        v = np.where(np.isfinite(v), np.minimum(v, np.float32(15)), np.float32(0))
        out = np.empty((n, 18), dtype=np.uint8)
        out[:, :2] = d.astype(np.float16).view(np.uint8)
    q = v.astype(np.uint8)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << np.uint8(4))
    return out


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), as ggml_compute_fp32_to_bf16."""
    u = x.view(np.uint32)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    # NaN: keep sign and top payload bits, force the quiet bit.
    u = np.where(is_nan, (u & np.uint32(0xFFFF0000)) | np.uint32(0x00400000), u)
    # Round to nearest even. No uint32 overflow: other patterns are at most
    # 0xFF800000 (-inf) and NaNs now end in 0x0000, so adding <= 0x8000 fits.
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def quantize(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Encode a float array for GGUF storage as `dtype`.

    f32 -> float32 array, f16 -> float16 array (same shape);
    bf16 / q8_0 / q4_0 -> uint8 array of shape (*shape[:-1], row_bytes).
    """
    _check_dtype(dtype)
    if np.ndim(arr) == 0:
        raise ValueError("quantize needs an array with at least one dimension")
    x = np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "f32":
        return x
    if dtype == "f16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16)
    if dtype == "bf16":
        return _bf16(x).view(np.uint8).reshape(*x.shape[:-1], 2 * x.shape[-1])

    ncol = x.shape[-1]
    rb = row_bytes(dtype, ncol)  # raises if ncol is not whole blocks
    rows = x.reshape(-1, ncol)  # (R, ncol)
    out = np.empty((rows.shape[0], rb), dtype=np.uint8)  # (R, row_bytes)
    encode = _q8_0_blocks if dtype == "q8_0" else _q4_0_blocks
    step = max(1, _CHUNK_VALUES // max(ncol, 1))
    for r0 in range(0, rows.shape[0], step):
        chunk = rows[r0:r0 + step]
        blocks = encode(chunk.reshape(-1, QK))  # (nb, bytes per block)
        out[r0:r0 + step] = blocks.reshape(chunk.shape[0], rb)
    return out.reshape(*x.shape[:-1], rb)


# --------------------------------------------------------------------------- decoders

def _q8_0_decode(b: np.ndarray) -> np.ndarray:
    """(n, 34) uint8 -> (n, 32) float32."""
    d = b[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    q = b[:, 2:].view(np.int8).astype(np.float32)  # (n, 32)
    with np.errstate(invalid="ignore"):
        return q * d


def _q4_0_decode(b: np.ndarray) -> np.ndarray:
    """(n, 18) uint8 -> (n, 32) float32."""
    d = b[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    qs = b[:, 2:]  # (n, 16)
    q = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)  # (n, 32)
    with np.errstate(invalid="ignore"):
        return (q.astype(np.int8) - np.int8(8)).astype(np.float32) * d


def dequantize(data: np.ndarray, dtype: str, shape) -> np.ndarray:
    """Decode stored tensor data (typed or raw bytes) into float32 of `shape`."""
    _check_dtype(dtype)
    shape = tuple(int(s) for s in shape)
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    want = nbytes(dtype, shape)
    if raw.size != want:
        raise ValueError(
            f"{dtype} data for shape {shape} must be {want} bytes, got {raw.size}")
    if dtype == "f32":
        out = raw.view(np.float32).copy()
    elif dtype == "f16":
        out = raw.view(np.float16).astype(np.float32)
    elif dtype == "bf16":
        out = (raw.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
    elif dtype == "q8_0":
        out = _q8_0_decode(raw.reshape(-1, 34))
    else:
        out = _q4_0_decode(raw.reshape(-1, 18))
    return out.reshape(shape)


"""codette_np.quant against gguf-py's reference encoders, byte for byte."""

import platform

import numpy as np
import pytest
from gguf import GGMLQuantizationType, LlamaFileType
from gguf import quants as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codette_np import quant

DTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
BLOCK_DTYPES = ("q8_0", "q4_0")
# float -> int casts of NaN / inf (which the reference does for blocks whose
# 1/d overflows) are platform-defined; ours store 0, which is what x86 gives.
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def reference(x, dtype):
    with np.errstate(all="ignore"):
        return ref.quantize(np.asarray(x, dtype=np.float32), quant.ggml_type(dtype))


def assert_same_encoding(x, dtype):
    x = np.asarray(x, dtype=np.float32)
    ours = quant.quantize(x, dtype)
    theirs = reference(x, dtype)
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    if X86 or dtype not in BLOCK_DTYPES:
        assert ours.tobytes() == theirs.tobytes()
    else:
        a = quant.dequantize(ours, dtype, x.shape)
        b = quant.dequantize(theirs, dtype, x.shape)
        np.testing.assert_array_equal(a, b)


def error_bound(x, dtype):
    """Bound on |dequantize(quantize(x)) - x| for finite x whose scales fit fp16."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    if dtype == "f32":
        return np.zeros_like(x)
    if dtype == "f16":
        return np.abs(x) * 2.0 ** -11 + 2.0 ** -25
    if dtype == "bf16":
        return np.abs(x) * 2.0 ** -8 + 2.0 ** -134  # relative, plus half the smallest bf16 subnormal
    blocks = x.reshape(-1, quant.QK)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    if dtype == "q8_0":  # half a step, plus the fp16 rounding of d (times |q| <= 127)
        bound = amax / 127 / 2 + amax * 2.0 ** -11 + 127 * 2.0 ** -25 + 1e-30
    else:  # a full step at the clipped end, plus the fp16 rounding of d (|q| <= 8)
        bound = amax / 8 + amax * 2.0 ** -11 + 8 * 2.0 ** -25 + 1e-30
    return np.broadcast_to(bound, blocks.shape).reshape(x.shape)


# --------------------------------------------------------------------------- maps

def test_type_maps():
    assert quant.ggml_type("f32") == GGMLQuantizationType.F32
    assert quant.ggml_type("f16") == GGMLQuantizationType.F16
    assert quant.ggml_type("bf16") == GGMLQuantizationType.BF16
    assert quant.ggml_type("q8_0") == GGMLQuantizationType.Q8_0
    assert quant.ggml_type("q4_0") == GGMLQuantizationType.Q4_0
    assert quant.file_type("f32") == LlamaFileType.ALL_F32 == 0
    assert quant.file_type("f16") == LlamaFileType.MOSTLY_F16 == 1
    assert quant.file_type("q4_0") == LlamaFileType.MOSTLY_Q4_0 == 2
    assert quant.file_type("q8_0") == LlamaFileType.MOSTLY_Q8_0 == 7
    assert quant.file_type("bf16") == LlamaFileType.MOSTLY_BF16 == 32
    for d in DTYPES:
        assert quant.DTYPE_OF_GGML[int(quant.ggml_type(d))] == d
    with pytest.raises(ValueError, match="q5_1"):
        quant.ggml_type("q5_1")
    with pytest.raises(ValueError):
        quant.file_type("F16")


def test_supported_and_storage_dtype():
    for d in DTYPES:
        assert quant.storage_dtype(d, (64,)) == "f32"
        assert quant.storage_dtype(d, (100,)) == "f32"
        assert quant.storage_dtype(d, (64, 96)) == d
    assert quant.supported("q8_0", (64, 96))
    assert not quant.supported("q8_0", (64, 100))
    assert not quant.supported("q4_0", (64, 48))
    assert quant.supported("f16", (64, 100)) and quant.supported("bf16", (3, 5))
    assert quant.storage_dtype("q8_0", (64, 100)) == "f16"
    assert quant.storage_dtype("q4_0", (10, 48)) == "f16"
    assert quant.storage_dtype("bf16", (10, 48)) == "bf16"
    assert quant.storage_dtype("f32", (10, 48)) == "f32"
    with pytest.raises(ValueError):
        quant.storage_dtype("int8", (32, 32))


def test_sizes():
    assert quant.nbytes("f32", (3, 64)) == 3 * 64 * 4
    assert quant.nbytes("f16", (3, 64)) == 3 * 64 * 2
    assert quant.nbytes("bf16", (3, 64)) == 3 * 64 * 2
    assert quant.nbytes("q8_0", (3, 64)) == 3 * 2 * 34
    assert quant.nbytes("q4_0", (3, 64)) == 3 * 2 * 18
    assert quant.nbytes("f32", (7,)) == 28
    with pytest.raises(ValueError, match="multiple"):
        quant.nbytes("q8_0", (3, 40))


# --------------------------------------------------------------------------- encoders

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (64, 256), (33, 96), (2, 3, 64), (4096,)])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_random_normal_matches_reference(dtype, shape, scale):
    if dtype in BLOCK_DTYPES and shape[-1] % 32:
        pytest.skip("not whole blocks")
    # a fixed seed per case (hash() of a str changes with every process)
    rng = np.random.default_rng([DTYPES.index(dtype), *shape, int(scale * 1000)])
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    assert_same_encoding(x, dtype)


@pytest.mark.parametrize("dtype", ("f16", "bf16"))
def test_odd_row_lengths_match_reference(dtype):
    rng = np.random.default_rng(5)
    for shape in [(3, 5), (1, 1), (17, 100), (7,)]:
        assert_same_encoding(rng.standard_normal(shape).astype(np.float32), dtype)


def adversarial_blocks():
    """(n, 32) float32 blocks that stress rounding, scales and special values."""
    rng = np.random.default_rng(0)
    b = []
    b.append(np.zeros(32))  # all zero
    b.append(np.full(32, -0.0))  # all negative zero
    z = np.zeros(32)
    z[::3] = -0.0
    z[5] = 1.0
    b.append(z)
    one_huge = rng.standard_normal(32)
    one_huge[7] = 1e6
    b.append(one_huge)
    neg_huge = rng.standard_normal(32)
    neg_huge[31] = -1e6
    b.append(neg_huge)
    # q8_0 ties: amax 127 -> d = 1 exactly, so x / d = k + 0.5
    t = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5] * 4)
    t[0] = 127.0
    b.append(t)
    # q4_0 ties: max -8 -> d = 1, x * (1/d) + 8.5 lands on integers
    t4 = np.array([-7.5, -0.5, 0.5, 6.5, 7.5, -3.5, 2.5, 7.9999995] * 4)
    t4[0] = -8.0
    b.append(t4)
    t4b = t4.copy()
    t4b[0] = 8.0  # positive max -> d = -1
    b.append(t4b)
    # ties at a scale that is not a power of two
    d = np.float32(0.1)
    k = np.arange(-16, 16) + 0.5
    tt = (k * d).astype(np.float32)
    tt[0] = np.float32(127) * d
    b.append(tt)
    # equal magnitudes of both signs: the first one decides q4_0's sign
    pm = np.zeros(32)
    pm[3], pm[9] = -4.0, 4.0
    b.append(pm)
    pm2 = -pm
    b.append(pm2)
    # large magnitudes that stay finite (fp16 scale overflows to inf)
    big = rng.standard_normal(32) * 1e30
    b.append(big)
    b.append(np.full(32, 3.4028235e38))
    mx = rng.standard_normal(32)
    mx[0] = -3.4028235e38
    b.append(mx)
    b.append(np.full(32, 65504.0 * 127))  # q8_0 scale right at fp16's max
    b.append(np.full(32, 65520.0 * 127))  # ... and just past it
    # denormals: all-denormal blocks (1/d overflows), and mixed with normals
    den = rng.standard_normal(32) * 1e-40
    b.append(den)
    b.append(np.full(32, 1e-45))
    b.append(np.full(32, -1.4e-45))
    mixed = rng.standard_normal(32) * 1e-39
    mixed[4] = 2e-38
    b.append(mixed)
    small = rng.standard_normal(32) * 1e-6  # fp16-subnormal scales
    b.append(small)
    b.append(rng.standard_normal(32) * 3e-37)
    b.append(rng.standard_normal(32) * 1e-37)
    # a block of identical values, and values one ulp apart
    b.append(np.full(32, 0.3))
    b.append(np.nextafter(np.float32(1.0), np.float32(2.0)) * np.ones(32))
    b.append(np.linspace(-1.0, 1.0, 32))
    assert len(b) % 2 == 0  # callers also view these as rows of 64
    return np.stack([np.asarray(x, dtype=np.float32) for x in b])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_blocks_match_reference(dtype):
    blocks = adversarial_blocks()  # (n, 32)
    assert_same_encoding(blocks, dtype)
    # one row per block, and all blocks in one long row
    for x in blocks:
        assert_same_encoding(x[None, :], dtype)
    assert_same_encoding(blocks.reshape(1, -1), dtype)
    assert_same_encoding(blocks.reshape(-1, 64), dtype)


def test_known_encodings():
    # all-zero q8_0 block: d = 0, codes 0
    assert quant.quantize(np.zeros((1, 32), np.float32), "q8_0").tobytes() == bytes(34)
    # all-zero q4_0 block: d = -0.0 (0 / -8), codes 8 -> 0x88
    q4 = quant.quantize(np.zeros((1, 32), np.float32), "q4_0")
    assert q4.tobytes() == bytes([0x00, 0x80]) + bytes([0x88] * 16)
    # q8_0 ties round away from zero
    x = np.zeros((1, 32), np.float32)
    x[0, :4] = [127.0, 0.5, -0.5, 2.5]
    q8 = quant.quantize(x, "q8_0")
    assert q8[0, :2].view(np.float16)[0] == 1.0
    assert list(q8[0, 2:6].view(np.int8)) == [127, 1, -1, 3]
    # q4_0 nibble order: element j low nibble, element j + 16 high nibble of byte j
    y = np.zeros((1, 32), np.float32)
    y[0, 0], y[0, 16], y[0, 1] = -8.0, 3.0, 1.0
    q = quant.quantize(y, "q4_0")
    assert q[0, :2].view(np.float16)[0] == 1.0
    assert q[0, 2] == 0 | (11 << 4)
    assert q[0, 3] == 9 | (8 << 4)


def test_bf16_special_values_match_reference():
    bits = np.array([
        0x7F800001, 0xFF800001, 0x7FC00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F80FFFF,  # NaNs
        0x7F800000, 0xFF800000,  # +-inf
        0x7F7FFFFF, 0xFF7FFFFF,  # +-max finite: round to +-inf
        0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF,  # ties to even, near ties
        0x00000001, 0x80000001, 0x007FFFFF, 0x00008000, 0x00018000,  # denormals
        0x00000000, 0x80000000,  # +-0
    ], dtype=np.uint32)
    x = bits.view(np.float32).reshape(1, -1)
    ours = quant.quantize(x, "bf16")
    assert ours.tobytes() == reference(x, "bf16").tobytes()
    h = ours.view(np.uint16)[0]
    assert h[0] == 0x7FC0 and h[1] == 0xFFC0  # signalling NaN made quiet
    assert h[6] == 0x7F80 and h[8] == 0x7F80 and h[9] == 0xFF80
    assert h[10] == 0x3F80 and h[11] == 0x3F82  # ties to even


def test_f16_special_values_match_reference():
    x = np.array([[np.nan, np.inf, -np.inf, 65504.0, 65520.0, 1e30, -1e30, 6e-8, 2.9e-8,
                   1e-45, -0.0, 0.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11]], np.float32)
    assert quant.quantize(x, "f16").tobytes() == reference(x, "f16").tobytes()
    assert quant.quantize(x, "f32").tobytes() == x.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_rows_match_reference(dtype, monkeypatch):
    monkeypatch.setattr(quant, "_CHUNK_VALUES", 100)  # several rows per chunk, ragged end
    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 64)).astype(np.float32)
    assert_same_encoding(x, dtype)
    monkeypatch.setattr(quant, "_CHUNK_VALUES", 1)  # one row per chunk
    assert_same_encoding(x, dtype)


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([32, 64])),
                 elements=finite_f32),
    dtype=st.sampled_from(DTYPES),
)
def test_property_any_finite_input_matches_reference(x, dtype):
    assert_same_encoding(x, dtype)


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([32, 64])),
                 elements=st.floats(-1e4, 1e4, width=32)),
    dtype=st.sampled_from(DTYPES),
)
def test_property_round_trip_error_bound(x, dtype):
    y = quant.dequantize(quant.quantize(x, dtype), dtype, x.shape)
    assert y.dtype == np.float32 and y.shape == x.shape
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    assert np.all(err <= error_bound(x, dtype))


# --------------------------------------------------------------------------- decoders

@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_matches_reference(dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal((5, 64)) * 3, adversarial_blocks().reshape(-1, 64)])
    x = x.astype(np.float32)
    data = quant.quantize(x, dtype)
    ours = quant.dequantize(data, dtype, x.shape)
    with np.errstate(all="ignore"):
        theirs = ref.dequantize(data, quant.ggml_type(dtype)).reshape(x.shape)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_accepts_raw_bytes(dtype):
    x = np.random.default_rng(3).standard_normal((4, 32)).astype(np.float32)
    data = quant.quantize(x, dtype)
    raw = np.frombuffer(data.tobytes(), dtype=np.uint8)
    np.testing.assert_array_equal(quant.dequantize(raw, dtype, x.shape),
                                  quant.dequantize(data, dtype, x.shape))


def test_f32_round_trip_is_exact():
    x = np.random.default_rng(4).standard_normal((3, 50)).astype(np.float32)
    x[0, 0] = -0.0
    y = quant.dequantize(quant.quantize(x, "f32"), "f32", x.shape)
    assert y.tobytes() == x.tobytes()


def test_round_trip_error_on_normal_data():
    x = np.random.default_rng(6).standard_normal((64, 256)).astype(np.float32)
    errs = {}
    for dtype in DTYPES:
        y = quant.dequantize(quant.quantize(x, dtype), dtype, x.shape)
        assert np.all(np.abs(y - x) <= error_bound(x, dtype))
        errs[dtype] = float(np.sqrt(np.mean((y - x) ** 2)))
    assert errs["f32"] == 0.0
    assert errs["f16"] < errs["bf16"] < errs["q8_0"] < errs["q4_0"] < 0.2


def test_bad_inputs():
    x = np.zeros((2, 40), np.float32)
    for dtype in BLOCK_DTYPES:
        with pytest.raises(ValueError, match="multiple"):
            quant.quantize(x, dtype)
    with pytest.raises(ValueError, match="unknown storage dtype"):
        quant.quantize(x, "q4_1")
    with pytest.raises(ValueError, match="at least one dimension"):
        quant.quantize(np.float32(1.0), "f16")
    with pytest.raises(ValueError, match="bytes"):
        quant.dequantize(np.zeros(33, np.uint8), "q8_0", (1, 32))
    with pytest.raises(ValueError, match="bytes"):
        quant.dequantize(np.zeros(10, np.float32), "f32", (11,))

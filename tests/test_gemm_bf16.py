"""The bf16 GEMM (csrc/gemm_bf16.c) against its float64 oracle, on every path this machine can run.

Tolerance, derived rather than tuned: the operands are bf16, so each product a*b is exact in
float32 (8 + 8 significant bits); only the K-term float32 accumulation rounds, at most once per
term (twice for vdpbf16ps, which adds a pair at a time, and for AMX's accumulation order), so

    |C - C64| <= 2 K u32 sum_k |a_ik| |b_kj|,   u32 = 2^-24

per element. Against float32 operands before rounding to bf16 the bound adds the two input
roundings, 2 u16 + u16^2 with u16 = 2^-8.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from codette_np import gemm

U32, U16 = 2.0 ** -24, 2.0 ** -8
RUNNABLE = [p for p in gemm.runnable() if p != "numpy"]
# edge shapes: one row, K and N off every tile and block size (tiles up to 32, KC 256, NC 2048)
SHAPES = [(1, 1, 1), (1, 33, 17), (7, 5, 3), (6, 16, 256), (13, 33, 257), (33, 31, 64),
          (65, 47, 513), (3, 2051, 40), (130, 97, 300)]


@pytest.fixture(autouse=True)
def _restore_path():
    yield
    gemm.set_path(None)


def _bits(rng, shape, scale=1.0):
    return gemm.to_bf16((rng.standard_normal(shape) * scale).astype(np.float32))


def _layout(x, transposed):
    """x itself, or a transposed copy viewed back: same values, the other memory order."""
    return np.ascontiguousarray(x.T).T if transposed else x


def _bound(a, b):
    absprod = np.abs(gemm.bits_to_f32(a)).astype(np.float64) @ np.abs(gemm.bits_to_f32(b)).astype(np.float64)
    return 2 * a.shape[1] * U32 * absprod


@pytest.mark.parametrize("path", RUNNABLE)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_gemm_matches_float64_oracle(path, M, N, K):
    gemm.set_path(path)
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    a, b = _bits(rng, (M, K)), _bits(rng, (K, N))
    ref = gemm.reference(a, b)
    bound = _bound(a, b)
    # the three products' memory orders: X.W^T (b transposed), dY.W, dY^T.X (a transposed)
    for ta, tb in ((False, True), (False, False), (True, False)):
        out = np.full((M, N), np.nan, np.float32)
        gemm.matmul(_layout(a, ta), _layout(b, tb), out)
        err = np.abs(out.astype(np.float64) - ref)
        assert np.all(err <= bound), f"{path} {ta=} {tb=}: worst error {np.max(err / bound):.3g} x the bound"
    # accumulate: out += a @ b, into a row-strided view of a larger buffer
    big = rng.standard_normal((M, N + 3)).astype(np.float32)
    start = big[:, :N].astype(np.float64)
    gemm.matmul(a, b, big[:, :N], accumulate=True)
    err = np.abs(big[:, :N] - (start + ref))
    assert np.all(err <= bound + 2 * (K + 1) * U32 * np.abs(start))  # start: one more term
    untouched = rng.standard_normal((M, 3)).astype(np.float32)
    big[:, N:] = untouched
    gemm.matmul(a, b, big[:, :N])
    assert np.array_equal(big[:, N:], untouched)


@pytest.mark.parametrize("path", RUNNABLE)
def test_gemm_against_float32_operands(path):
    """From float32 operands: rounding each to bf16 (round to nearest even) adds 2 u16 + u16^2."""
    gemm.set_path(path)
    rng = np.random.default_rng(7)
    M, N, K = 37, 70, 300
    af, bf = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    out = np.empty((M, N), np.float32)
    gemm.matmul(gemm.to_bf16(af), gemm.to_bf16(bf), out)
    ref = af.astype(np.float64) @ bf.astype(np.float64)
    absprod = np.abs(af).astype(np.float64) @ np.abs(bf).astype(np.float64)
    bound = (2 * U16 + U16 ** 2 + 2 * K * U32 * (1 + U16) ** 2) * absprod
    assert np.all(np.abs(out - ref) <= bound)


def test_paths_agree_exactly_with_fp32_widening():
    """The widening paths (avx2, avx512, neon, scalar) accumulate in the same k order within a
    block, so on operands whose partial sums are exact in float32 they agree bit for bit."""
    rng = np.random.default_rng(3)
    M, N, K = 20, 40, 600
    a = gemm.to_bf16(rng.integers(-8, 9, (M, K)).astype(np.float32))  # small integers: exact sums
    b = gemm.to_bf16(rng.integers(-8, 9, (K, N)).astype(np.float32))
    ref = gemm.reference(a, b)
    for p in RUNNABLE:
        gemm.set_path(p)
        out = np.empty((M, N), np.float32)
        gemm.matmul(a, b, out)
        assert np.array_equal(out, ref), p


def test_to_bf16_rounds_to_nearest_even():
    from codette_np.kernels.ref import bf16_round_nearest

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(50_000).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, 50_000),
                        np.array([0.0, -0.0, np.inf, -np.inf, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8,
                                  3.4e38, 1e-40], np.float32)]).astype(np.float32)
    assert np.array_equal(gemm.to_bf16(x), bf16_round_nearest(x))
    assert np.isnan(gemm.bits_to_f32(gemm.to_bf16(np.array([np.nan], np.float32))))[0]


def test_unavailable_path_is_a_clear_error():
    av = gemm.available()
    missing = [p for p in gemm.PREFERENCE if av[p] is not None]
    if not missing:
        pytest.skip("every path runs here")
    with pytest.raises(gemm.GemmUnavailable, match=f"{missing[0]!r} cannot run here: {av[missing[0]]}"):
        gemm.set_path(missing[0])
    with pytest.raises(ValueError, match="unknown GEMM path"):
        gemm.set_path("mmx")


def test_codette_gemm_environment_variable():
    code = "from codette_np import gemm; print(gemm.path())"
    env = dict(os.environ, CODETTE_GEMM="scalar")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "scalar", r.stderr
    missing = [p for p, why in gemm.available().items() if why is not None]
    if missing:
        env["CODETTE_GEMM"] = missing[0]
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.returncode != 0 and f"CODETTE_GEMM={missing[0]}" in r.stderr and "cannot run here" in r.stderr


def test_bad_arguments():
    a, b, out = np.zeros((2, 3), np.uint16), np.zeros((3, 4), np.uint16), np.zeros((2, 4), np.float32)
    with pytest.raises(TypeError, match="uint16"):
        gemm.matmul(a.astype(np.float32), b, out)
    with pytest.raises(ValueError, match="shapes do not match"):
        gemm.matmul(a, b[:2], out)
    with pytest.raises(ValueError, match="unit column stride"):
        gemm.matmul(a, b, np.zeros((2, 8), np.float32)[:, ::2])


def _run_check(cc, flags, runner=()):
    """Build csrc/gemm_bf16.c with tests/gemm_check.c and run it: {path: "ok" | "FAILED" | reason}."""
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as d:
        exe = str(Path(d) / "gemm_check")
        subprocess.run([cc, "-O2", "-std=c11", "-fopenmp", *flags, f"-I{root / 'csrc'}",
                        str(root / "csrc" / "gemm_bf16.c"), str(root / "tests" / "gemm_check.c"), "-lm",
                        "-o", exe], check=True, capture_output=True)
        r = subprocess.run([*runner, exe], capture_output=True, text=True, timeout=300)
    lines = dict(l.split(": ", 1) for l in r.stdout.splitlines() if ": " in l and not l.startswith(" "))
    assert r.returncode == 0, r.stdout + r.stderr
    return lines


def test_portable_build_chooses_its_path_at_run_time():
    """Built for baseline x86-64 (no AVX flags at all), the GEMM still runs every path the CPU
    and OS allow: the micro-kernels carry their own target attributes."""
    import platform
    import shutil

    if platform.machine() not in ("x86_64", "AMD64") or not shutil.which("gcc"):
        pytest.skip("needs gcc on x86-64")
    lines = _run_check("gcc", ["-march=x86-64"])
    for p in RUNNABLE:
        assert lines[p] == "ok", (p, lines[p])


def test_one_k_block_at_a_time():
    """Built so that B is never packed for every k block at once (GEMM_WHOLE_K_BYTES=0), the
    driver's other schedule (B's panel packed per k block, a barrier between) on every path."""
    import platform
    import shutil

    if platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64") or not shutil.which("gcc"):
        pytest.skip("needs gcc")
    lines = _run_check("gcc", ["-DGEMM_WHOLE_K_BYTES=0"])
    for p in RUNNABLE:
        assert lines[p] == "ok", (p, lines[p])


def test_neon_path_under_emulation():
    """The NEON micro-kernel, cross-built for aarch64 and run under qemu (when both are installed:
    apt-get install gcc-aarch64-linux-gnu qemu-user)."""
    import shutil

    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if not (cc and qemu and os.path.isdir("/usr/aarch64-linux-gnu")):
        pytest.skip("no aarch64 cross compiler and qemu-aarch64 here")
    lines = _run_check(cc, ["-march=armv8-a"], runner=(qemu, "-L", "/usr/aarch64-linux-gnu"))
    assert lines["neon"] == "ok" and lines["scalar"] == "ok", lines

"""The bf16 GEMM (codette_np.gemm) at the model's shapes, per path this machine can run, next
to numpy's float32 sgemm (the fp32 step's products) and PyTorch's bf16 matmul (torch_matmul.py
in its own process, when PyTorch is installed), all in one run.

Shapes: B 8 x T 256 = 2048 token rows, micro (C 256, F 1024, V 4096) and mini (C 512,
F 2048, V 16384); the forward product X.W^T, the input gradient dY.W and the weight gradient
dY^T.X of the FFN, and the LM head's forward. Each row: GFLOP/s = 2 M N K / median time.
Where AMX or AVX512-BF16 can run, bf16_peak.c measures that instruction's register-only rate,
and the summary gives each GEMM path's share of it.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codette_np import gemm

N_TOK = 2048
DIMS = {"micro": (256, 1024, 4096), "mini": (512, 2048, 16384)}
HEAD_ROWS = 1024


def _shapes(size):
    """name -> (M, N, K, a transposed, b transposed): the memory orders the model passes."""
    C, F, V = DIMS[size]
    return {"X.Wup^T": (N_TOK, F, C, False, True), "dY.Wdown": (N_TOK, F, C, False, False),
            "dY^T.X up": (F, C, N_TOK, True, False), "head X.E^T": (HEAD_ROWS, V, C, False, True)}


CASES = [(size, name) for size in DIMS for name in _shapes(size)]
PATHS = [p for p in gemm.runnable() if p != "numpy"]


def _operands(M, N, K, ta, tb):
    rng = np.random.default_rng(0)
    a = gemm.to_bf16(rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32))
    b = gemm.to_bf16(rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32))
    return (a.T if ta else a), (b.T if tb else b)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size,name", CASES)
def test_gemm_bf16(record, size, name, path):
    M, N, K, ta, tb = _shapes(size)[name]
    if path == "scalar" and size != "micro":
        pytest.skip("the scalar path is timed at micro's shapes only")
    a, b = _operands(M, N, K, ta, tb)
    out = np.empty((M, N), np.float32)
    gemm.set_path(path)
    try:
        gemm.matmul(a, b, out)
        assert np.allclose(out[:2, :2], gemm.reference(a[:2], b[:, :2]), rtol=1e-3, atol=1e-3)
        record(f"gemm:{size}", f"{name} {M}x{N}x{K}", f"bf16 {path}", lambda: gemm.matmul(a, b, out),
               2 * M * N * K, "flops", rounds=3 if path == "scalar" else 10)
    finally:
        gemm.set_path(None)


@pytest.mark.parametrize("size,name", CASES)
def test_numpy_sgemm(record, size, name):
    M, N, K, ta, tb = _shapes(size)[name]
    a, b = _operands(M, N, K, ta, tb)
    af, bf = gemm.bits_to_f32(a), gemm.bits_to_f32(b)  # same memory orders as the bf16 rows
    af, bf = (af if not ta else np.ascontiguousarray(af.T).T), (bf if not tb else np.ascontiguousarray(bf.T).T)
    out = np.empty((M, N), np.float32)
    record(f"gemm:{size}", f"{name} {M}x{N}x{K}", "numpy sgemm fp32", lambda: np.matmul(af, bf, out=out),
           2 * M * N * K, "flops", rounds=10)


def test_bf16_peak(record_external, tmp_path):
    """The machine's bf16 arithmetic peak per instruction (bf16_peak.c: multiply-adds on registers
    only, on every thread), the ceiling each GEMM path's rate is reported against."""
    import platform
    import shutil

    if platform.machine() not in ("x86_64", "AMD64") or not shutil.which("gcc"):
        pytest.skip("the peak loops are written for x86-64 and built with gcc")
    paths = [p for p in ("amx", "avx512bf16") if p in PATHS]
    if not paths:
        pytest.skip("neither AMX nor AVX512-BF16 can run here")
    exe = tmp_path / "bf16_peak"
    src = os.path.join(os.path.dirname(__file__), "bf16_peak.c")
    subprocess.run(["gcc", "-O2", "-fopenmp", src, "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe), *paths], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for path, gflops in json.loads(out.stdout).items():
        assert gflops > 0
        record_external("gemm:peak", "register-only multiply-adds", f"{path} peak", 1.0, gflops * 1e9, "flops")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("size", list(DIMS))
def test_torch_bf16_matmul(record_external, size):
    from test_bench_step import _cpu_has_bf16

    if size != "micro" and not _cpu_has_bf16():
        pytest.skip("PyTorch's bf16 matmul without AVX512-BF16 or AMX runs at about 1 GFLOP/s: timed at micro only")
    script = os.path.join(os.path.dirname(__file__), "torch_matmul.py")
    shapes = _shapes(size)
    out = subprocess.run([sys.executable, script, json.dumps({n: s[:3] for n, s in shapes.items()})],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    medians = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (M, N, K, *_) in shapes.items():
        record_external(f"gemm:{size}", f"{name} {M}x{N}x{K}", "torch bf16 matmul", medians[name],
                        2 * M * N * K, "flops")

import os

import numpy as np
import pytest
from install_llama_cpp import cpu_flags  # noqa: F401 - the CPU's feature flags, for the tests too


def need_backend(name):
    """The kernel backend `name`; skips the test when it is not available, fails it when CI is set
    (CI has a compiler and Numba, so every backend must be there)."""
    from codette_np import backend as be

    why = be.available()[name]
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires the {name} backend: {why}")
        pytest.skip(why)
    return be.get(name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    """Which SIMD paths this run exercises, and which it cannot on this CPU."""
    from codette_np import backend as be

    flags = cpu_flags()
    why = be.available()["c"]
    build = be.get("c").module.build_info() if why is None else f"not built ({why})"
    has = [n for n, f in (("avx2+fma", "avx2"), ("avx512f", "avx512f"), ("avx512_bf16", "avx512_bf16"),
                          ("amx_bf16", "amx_bf16")) if f in flags]
    lines = [f"codette_np C kernels: {build}; CPU has: {', '.join(has) or 'none of avx2/avx512/amx'}"]
    if "avx512f" not in flags:
        lines.append("codette_np: the AVX-512 paths are NOT exercised here (this CPU has no avx512f); "
                     "the AVX2, scalar (portable build) and NumPy/Numba paths are")
    else:
        lines.append("codette_np: AVX-512 (native build), AVX2 (x86-64-v3 build) and scalar (portable build) "
                     "paths are exercised")
    from codette_np import gemm

    av = gemm.available()
    lines.append("codette_np bf16 GEMM paths tested: " + ", ".join(p for p in gemm.runnable() if p != "numpy")
                 + "; not runnable here: " + "; ".join(f"{p} ({why})" for p, why in av.items() if why))
    return lines


def rel_err(a, b):
    """max|a - b| / max|b|: the relative error used throughout the tests."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# Property tests: random in development, derandomized (reproducible) under CI.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter, config):
    """The same lines as the header, at the end: `pytest -q` (as `make test` runs) hides the header."""
    terminalreporter.write_sep("-", "SIMD and GEMM paths of this run")
    for line in pytest_report_header(config):
        terminalreporter.write_line(line)

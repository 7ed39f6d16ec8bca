"""Every SIMD path of simd.h runs the kernel tests, whatever the machine's newest one:

- the native build (-march=native) is the path the whole suite exercises:
  AVX-512 on a machine with it, else AVX2+FMA (or NEON, or scalar);
- the most constrained build, CODETTE_PORTABLE=1 (baseline x86-64 / armv8-a:
  the scalar or NEON path) with CODETTE_NO_OPENMP=1 (single-threaded, as a
  compiler without OpenMP gives), runs everywhere;
- on a machine with AVX-512, CODETTE_MARCH=x86-64-v3 builds the AVX2+FMA
  path, so it is tested there too.

A copy of the source is pip-installed into a temporary target with both
flags; a fresh interpreter that sees only that target checks what was built
and runs the kernel and attention test files against it (every backend;
the C cases are the ones that exercise this build). It also prints a digest
of three low-precision AdamW steps, which must equal the native build's bit
for bit: those kernels are written to vectorize with the scalar operation
order, and a resumed run may continue on another machine.
"""

import os
import platform
import subprocess
import sys

import pytest

from test_fallback_install import REPO, install_copy

# three steps of the 8-bit AdamW (float32 and bf16 weights) and the bf16 one: a digest of every output
LOWP_DIGEST = r"""
def lowp_digest(c):
    import hashlib
    import numpy as np
    r = np.random.default_rng(0); n = 100_003; nb = -(-n // 256)
    p = r.standard_normal(n).astype(np.float32) * 0.05
    g = (r.standard_normal(n) * np.exp(2 * r.standard_normal(n))).astype(np.float32)
    w = (p.view(np.uint32) >> 16).astype(np.uint16); p2 = p.copy()
    q8 = [np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(nb, np.float32), np.zeros(nb, np.float32)]
    q8w = [a.copy() for a in q8]; b16 = [np.zeros(n, np.uint16), np.zeros(n, np.uint16)]
    for t in (1, 2, 3):
        c.adamw_step_q8(p, g, *q8, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 0.5, 9, 256)
        c.adamw_step_q8_bf16w(w, g, *q8w, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 0.5, 9, 256)
        c.adamw_step_bf16(p2, g, *b16, True, 1e-3, 0.9, 0.95, 1e-8, 0.1, t, 0.5, 9, 256)
    h = hashlib.sha256()
    for a in (p, w, p2, *q8, *q8w, *b16):
        h.update(a.tobytes())
    return h.hexdigest()
"""

# The child drops the editable install's finder (it would resolve codette_np to the
# repository instead of the installed copy), then runs the kernel test files.
CHILD = r"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import codette_np
from codette_np.kernels import cbackend
print("FILE", codette_np.__file__)
print("BUILD", cbackend.ffi.string(cbackend.lib.codette_build_info()).decode())
print("THREADS", cbackend.num_threads())
exec(sys.argv[2])
print("LOWP", lowp_digest(cbackend))
import pytest
tests = sys.argv[1]
# this test starts interpreters of its own in the repository, which would load the repository's build
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", "not test_c_thread_count_independent",
                      f"{tests}/test_kernels.py", f"{tests}/test_attention_kernels.py"]))
"""


def _kernel_tests_on(tmp_path, site):
    """Run the kernel test files in a fresh interpreter that sees only the build in `site`."""
    env = {k: v for k, v in os.environ.items() if k not in ("CODETTE_BACKEND", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_cache")
    r = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "tests"), LOWP_DIGEST], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=1200)
    assert f"FILE {site}" in r.stdout, r.stdout[-3000:]
    return r


def _native_lowp_digest():
    from conftest import need_backend

    scope = {}
    exec(LOWP_DIGEST, scope)
    return scope["lowp_digest"](need_backend("c").module)


@pytest.mark.slow
def test_portable_build_without_openmp_passes_the_kernel_tests(tmp_path):
    site, log = install_copy(tmp_path, CODETTE_PORTABLE="1", CODETTE_NO_OPENMP="1")
    assert "building the C kernels without OpenMP" in log, log[-3000:]
    assert list(site.rglob("_ckernels*")), "no C extension was built"
    r = _kernel_tests_on(tmp_path, site)
    out = r.stdout
    simd = "neon" if platform.machine().lower() in ("aarch64", "arm64") else "scalar"
    assert f"BUILD simd={simd} openmp=no" in out, out[-3000:]
    assert "THREADS 1" in out, out[-3000:]
    assert f"LOWP {_native_lowp_digest()}" in out, "the low-precision AdamW differs from the native build's bits"
    assert r.returncode == 0, f"kernel tests failed on the portable no-OpenMP build:\n{out[-5000:]}{r.stderr[-3000:]}"
    assert " passed" in out and " failed" not in out, out[-3000:]


def test_native_build_runs_the_newest_path_the_cpu_has():
    """The suite's own build takes AVX-512 where the CPU has it, else AVX2+FMA (x86-64)."""
    from conftest import cpu_flags, need_backend

    info = need_backend("c").module.build_info()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"not x86-64; native build: {info}")
    flags = cpu_flags()
    want = "avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= flags else "scalar"
    assert info.startswith(f"simd={want} "), info


@pytest.mark.slow
def test_avx2_build_passes_the_kernel_tests_on_an_avx512_machine(tmp_path):
    from conftest import cpu_flags

    flags = cpu_flags()
    if "avx512f" not in flags:
        pytest.skip("this CPU has no AVX-512: the native build is already the AVX2 path the suite runs")
    site, log = install_copy(tmp_path, CODETTE_MARCH="x86-64-v3")
    r = _kernel_tests_on(tmp_path, site)
    assert "BUILD simd=avx2 openmp=yes" in r.stdout, r.stdout[-3000:]
    assert f"LOWP {_native_lowp_digest()}" in r.stdout, "the low-precision AdamW differs from the native build's bits"
    assert r.returncode == 0, f"kernel tests failed on the AVX2 build:\n{r.stdout[-5000:]}{r.stderr[-3000:]}"

"""The most constrained C build still works: CODETTE_PORTABLE=1 (baseline
x86-64 / armv8-a, so simd.h takes its scalar or NEON path instead of
AVX2/AVX-512) together with CODETTE_NO_OPENMP=1 (what a compiler without
OpenMP gives: single-threaded kernels).

A copy of the source is pip-installed into a temporary target with both
flags; a fresh interpreter that sees only that target checks what was built
and runs the kernel and attention test files against it (every backend;
the C cases are the ones that exercise this build).
"""

import os
import platform
import subprocess
import sys

import pytest

from test_fallback_install import REPO, install_copy

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
import pytest
tests = sys.argv[1]
# this test starts interpreters of its own in the repository, which would load the repository's build
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", "not test_c_thread_count_independent",
                      f"{tests}/test_kernels.py", f"{tests}/test_attention_kernels.py"]))
"""


@pytest.mark.slow
def test_portable_build_without_openmp_passes_the_kernel_tests(tmp_path):
    site, log = install_copy(tmp_path, CODETTE_PORTABLE="1", CODETTE_NO_OPENMP="1")
    assert "building the C kernels without OpenMP" in log, log[-3000:]
    assert list(site.rglob("_ckernels*")), "no C extension was built"

    env = {k: v for k, v in os.environ.items() if k not in ("CODETTE_BACKEND", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_cache")
    r = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "tests")], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=1200)
    out = r.stdout
    assert f"FILE {site}" in out, out[-3000:]
    simd = "neon" if platform.machine().lower() in ("aarch64", "arm64") else "scalar"
    assert f"BUILD simd={simd} openmp=no" in out, out[-3000:]
    assert "THREADS 1" in out, out[-3000:]
    assert r.returncode == 0, f"kernel tests failed on the portable no-OpenMP build:\n{out[-5000:]}{r.stderr[-3000:]}"
    assert " passed" in out and " failed" not in out, out[-3000:]

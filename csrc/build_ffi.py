"""cffi build script (API, out-of-line mode): compiles every csrc/*.c into
one extension, codette_np._ckernels.

Flags: -O3, tuned for the build machine's CPU (-march=native) unless
CODETTE_PORTABLE=1 (baseline x86-64 / armv8-a, so simd.h's scalar or NEON
path) or CODETTE_MARCH=<arch> (that -march, e.g. x86-64-v3 for the AVX2+FMA
path on a machine with AVX-512); OpenMP when the compiler
supports it (else a single-threaded build); never -ffast-math (it breaks
GELU, softmax and NaN checks), but -fno-trapping-math (no value changes: no
code reads the floating-point exception flags, and it lets the compiler
vectorize loops with float comparisons in selects, as the 8-bit AdamW's). CODETTE_SANITIZE=1 adds
-fsanitize=address,undefined for `make test-asan`.
"""

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _cdef_text() -> str:
    """codette.h without preprocessor lines: the header doubles as the cdef."""
    text = (HERE / "codette.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))


def _compiler_accepts(flags: list[str]) -> bool:
    """True if the C compiler builds and links a tiny program with `flags`."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
                       if "-fopenmp" in flags else "int main(void){return 0;}\n")
        r = subprocess.run([cc, *flags, str(src), "-o", str(Path(d) / "t")],
                           capture_output=True)
        return r.returncode == 0


def _flags() -> tuple[list[str], list[str]]:
    cflags = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"]
    ldflags: list[str] = []
    if os.environ.get("CODETTE_PORTABLE") == "1":
        arch = platform.machine().lower()
        cflags += ["-march=armv8-a"] if arch in ("aarch64", "arm64") else ["-march=x86-64"]
    elif os.environ.get("CODETTE_MARCH"):
        cflags.append(f"-march={os.environ['CODETTE_MARCH']}")
    elif _compiler_accepts(["-march=native"]):
        cflags.append("-march=native")
    if os.environ.get("CODETTE_NO_OPENMP") != "1" and _compiler_accepts(["-fopenmp"]):
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    else:
        print("codette_np: building the C kernels without OpenMP (single-threaded)", file=sys.stderr)
    if os.environ.get("CODETTE_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
        cflags = [f for f in cflags if f != "-O3"] + san
        ldflags += san[:1]
    return cflags, ldflags


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
_cflags, _ldflags = _flags()
ffibuilder.set_source(
    "codette_np._ckernels",
    '#include "codette.h"',
    sources=[str(p.relative_to(HERE.parent)) for p in sorted(HERE.glob("*.c"))],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

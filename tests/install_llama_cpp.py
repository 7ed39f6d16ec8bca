"""Install the llama.cpp test client (llama-cpp-python) built for any machine of this kind.

    python tests/install_llama_cpp.py [--print-flags]

llama-cpp-python is an sdist: pip compiles llama.cpp, by default with
-march=native, so the library uses every extension of the build machine,
AMX included. ggml's AMX path dies with SIGILL on machines and VMs where the
OS does not grant the tile state, and a wheel built on one machine can land
on another through pip's wheel cache (which is keyed by the sdist, not by
CMAKE_ARGS). So this script:

- chooses fixed flags from the CPU, never from the build machine's newest
  extensions: no AMX, no native tuning; on x86-64 AVX2/FMA/F16C when the CPU
  has them, plus AVX-512 (F/CD/VL/DQ/BW) only where the CPU has all five;
  on arm64 the armv8 baseline;
- builds the wheel without pip's cache into a store keyed by the version,
  the Python tag and those flags, and installs that wheel file, so a wheel
  is only ever reused on a machine that would build the same one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

VERSION = "0.3.36"
OFF = ["GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX512_VBMI",
       "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX_VNNI", "GGML_CPU_ALL_VARIANTS", "GGML_BACKEND_DL"]
AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")


def cpu_flags() -> set[str]:
    """The feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cmake_args(flags: set[str] | None = None, machine: str | None = None) -> list[str]:
    """The -D options for this CPU: portable, never AMX."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    args = [f"-D{name}=OFF" for name in OFF]
    if machine in ("x86_64", "amd64"):
        has = lambda *names: all(n in flags for n in names)  # noqa: E731
        avx2 = has("avx", "avx2", "fma", "f16c")
        args += [f"-DGGML_AVX={'ON' if avx2 else 'OFF'}", f"-DGGML_AVX2={'ON' if avx2 else 'OFF'}",
                 f"-DGGML_FMA={'ON' if avx2 else 'OFF'}", f"-DGGML_F16C={'ON' if avx2 else 'OFF'}",
                 f"-DGGML_AVX512={'ON' if avx2 and has(*AVX512) else 'OFF'}"]
    return args


def store_dir(args: list[str]) -> Path:
    """Where the wheel built with `args` is kept (one folder per version, Python and flags)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codette_np" / "llama-cpp-python"
    key = hashlib.sha256(" ".join([VERSION, sys.implementation.cache_tag, platform.machine(), *args])
                         .encode()).hexdigest()[:16]
    return base / f"{VERSION}-{sys.implementation.cache_tag}-{key}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print-flags", action="store_true", help="print the CMake flags and the wheel store, and exit")
    a = ap.parse_args(argv)
    args = cmake_args()
    store = store_dir(args)
    if a.print_flags:
        print(" ".join(args))
        print(store)
        return 0
    wheels = sorted(store.glob("llama_cpp_python-*.whl"))
    if not wheels:
        print(f"building llama-cpp-python {VERSION} with {' '.join(args)} (a few minutes)", flush=True)
        store.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--no-deps",
                        "--no-binary", "llama-cpp-python", "-w", str(store), f"llama-cpp-python=={VERSION}"],
                       env=env, check=True)
        wheels = sorted(store.glob("llama_cpp_python-*.whl"))
    else:
        print(f"llama-cpp-python {VERSION}: using the wheel built with the same flags, {wheels[-1]}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                    str(wheels[-1])], check=True)
    # its dependencies, from the index (never a llama-cpp-python build)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "typing-extensions>=4.5",
                    "numpy>=1.20", "diskcache>=5.6.1", "jinja2>=2.11.3"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

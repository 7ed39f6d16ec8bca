"""Benchmark plumbing: every benchmark records (group, name, backend, work,
unit) and the session prints one table per group with the rate and the
speedup over the NumPy reference, all measured side by side in this run.

Run with `make bench` (it unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the
run and this file reports which BLAS kernel numpy actually used).
"""

import os

import pytest

import codette_np  # noqa: F401  (first, so its thread-pool defaults apply before numpy loads)

RESULTS = []  # (group, name, backend, median seconds, work, unit)


@pytest.fixture
def record(benchmark):
    """record(group, name, backend, fn, work, unit): time fn with pytest-benchmark and keep its median."""

    def run(group, name, backend, fn, work, unit, rounds=None):
        benchmark.group = f"{group}:{name}"
        benchmark.extra_info.update(backend=backend, work=work, unit=unit)
        if rounds:
            benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
        else:
            benchmark(fn)
        RESULTS.append((group, name, backend, benchmark.stats.stats.median, work, unit))

    return run


@pytest.fixture
def record_external():
    """record_external(group, name, backend, median_s, work, unit): keep a median timed elsewhere
    (another process of this run), for the same table."""

    def add(group, name, backend, median_s, work, unit):
        RESULTS.append((group, name, backend, median_s, work, unit))

    return add


def _fmt_rate(work, unit, sec):
    if unit == "bytes":
        return f"{work / sec / 1e9:8.1f} GB/s"
    if unit == "flops":
        return f"{work / sec / 1e9:8.1f} GFLOP/s"
    if unit == "tokens":
        return f"{work / sec:8.0f} tok/s"
    return ""


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('version', '')} kernel={i.get('architecture')} "
                         f"threads={i['num_threads']}" for i in threadpool_info()
                         if i["user_api"] == "blas")
    except ImportError:
        blas = "unknown (threadpoolctl missing)"
    tr.write_sep("=", "codette_np benchmark table (medians of this run)")
    tr.write_line(f"BLAS: {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}; "
                  f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    def ref(names):  # (group, row) -> the median of the first row named one of `names`
        return {(g, n): s for g, n, b, s, _, _ in RESULTS if b in names}

    base = ref(("numpy", "numpy sgemm fp32"))
    torch = ref(("torch",))
    torch16 = ref(("torch bf16 autocast", "torch bf16 matmul"))
    order = ("matmul-floor", "torch", "torch bf16 autocast", "torch bf16 matmul", "numpy", "numpy sgemm fp32",
             "numba", "c")
    cur = None
    for g, n, b, s, work, unit in sorted(RESULTS, key=lambda r: (r[0], r[1], order.index(r[2]) if r[2] in order else 9, r[2])):
        if g != cur:
            cur = g
            tr.write_line("")
            tr.write_line(f"{g:<12} {'kernel':<32} {'backend':<28} {'ms':>10} {'rate':>16} {'vs numpy':>9} "
                          f"{'vs torch':>9} {'vs torch bf16':>13}")
        sp = base.get((g, n))
        tr.write_line(f"{'':<12} {n:<32} {b:<28} {s * 1e3:10.3f} {_fmt_rate(work, unit, s):>16} "
                      f"{(sp / s if sp else float('nan')):8.2f}x"
                      + (f" {torch[(g, n)] / s:8.2f}x" if (g, n) in torch else f" {'':>9}")
                      + (f" {torch16[(g, n)] / s:12.2f}x" if (g, n) in torch16 else ""))
    stream = [w / s for g, n, b, s, w, _ in RESULTS if n.startswith("stream:")]
    if stream:  # the optimizer kernels' byte rate against the memory bandwidth measured in this run
        tr.write_line("")
        tr.write_line(f"stream bandwidth {stream[0] / 1e9:.1f} GB/s; each AdamW kernel's bytes at:")
        for g, n, b, s, w, _ in RESULTS:
            if n.startswith("adamw_step") and b in ("c", "numba"):
                tr.write_line(f"  {n:<24} {b:<6} {w / s / 1e9:6.1f} GB/s = {w / s / stream[0]:5.0%} of stream")
    peaks = {b.removesuffix(" peak"): w / s for g, n, b, s, w, _ in RESULTS if g == "gemm:peak"}
    if peaks:  # each bf16 GEMM path's rate against its instruction's register-only rate in this run
        tr.write_line("")
        tr.write_line("bf16 peak (register-only multiply-adds, all threads): "
                      + ", ".join(f"{p} {r / 1e9:.0f} GFLOP/s" for p, r in peaks.items()) + "; each GEMM at:")
        for g, n, b, s, w, _ in RESULTS:
            path = b.removeprefix("bf16 ")
            if g.startswith("gemm:") and g != "gemm:peak" and path in peaks:
                tr.write_line(f"  {g:<11} {n:<32} {path:<11} {w / s / 1e9:7.1f} GFLOP/s = "
                              f"{w / s / peaks[path]:5.1%} of peak")

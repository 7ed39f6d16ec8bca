"""PyTorch's bf16 matmul at given shapes, for the GEMM benchmark's side-by-side rows.

Run by test_bench_gemm.py in its own process (PyTorch's thread pool never shares a process
with numpy's BLAS or codette_np's OpenMP). Argument: a JSON object name -> [M, N, K].
Prints one JSON line: name -> median seconds of torch.matmul(a (M, K), b (K, N)) in bfloat16
(10 rounds, or 3 when they take over 2 s: without bf16 instructions PyTorch's bf16 matmul is slow).
"""

import json
import sys
import time

import codette_np  # noqa: F401  (first: the same OpenMP thread defaults as codette_np's)
import torch


def main():
    shapes = json.loads(sys.argv[1])
    out = {}
    for name, (M, N, K) in shapes.items():
        a = torch.randn(M, K).to(torch.bfloat16)
        b = torch.randn(K, N).to(torch.bfloat16)
        torch.matmul(a, b)  # warmup
        times = []
        while len(times) < 10 and (len(times) < 3 or sum(times) < 2.0):  # 3 rounds when it is slow
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - t0)
        out[name] = sorted(times)[len(times) // 2]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

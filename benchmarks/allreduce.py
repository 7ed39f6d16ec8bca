"""All-reduce and all-gather bandwidth between the ranks of an MPI job, and what it means for
data-parallel training of the presets.

    mpiexec -n 2 python benchmarks/allreduce.py            # loopback: 2 ranks on this machine

Times MPI Allreduce (sum, in place) and Allgatherv of float32 buffers from 1 MiB to 256 MiB,
as the trainer calls them (codette_np.distributed), median of --repeats. Prints, on rank 0,
one line per size: milliseconds and the bus bandwidth, 2 (R - 1) / R * bytes / time for the
all-reduce and (R - 1) / R * bytes / time for the all-gather (the bytes each rank moves in a
ring), then the projection table of the README (--compute): the step's communication, from the
bytes a step moves and a network's bandwidth, next to a measured compute time per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def measure(comm, sizes_mib, repeats):
    from mpi4py import MPI

    R = comm.Get_size()
    rows = []
    for mib in sizes_mib:
        n = mib * 2**20 // 4
        a = np.ones(n, np.float32)  # (n,)
        counts = [n // R + (1 if r < n % R else 0) for r in range(R)]
        displs = [sum(counts[:r]) for r in range(R)]
        times = {"allreduce": [], "allgather": []}
        for _ in range(repeats + 1):  # the first of each is a warm-up
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, [a, MPI.FLOAT], op=MPI.SUM)
            times["allreduce"].append(time.perf_counter() - t)
            comm.Barrier()
            t = time.perf_counter()
            comm.Allgatherv(MPI.IN_PLACE, [a, counts, displs, MPI.FLOAT])
            times["allgather"].append(time.perf_counter() - t)
        med = {k: statistics.median(v[1:]) for k, v in times.items()}
        nbytes = 4 * n
        rows.append((mib, med["allreduce"], 2 * (R - 1) / R * nbytes / med["allreduce"],
                     med["allgather"], (R - 1) / R * nbytes / med["allgather"]))
    return rows


def step_bytes(n_params: int, ranks: int, plan: str = "lean") -> float:
    """Bytes each rank sends (and receives) per optimizer step in codette_np.distributed, in a
    ring. The fp32 plan: the fp32 gradients' reduce-scatter, (R - 1) / R * 4 P, and the
    all-gather of the updated fp32 weights, (R - 1) / R * 4 P. The lean plan (--clip previous,
    bf16 weights): each group's fp32 gradients all-reduced, 2 (R - 1) / R * 4 P, and the bf16
    weights all-gathered, (R - 1) / R * 2 P (counting every parameter as a bf16 matrix's)."""
    per_param = {"fp32": 4 + 4, "lean": 2 * 4 + 2}[plan]
    return (ranks - 1) / ranks * per_param * n_params


def table(compute_s: dict[str, float], plan: str = "lean"):
    """Projected step time and scaling efficiency (compute / (compute + communication), no
    overlap assumed) for each preset on 4, 16 and 64 machines over 10 and 100 Gb/s."""
    from codette_np import ModelConfig

    lines = ["| preset | compute per step (1 x 512 tokens per machine) | network | 4 machines | 16 | 64 |",
             "|---|---|---|---|---|---|"]
    for size, t_c in compute_s.items():
        P = ModelConfig.preset(size).n_params
        for gbit in (10, 100):
            bw = gbit * 1e9 / 8 * 0.9  # 90% of the line rate
            cells = []
            for R in (4, 16, 64):
                t_comm = step_bytes(P, R, plan) / bw
                cells.append(f"{t_c + t_comm:.1f} s, {t_c / (t_c + t_comm):.0%}")
            lines.append(f"| {size} | {t_c:.0f} s | {gbit} Gb/s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4,16,64,256", help="buffer sizes in MiB (default 1,4,16,64,256)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compute", default="",
                    help="measured seconds per step for the projection table, e.g. 'small=70,medium=140'")
    ap.add_argument("--plan", choices=["lean", "fp32"], default="lean",
                    help="the memory plan whose bytes per step the table counts (default lean)")
    args = ap.parse_args()
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = measure(comm, [int(x) for x in args.sizes.split(",")], args.repeats)
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} ranks, {MPI.Get_library_version().splitlines()[0]}")
        print(f"{'MiB':>5} {'allreduce ms':>13} {'bus GB/s':>9} {'allgather ms':>13} {'bus GB/s':>9}")
        for mib, ar, ar_bw, ag, ag_bw in rows:
            print(f"{mib:>5} {ar * 1e3:>13.2f} {ar_bw / 1e9:>9.2f} {ag * 1e3:>13.2f} {ag_bw / 1e9:>9.2f}")
        if args.compute:
            print(table({k: float(v) for k, v in (kv.split("=") for kv in args.compute.split(","))}, args.plan))


if __name__ == "__main__":
    main()

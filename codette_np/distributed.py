"""Data parallelism over MPI: `mpiexec -n R python -m codette_np.train ...`.

Every rank holds the whole model and takes its B / R rows of every global
batch of B rows (the single-process data order: `rows_of_rank`). Each rank's
loss gradient is normalized by the global batch's target count, so summing
the ranks' gradients gives the single process's gradient. The sum is a
reduce-scatter over the flat gradient buffer: each rank receives only the
summed gradients of its shard (below), in buckets of contiguous spans
launched (non-blocking) as backward completes them (`GradReducer`), as
PyTorch DDP overlaps its 25 MB buckets with backward.

The AdamW moments are sharded (ZeRO stage 1): rank r keeps and updates only
the moments of its slice [bounds[r], bounds[r+1]) of the flat parameter
buffer (`shard_bounds`, `optim.AdamW(shard=)`); the updated slices are then
all-gathered, each weight store by its own range (`World.allgather_model`:
the float32 store and, with bf16 weights, the bf16 bits). With the update
fused into backward (the lean plan), each finished group's gradients are
all-reduced before its shard is updated (`optim.AdamW.fused_step(reduce=)`).
Checkpoints hold the gathered moments, in the single-process format, so a
run resumes on any number of ranks; rank 0 receives them a chunk at a time
while it writes (`GatheredParts`), and a resuming rank reads only its shard.

A process started without mpiexec (or with one rank) gets `World()`, of size
1, and no MPI is imported: mpi4py and an MPI are the optional `[mpi]` extra.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import numpy as np

from codette_np.kernels.ref import Q8_BLOCK

# the launchers' rank-count variables: MPICH/Intel MPI (Hydra), Open MPI, PMIx, MVAPICH
SIZE_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
BUCKET_BYTES = 25 * 2**20  # gradients are summed in spans of about this many bytes


def launched_ranks() -> int:
    """The number of ranks the MPI launcher started (1 when not launched by one)."""
    for name in SIZE_ENV:
        v = os.environ.get(name, "")
        if v.isdigit():
            return int(v)
    return 1


LOCAL_SIZE_ENV = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


def local_ranks() -> int:
    """The number of ranks the launcher started on this machine (they share its memory)."""
    for name in LOCAL_SIZE_ENV:
        v = os.environ.get(name, "")
        if v.isdigit():
            return int(v)
    return launched_ranks()


class World:
    """The ranks of a run: World() is the single process; World.from_environment() the job."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @classmethod
    def from_environment(cls) -> "World":
        n = launched_ranks()
        if n <= 1:
            return cls()
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(f"started by mpiexec with {n} ranks, but mpi4py is not installed: "
                               "pip install 'codette_np[mpi]' (mpi4py and MPICH)") from None
        return cls(MPI.COMM_WORLD)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def sum(self, x: float) -> float:
        """x summed over the ranks (in rank order, the same on every rank)."""
        if self.comm is None:
            return x
        return float(sum(self.comm.allgather(float(x))))

    def allgather(self, x) -> list:
        """Every rank's x, in rank order."""
        return [x] if self.comm is None else self.comm.allgather(x)

    def first(self, x):
        """The first x that is not None, in rank order (None if every rank's is None)."""
        if self.comm is None:
            return x
        return next((v for v in self.comm.allgather(x) if v is not None), None)

    def bcast(self, obj):
        """Rank 0's obj, on every rank."""
        return obj if self.comm is None else self.comm.bcast(obj, root=0)

    def wait_for_all(self, poll: float = 0.01):
        """A barrier that sleeps while it waits (a rank waiting on rank 0's evaluation or
        checkpoint leaves its core to it instead of spinning)."""
        if self.comm is None:
            return
        req = self.comm.Ibarrier()
        while not req.Test():
            time.sleep(poll)

    def start_watchdog(self, timeout: float, every: float | None = None):
        """End the job if a rank falls silent for `timeout` seconds (stopped, hung, or cut off
        from the others): `Watchdog`. Nothing with one rank or timeout 0."""
        if self.comm is not None and timeout > 0:
            self.watchdog = Watchdog(self, timeout, every)

    def stop_watchdog(self):
        """Stop this rank's watchdog (every rank does, at the same point: the end of the run)."""
        dog = getattr(self, "watchdog", None)
        if dog is not None:
            dog.stop()
            self.watchdog = None

    def abort(self, code: int = 1):
        """End the whole job (MPI_Abort), after a moment for the launcher to forward what this
        rank wrote to stderr (an abort may drop output still in flight)."""
        if self.comm is not None:
            import sys

            sys.stderr.flush()
            time.sleep(0.5)
            self.comm.Abort(code)

    # -- arrays ------------------------------------------------------------

    def allgather_params(self, flat: np.ndarray, bounds: list[int]):
        """After each rank updated its slice [bounds[r], bounds[r + 1]) of flat (P,): every
        rank holds every slice."""
        if self.comm is None:
            return
        from mpi4py import MPI

        counts = [bounds[r + 1] - bounds[r] for r in range(self.size)]
        self.comm.Allgatherv(MPI.IN_PLACE, [flat, counts, bounds[:-1], _mpi_type(flat)])

    def allreduce_sum(self, arrays):
        """Each array summed over the ranks, in place (blocking; the fused update's reduction
        of a finished group of gradients, which its update waits for)."""
        if self.comm is None:
            return
        from mpi4py import MPI

        for a in arrays:
            self.comm.Allreduce(MPI.IN_PLACE, [a, _mpi_type(a)], op=MPI.SUM)

    def allgather_model(self, model, bounds: list[int]):
        """allgather_params on each of the model's weight stores (float32, and the bf16 bits of
        the blocks' matrices with weights="bf16"): the flat-layout shards map to one contiguous
        range of each store, since the stores keep the layout's order."""
        if self.comm is None:
            return
        for flat, b in store_bounds(model, bounds):
            self.allgather_params(flat, b)

    def part_range(self, length: int) -> tuple[int, int]:
        """(start, end) of this rank's part, of `length` elements, in the rank-ordered
        concatenation of the ranks' parts (each rank passes its own length)."""
        if self.comm is None:
            return 0, length
        counts = self.comm.allgather(length)
        start = sum(counts[:self.rank])
        return start, start + counts[self.rank]


HEARTBEAT_TAG, HELLO_TAG = 0x7EA7, 0x7EA8  # the watchdog's point-to-point messages (training uses
# only collectives, which never match point-to-point messages)
NAME_BYTES = 256  # a rank's "pid P on HOST", as sent in the start-up handshake


class Watchdog:
    """A thread on each rank that ends the job when another rank falls silent. Rank 0 hears
    every rank and every rank hears rank 0 (a star: 2 (R - 1) small messages per beat).

    At start-up the ranks shake hands: each sends rank 0 its pid and host and receives the
    table of all; a rank that does not answer within `timeout` seconds (it cannot be reached,
    or never started the engine) is named and the job ends. Then each rank sends a heartbeat
    every `every` seconds (timeout / 10, at most 2 s) and checks what it received. A rank not
    heard from for `timeout` seconds (stopped, hung in the operating system, or cut off by
    the network: MPI's collectives would wait for it forever) is named, with its pid and
    host, and the job ends (MPI_Abort). The beats come from a thread of their own, so a rank
    busy in a long product, an evaluation or a checkpoint still beats (the kernels and numpy
    release the GIL). If this rank's own thread was held up for more than half the timeout
    (the machine suspended, say), its peers get the time again before they are judged.
    Needs MPI_THREAD_MULTIPLE (mpi4py's default); else it is off, and says so."""

    def __init__(self, world: World, timeout: float, every: float | None = None):
        from mpi4py import MPI

        self.timeout = float(timeout)
        self.every = float(every) if every else min(2.0, self.timeout / 10)
        self.comm, self.rank, self.size = world.comm, world.rank, world.size
        self.peers = list(range(1, self.size)) if self.rank == 0 else [0]
        self.names = self._handshake()
        self.active = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        if not self.active:
            print(f"warning: rank {self.rank}: MPI gives no MPI_THREAD_MULTIPLE, so a silent rank is "
                  f"left to MPI's own timeouts", file=sys.stderr)
            return
        self._beat = np.zeros(1, np.int64)  # (1,): the message (its content is not read)
        self._inbox = {p: np.zeros(1, np.int64) for p in self.peers}
        self._recv = {p: self.comm.Irecv(self._inbox[p], source=p, tag=HEARTBEAT_TAG) for p in self.peers}
        self._sends = []
        self._heard = {p: time.monotonic() for p in self.peers}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="codette-watchdog", daemon=True)
        self._thread.start()

    def _handshake(self) -> list[str]:
        """Every rank's "pid P on HOST" (R,), exchanged through rank 0 within the timeout."""
        me = f"pid {os.getpid()} on {socket.gethostname()}".encode()[:NAME_BYTES]
        table = np.zeros((self.size, NAME_BYTES), np.uint8)  # (R, NAME_BYTES): row r is rank r's name
        table[self.rank, :len(me)] = np.frombuffer(me, np.uint8)
        if self.rank == 0:
            reqs = {p: self.comm.Irecv(table[p], source=p, tag=HELLO_TAG) for p in self.peers}
            self._wait(reqs, "at start-up")
            self._wait({p: self.comm.Isend(table, dest=p, tag=HELLO_TAG) for p in self.peers}, "at start-up")
        else:
            self._wait({0: self.comm.Isend(table[self.rank], dest=0, tag=HELLO_TAG)}, "at start-up")
            self._wait({0: self.comm.Irecv(table, source=0, tag=HELLO_TAG)}, "at start-up")
        return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in table]

    def _wait(self, requests: dict, when: str):
        """Wait for the requests (peer -> request) for at most the timeout, then name the silent."""
        deadline = time.monotonic() + self.timeout
        while True:
            silent = [p for p, r in requests.items() if not r.Test()]
            if not silent:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"rank {p}" for p in silent)
                self._end(f"no answer from {names} {when} within {self.timeout:g} s (--rank-timeout): "
                          f"it cannot be reached or did not start")
            time.sleep(0.01)

    def _end(self, why: str):
        print(f"error: rank {self.rank} of {self.size}: {why}; ending the job", file=sys.stderr, flush=True)
        time.sleep(0.5)  # (as World.abort: let the launcher forward the message)
        self.comm.Abort(1)

    def _run(self):
        last = time.monotonic()
        while not self._halt.wait(self.every):
            now = time.monotonic()
            if now - last > self.timeout / 2:  # this thread itself was held up: no judging on that
                self._heard = {p: now for p in self.peers}
            last = now
            self._sends = [r for r in self._sends if not r.Test()]
            for p in self.peers:
                self._sends.append(self.comm.Isend(self._beat, dest=p, tag=HEARTBEAT_TAG))
            for p in self.peers:
                while self._recv[p].Test():  # every beat that has arrived
                    self._heard[p] = now
                    self._recv[p] = self.comm.Irecv(self._inbox[p], source=p, tag=HEARTBEAT_TAG)
                silent = now - self._heard[p]
                if silent > self.timeout:
                    self._end(f"no word from rank {p} ({self.names[p]}) for {silent:.0f} s "
                              f"(--rank-timeout {self.timeout:g}): it has stopped or cannot be reached")

    def stop(self):
        if not self.active:
            return
        self._halt.set()
        self._thread.join()
        for r in self._recv.values():
            r.Cancel()
            r.Wait()
        self._recv = {}
        self.active = False


GATHER_CHUNK_BYTES = int(os.environ.get("CODETTE_GATHER_CHUNK_BYTES", 32 * 2**20))  # (smaller in the tests)


class GatheredParts:
    """The ranks' parts of some arrays (the sharded AdamW moments), each streamed to rank 0 as
    the rank-ordered concatenation, GATHER_CHUNK_BYTES at a time, so that no rank ever holds
    a whole gathered array. Every rank makes it with its own parts, in the same order. Rank 0
    hands blobs() to checkpoint.save_checkpoint, whose two passes over each blob (digest, then
    file) run the gathers, and then calls drain(), which runs whatever gathers the writer did
    not (it stopped on an error): the other ranks call serve(), the same `passes` sequence."""

    def __init__(self, world: "World", parts: dict[str, np.ndarray], passes: int = 2):
        self.world, self.parts, self.passes = world, parts, passes
        self.starts = {}  # name -> each rank's first element in the concatenation, and the total
        self.sequence = []  # (name, g0, g1): one gather of elements [g0, g1), in order
        for name, a in parts.items():
            sizes = world.allgather(int(a.size))
            self.starts[name] = np.concatenate([[0], np.cumsum(sizes)]).tolist()
            step = max(1, GATHER_CHUNK_BYTES // a.dtype.itemsize)
            total = self.starts[name][-1]
            self.sequence += [(name, g0, min(total, g0 + step)) for g0 in range(0, total, step)]
        self.done = 0  # gathers run so far

    def _gather(self):
        name, g0, g1 = self.sequence[self.done % len(self.sequence)]
        a, st, me = self.parts[name], self.starts[name], self.world.rank
        counts = [max(0, min(g1, st[r + 1]) - max(g0, st[r])) for r in range(self.world.size)]
        displs = [max(g0, st[r]) - g0 if counts[r] else 0 for r in range(self.world.size)]
        lo = max(g0, st[me]) - st[me]
        out = np.empty(g1 - g0, a.dtype) if self.world.is_root else None
        self.world.comm.Gatherv(np.ascontiguousarray(a[lo:lo + counts[me]]),
                                [out, counts, displs, _mpi_type(a)] if out is not None else None, root=0)
        self.done += 1
        return out

    def _pieces(self, name):
        for _ in range(sum(n == name for n, _, _ in self.sequence)):
            assert self.sequence[self.done % len(self.sequence)][0] == name, "blobs written out of order"
            yield self._gather()

    def blobs(self) -> dict:
        from codette_np.checkpoint import Streamed

        return {name: Streamed(a.dtype, (self.starts[name][-1],), lambda name=name: self._pieces(name))
                for name, a in self.parts.items()}

    def serve(self):
        while self.done < self.passes * len(self.sequence):
            self._gather()

    drain = serve


def _mpi_type(a: np.ndarray):
    from mpi4py import MPI

    return {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE,
            np.dtype(np.uint16): MPI.UINT16_T, np.dtype(np.uint8): MPI.UINT8_T}[a.dtype]


def rows_of_rank(B: int, rank: int, size: int) -> slice:
    """The rows of a global batch of B rows that rank `rank` of `size` trains on."""
    if B % size:
        raise ValueError(f"--batch-size {B} does not split evenly over {size} ranks; "
                         f"give a multiple of {size}")
    per = B // size
    return slice(rank * per, (rank + 1) * per)


def shard_bounds(layout, size: int) -> list[int]:
    """size + 1 offsets into the flat buffer: rank r's moments cover [b[r], b[r+1]). Each
    inner boundary is the even split point moved down to a multiple of Q8_BLOCK elements
    from the start of the tensor it falls in (so 8-bit blocks are never cut)."""
    P = layout.total
    bounds = [0]
    for r in range(1, size):
        target = r * P // size
        sl = next(s for s in layout.slots if s.offset <= target < s.offset + s.size)
        b = sl.offset + (target - sl.offset) // Q8_BLOCK * Q8_BLOCK
        bounds.append(max(b, bounds[-1]))
    bounds.append(P)
    return bounds


def store_bounds(model, bounds: list[int]) -> list[tuple[np.ndarray, list[int]]]:
    """(store, its size + 1 offsets) for each non-empty weight store of `model`: rank r's shard
    [bounds[r], bounds[r + 1]) of the flat layout holds the elements [b[r], b[r + 1]) of it."""
    out = []
    for name, flat in (("fp32", model.params), ("bf16", model.params_bf16)):
        if flat.size == 0:
            continue
        b = []
        for x in bounds:  # elements of this store that lie before layout index x
            before = 0
            for sl in model.layout.slots:
                store, off = model._where[sl.name]
                if store == name and sl.offset < x:
                    before = off + min(sl.size, x - sl.offset)
            b.append(before)
        out.append((flat, b))
    return out


class GradReducer:
    """Sums model.grads over the ranks, each rank's shard [bounds[r], bounds[r + 1]) into that
    rank's buffer (the rest of a rank's buffer keeps its own, partial, gradients: only its
    shard is used). forward_backward reports each group of tensors as its gradients complete
    (on_grads), from the end of the flat buffer toward its start; the reducer joins adjacent
    groups into spans of BUCKET_BYTES and starts a non-blocking reduce-scatter on each span as
    soon as it is full (rank r receives the span's part inside its shard); finish() waits for
    them all and puts the received sums in place. A reduce-scatter moves (R - 1) / R of the
    span's bytes, half an all-reduce's."""

    def __init__(self, world: World, model, bounds: list[int], bucket_bytes: int = BUCKET_BYTES):
        self.world, self.model, self.bucket, self.bounds = world, model, bucket_bytes, bounds
        by = model.layout.by_name
        self._span = {}  # first name of a group -> its (lo, hi) in the flat buffer
        for names in model.grad_groups():
            lo = min(by[n].offset for n in names)
            hi = max(by[n].offset + by[n].size for n in names)
            assert hi - lo == sum(by[n].size for n in names), f"group {names} is not contiguous"
            self._span[names[0]] = (lo, hi)
        self._pending = None  # (lo, hi) of the span not yet launched
        self._requests = []
        self._received = []  # (where in model.grads, the buffer receiving this rank's part)
        self._views = []  # the launched spans (kept alive until their requests complete)

    def on_grads(self, names):
        lo, hi = self._span[names[0]]
        if self._pending is not None and self._pending[0] == hi:  # adjacent: grow the span downward
            lo, hi = lo, self._pending[1]
        elif self._pending is not None:
            self._launch()
        self._pending = (lo, hi)
        if (hi - lo) * self.model.grads.itemsize >= self.bucket:
            self._launch()
        if self._requests:  # let MPI progress the reductions already started
            from mpi4py import MPI

            MPI.Request.Testall(self._requests)

    def _launch(self):
        from mpi4py import MPI

        lo, hi = self._pending
        b, me = self.bounds, self.world.rank
        counts = [max(0, min(hi, b[r + 1]) - max(lo, b[r])) for r in range(self.world.size)]
        view = self.model.grads[lo:hi]  # (hi - lo,): rank r's part of it comes r-th, in order
        mine = np.empty(counts[me], view.dtype)
        t = _mpi_type(view)
        self._requests.append(self.world.comm.Ireduce_scatter([view, t], [mine, t], counts, op=MPI.SUM))
        self._received.append((max(lo, b[me]), mine))
        self._views.append(view)
        self._pending = None

    def finish(self):
        from mpi4py import MPI

        if self._pending is not None:
            self._launch()
        MPI.Request.Waitall(self._requests)
        for at, mine in self._received:
            self.model.grads[at:at + mine.size] = mine
        self._requests, self._views, self._received = [], [], []

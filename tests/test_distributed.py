"""Data parallelism over MPI: 2 ranks on one machine give the single process's training
(losses and weights within float32 reduction-order tolerance), resume across rank counts,
and a killed rank ends the job. Skipped without mpi4py and mpiexec (the [mpi] extra)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codette_np import ModelConfig
from codette_np.distributed import rows_of_rank, shard_bounds
from codette_np.kernels.ref import Q8_BLOCK
from codette_np.params import ParamLayout

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC is not None
except ImportError:
    HAVE_MPI = False
need_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec: pip install '.[mpi]'")

ARGS = ["--size", "nano", "--samples", "300", "--vocab-size", "400", "--batch-size", "4",
        "--eval-every", "1000", "--save-every", "10", "--export-dtype", "none", "--eval-tool-samples", "0",
        "--eval-rows", "2", "--threads", "1", "--memory", "fp32", "--quiet"]
# checkpoints gather the moments in chunks of 4 KiB here, so that every blob takes several
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT),
           CODETTE_GATHER_CHUNK_BYTES="4096")


def train(out, *extra, ranks=1, timeout=300):
    cmd = [sys.executable, "-m", "codette_np.train", *extra, "--out", str(out)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def losses(out):
    return [r["loss"] for r in map(json.loads, (Path(out) / "metrics.jsonl").read_text().splitlines())
            if "kind" not in r]


def params(out):
    from codette_np import checkpoint as ck

    _, blobs = ck.load_checkpoint(Path(out) / "last.ckpt")
    return blobs


def close(a, b, rel=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30)) <= rel


def test_rows_and_shards():
    assert rows_of_rank(8, 1, 2) == slice(4, 8)
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        rows_of_rank(4, 0, 3)
    layout = ParamLayout(ModelConfig.preset("micro"))
    for R in (1, 2, 3, 7):
        b = shard_bounds(layout, R)
        assert b[0] == 0 and b[-1] == layout.total and b == sorted(b) and len(b) == R + 1
        for x in b[1:-1]:  # inside a tensor, at a whole number of 8-bit blocks from its start
            sl = next(s for s in layout.slots if s.offset <= x < s.offset + s.size)
            assert (x - sl.offset) % Q8_BLOCK == 0
        sizes = np.diff(b)
        assert sizes.max() - sizes.min() <= 2 * Q8_BLOCK + 1


@need_mpi
def test_two_ranks_train_as_one_process_and_resume_on_any_rank_count(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, *ARGS, "--max-steps", "50")
    r = train(two, *ARGS, "--max-steps", "50", ranks=2)
    assert "2 ranks, 2 of every 4 rows each" in (two / "train.log").read_text()
    assert "AdamW moments fp32 (1/2 shard)" in r.stdout
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 50
    worst = max(abs(x - y) / x for x, y in zip(a, b))
    print(f"\n2 ranks vs 1 process, nano, 50 steps: largest relative loss difference {worst:.1e}")
    assert close(a, b), worst
    pa, pb = params(one), params(two)
    for name in ("params", "m", "v"):  # the gathered moments are the single process's
        assert pa[name].shape == pb[name].shape
        assert np.max(np.abs(pa[name] - pb[name])) <= 1e-5 * np.max(np.abs(pa[name])), name

    # resume: 2 -> 1 and 1 -> 2 continue the same training; 2 -> 2 repeats it bit for bit
    straight = tmp_path / "straight"
    shutil.copytree(two, straight)
    train(straight, "--resume", "--max-steps", "70", "--quiet", ranks=2)
    for src, ranks in ((two, 1), (one, 2)):
        d = tmp_path / f"from-{src.name}-on-{ranks}"
        shutil.copytree(src, d)
        train(d, "--resume", "--max-steps", "70", "--quiet", ranks=ranks)
        assert close(losses(d), losses(straight)), d
    # straight (70 on 2 ranks, via one resume at 50) against 20 more from a resume at 60
    again = tmp_path / "again"
    shutil.copytree(two, again)
    train(again, "--resume", "--max-steps", "60", "--quiet", ranks=2)
    train(again, "--resume", "--max-steps", "70", "--quiet", ranks=2)
    assert losses(again) == losses(straight)
    assert np.array_equal(params(again)["params"], params(straight)["params"])


def bf16_values(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32).astype(np.float64)


@need_mpi
def test_bf16_weights_over_two_ranks(tmp_path):
    """bf16 weights (and bf16 products): each rank updates its shard and stores it with the
    stochastic rounding of the single process (its bits a function of the element's flat
    index), and the bf16 bits are all-gathered. Gradients summed in another order can flip a
    stochastic rounding: the weights agree within one or two bf16 ulps, the losses within
    float32 reduction-order tolerance (measured: 0.8% of the largest weight at most, 15% of the
    elements differing)."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--weights", "bf16", "--precision", "bf16", "--max-steps", "30"]
    train(one, *ARGS, *extra)
    train(two, *ARGS, *extra, ranks=2)
    a, b = losses(one), losses(two)
    worst = max(abs(x - y) / x for x, y in zip(a, b))
    print(f"\n2 ranks vs 1 process, nano, bf16 weights and products, 30 steps: largest relative loss "
          f"difference {worst:.1e}")
    assert len(a) == len(b) == 30 and close(a, b), worst
    wa, wb = bf16_values(params(one)["params_bf16"]), bf16_values(params(two)["params_bf16"])
    assert wa.size > 0 and np.max(np.abs(wa - wb)) <= 2.0 ** -6 * np.max(np.abs(wa))  # two ulps of the largest
    assert np.mean(wa != wb) < 0.25  # most elements rounded identically
    d = tmp_path / "two-on-one"
    shutil.copytree(two, d)
    train(d, "--resume", "--max-steps", "40", "--quiet", ranks=1)
    assert len(losses(d)) == 40 and close(losses(d)[:30], b)


@need_mpi
@pytest.mark.parametrize("clip", ["exact", "previous"])
def test_lean_plan_over_two_ranks(tmp_path, clip):
    """The lean plan (8-bit moments, each group's update fused into backward) over 2 ranks:
    a finished group's gradients are summed over the ranks before they are measured or used,
    each rank updates its shard, and the weights are all-gathered after backward. An 8-bit
    moment one code apart (the sums' order) moves a weight by a fraction of its update, so the
    weights are compared at 2e-3 of the largest (measured 7.7e-4) and the losses at 1e-5."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = [a for a in ARGS if a not in ("--memory", "fp32")] + ["--memory", "lean", "--clip", clip,
                                                                "--max-steps", "30"]
    train(one, *extra)
    r = train(two, *extra, ranks=2)
    assert "AdamW moments 8-bit blockwise (1/2 shard)" in r.stdout
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 30 and close(a, b), max(abs(x - y) / x for x, y in zip(a, b))
    pa, pb = params(one)["params"], params(two)["params"]
    assert np.max(np.abs(pa - pb)) <= 2e-3 * np.max(np.abs(pa))
    if clip == "exact":  # and it resumes on one process
        d = tmp_path / "two-on-one"
        shutil.copytree(two, d)
        train(d, "--resume", "--max-steps", "40", "--quiet", ranks=1)
        assert len(losses(d)) == 40 and close(losses(d)[:30], b)


@need_mpi
def test_bad_batch_split_is_a_clear_error(tmp_path):
    for extra, msg in ((["--batch-size", "3"], "does not split evenly over 2 ranks"),):
        r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "codette_np.train", *ARGS, *extra,
                            "--max-steps", "2", "--out", str(tmp_path / "bad")],
                           capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
        assert r.returncode != 0 and msg in r.stderr, r.stderr[-2000:]


@need_mpi
def test_a_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / "k"
    p = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "codette_np.train", *ARGS,
                          "--max-steps", "100000", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
            assert time.time() < deadline and p.poll() is None, "the job did not start training"
            time.sleep(0.5)
        log = (out / "train.log").read_text()
        pid = int(log.split("rank 1: pid ")[1].split()[0])  # rank 0 logs every rank's pid
        os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        text, _ = p.communicate(timeout=60)
        print(f"\njob ended {time.time() - t0:.1f} s after rank 1 was killed, exit {p.returncode}")
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert str(pid) in text and "Killed" in text  # the launcher names the dead process (pid: rank 1)


@need_mpi
@pytest.mark.parametrize("silent", [1, 0])
def test_a_silent_rank_ends_the_job_with_its_name(tmp_path, silent):
    """A rank that stops answering (SIGSTOP: as a hung machine or a cut link looks to the
    others) ends the job within --rank-timeout and a beat, named with its pid; the others
    would otherwise wait in their collectives forever."""
    out = tmp_path / "s"
    p = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "codette_np.train", *ARGS,
                          "--max-steps", "100000", "--rank-timeout", "4", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    pid = None
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
            assert time.time() < deadline and p.poll() is None, "the job did not start training"
            time.sleep(0.5)
        log = (out / "train.log").read_text()
        pid = int(log.split(f"rank {silent}: pid ")[1].split()[0])  # rank 0 logs every rank's pid
        os.kill(pid, signal.SIGSTOP)
        t0 = time.time()
        text, _ = p.communicate(timeout=60)
        took = time.time() - t0
        print(f"\njob ended {took:.1f} s after rank {silent} was stopped, exit {p.returncode}")
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert f"no word from rank {silent} (pid {pid} on " in text and "ending the job" in text, text[-2000:]
    assert took < 4 + 20, took  # the timeout, a beat, the abort's half second and the launcher's cleanup


@need_mpi
def test_a_rank_that_never_answers_ends_the_job_at_start_up(tmp_path):
    """Rank 1 is an MPI process that never speaks to the engine (as a rank that cannot reach
    rank 0 looks to it): rank 0 names it and ends the job within --rank-timeout."""
    silent = [sys.executable, "-c", "from mpi4py import MPI; import time; time.sleep(120)"]
    t0 = time.time()
    r = subprocess.run([MPIEXEC, "-n", "1", sys.executable, "-m", "codette_np.train", *ARGS, "--max-steps", "5",
                        "--rank-timeout", "4", "--out", str(tmp_path / "u"), ":", "-n", "1", *silent],
                       capture_output=True, text=True, timeout=90, env=ENV, cwd=ROOT)
    took = time.time() - t0
    text = r.stdout + r.stderr
    assert r.returncode != 0
    assert "error: rank 0 of 2: no answer from rank 1 at start-up within 4 s" in text, text[-2000:]
    assert took < 4 + 30, took  # start-up, the timeout and the launcher's cleanup


@need_mpi
@pytest.mark.parametrize("memory", ["fp32", "lean"])
def test_a_diverging_run_stops_on_every_rank(tmp_path, memory):
    """Five non-finite steps in a row end the run with its message, on 2 ranks as on one (the
    loss and the norm are global, so every rank counts the same steps)."""
    args = [a for a in ARGS if a not in ("--memory", "fp32")]
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "codette_np.train", *args, "--memory", memory,
                        "--lr", "1e9", "--max-grad-norm", "0", "--max-steps", "40", "--out", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
    assert r.returncode != 0 and "non-finite steps in a row" in r.stderr and "training diverged" in r.stderr, \
        r.stderr[-2000:]

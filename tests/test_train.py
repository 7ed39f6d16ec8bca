"""The trainer end to end, as a user runs it: exact resume after SIGKILL,
SIGTERM saves, divergence stops cleanly, bad input and memory refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codette_np.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
           PYTHONPATH=str(ROOT))
BASE = ["--size", "nano", "--samples", "300", "--vocab-size", "400", "--seq-len", "64",
        "--batch-size", "4", "--eval-every", "1000", "--export-dtype", "none", "--quiet",
        "--warmup-steps", "3", "--eval-tool-samples", "0"]


def train(out, *extra, check=True, **kw):
    cmd = [sys.executable, "-m", "codette_np.train", *BASE, "--out", str(out), *extra]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def step_losses(out):
    recs = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r and r.get("kind") != "eval"}


@pytest.mark.parametrize("memory,weights,precision", [("fp32", "fp32", "fp32"), ("lean", "fp32", "fp32"),
                                                      ("lean", "bf16", "fp32"), ("lean", "bf16", "bf16")])
def test_resume_after_sigkill_is_bit_identical(tmp_path, memory, weights, precision):
    n = 40  # nano's steps take milliseconds: enough of them after step 6 for the kill to land
    train(tmp_path / "a", "--max-steps", str(n), "--save-every", "4", "--memory", memory, "--weights", weights,
          "--precision", precision)
    full = step_losses(tmp_path / "a")
    assert sorted(full) == list(range(1, n + 1))

    b = tmp_path / "b"
    cmd = [sys.executable, "-m", "codette_np.train", *BASE, "--out", str(b), "--max-steps", str(n),
           "--save-every", "4", "--memory", memory, "--weights", weights, "--precision", precision]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once step 6 is logged (a checkpoint exists at step 4)
        if (b / "metrics.jsonl").exists() and max(step_losses(b), default=0) >= 6:
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(step_losses(b))
    assert 6 <= killed_at < n, f"run ended at step {killed_at} before it could be killed"
    header, _ = load_checkpoint(b / "last.ckpt")
    assert header["step"] <= killed_at and header["precision"] == precision
    train(b, "--max-steps", str(n), "--save-every", "4", "--resume")
    resumed = step_losses(b)
    assert sorted(resumed) == list(range(1, n + 1))
    for s in range(1, n + 1):
        assert resumed[s] == full[s], f"step {s}: {resumed[s]!r} != {full[s]!r}"
    _, blobs_a = load_checkpoint(tmp_path / "a" / "last.ckpt")
    _, blobs_b = load_checkpoint(b / "last.ckpt")
    assert sorted(blobs_a) == sorted(blobs_b)
    assert ("v_low" in blobs_a) == (memory == "lean")  # the lean plan keeps 8-bit moments
    assert ("params_bf16" in blobs_a) == (weights == "bf16")
    for name in blobs_a:
        assert np.array_equal(blobs_a[name], blobs_b[name]), name


def test_sigterm_saves_and_exits(tmp_path):
    out = tmp_path / "t"
    cmd = [sys.executable, "-m", "codette_np.train", *BASE, "--out", str(out), "--max-steps", "100000",
           "--save-every", "100000"]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and step_losses(out)):
        if p.poll() is not None:
            raise AssertionError(f"the run ended early:\n{p.stderr.read()}")
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, stderr
    header, blobs = load_checkpoint(out / "last.ckpt")
    assert header["kind"] == "interrupted" and header["step"] == max(step_losses(out))
    assert "--resume" in stdout + stderr
    assert "Traceback" not in stderr


def test_divergence_stops_with_a_clear_message(tmp_path):
    r = train(tmp_path / "d", "--max-steps", "50", "--lr", "1e30", "--max-grad-norm", "0",
              "--save-every", "1", check=False)
    assert r.returncode == 2, r.stderr
    assert "non-finite" in r.stderr and "--lr" in r.stderr
    assert "Traceback" not in r.stderr
    ck = tmp_path / "d" / "last.ckpt"
    if ck.exists():  # written only while the weights were finite
        _, blobs = load_checkpoint(ck)
        assert np.isfinite(blobs["params"]).all()


def test_memory_refusal_before_allocating(tmp_path):
    r = subprocess.run([sys.executable, "-m", "codette_np.train", "--size", "large", "--batch-size", "64",
                        "--out", str(tmp_path / "big"), "--quiet"], env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert "needs about" in r.stderr and "--ignore-memory-check" in r.stderr


def test_bad_user_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    r = train(tmp_path / "u", "--data", str(bad), "--max-steps", "1", check=False)
    assert r.returncode == 2
    assert "bad.jsonl:2" in r.stderr and "Traceback" not in r.stderr


def test_resume_without_checkpoint_is_clear(tmp_path):
    r = train(tmp_path / "none", "--max-steps", "2", "--resume", check=False)
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_help_documents_every_flag():
    r = subprocess.run([sys.executable, "-m", "codette_np.train", "--help"], env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--size", "--data", "--samples", "--max-steps", "--batch-size", "--seq-len", "--lr",
                 "--min-lr", "--warmup-steps", "--weight-decay", "--max-grad-norm", "--eval-every",
                 "--save-every", "--out", "--resume", "--seed", "--threads", "--backend", "--mix",
                 "--export-dtype", "--vocab-size", "--memory", "--weights", "--clip", "--precision"):
        assert flag in r.stdout, flag

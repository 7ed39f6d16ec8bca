"""Bad input to the command lines: exit 2, one line on stderr naming the problem, no traceback,
and a run directory's files byte-identical before and after."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
TINY = ["--size", "nano", "--samples", "300", "--vocab-size", "400", "--seq-len", "64", "--batch-size", "4",
        "--eval-every", "1000", "--export-dtype", "none", "--quiet", "--eval-tool-samples", "0"]


def cli(module, *args):
    return subprocess.run([sys.executable, "-m", f"codette_np.{module}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=ENV)


def one_error_line(r, expect):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and expect in lines[0], r.stderr


def snapshot(d):
    """Every file of a run directory and its bytes (.lock, the run lock holding a PID, aside)."""
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    r = cli("train", *TINY, "--max-steps", "3", "--save-every", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


TRAIN_BAD = [
    (["--batch-size", "0"], "--batch-size: must be positive, got 0"),
    (["--seq-len", "0"], "--seq-len: must be positive"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "-1"], "--lr: must be > 0"),
    (["--lr", "nan"], "--lr: 'nan' is not a finite number"),
    (["--lr", "inf"], "--lr: 'inf' is not a finite number"),
    (["--min-lr", "-0.01"], "--min-lr: must be >= 0"),
    (["--warmup-steps", "-5"], "--warmup-steps: must be at least 0"),
    (["--max-grad-norm", "-1"], "--max-grad-norm: must be >= 0"),
    (["--weight-decay", "-1"], "--weight-decay: must be >= 0"),
    (["--eval-tool-samples", "-1"], "--eval-tool-samples: must be at least 0"),
    (["--threads", "0"], "--threads: must be positive"),
    (["--threads", "-2"], "--threads: must be positive"),
    (["--vocab-size", "-5"], "--vocab-size: must be at least 266"),
    (["--vocab-size", "0"], "--vocab-size: must be at least 266"),
    (["--max-steps", "x"], "--max-steps: 'x' is not an integer"),
    (["--no-builtin"], "--no-builtin needs --data"),
    (["--mix", ""], "--mix: must not be empty"),
]


@pytest.mark.parametrize("args, expect", TRAIN_BAD, ids=[" ".join(a) for a, _ in TRAIN_BAD])
def test_train_rejects_bad_values_at_parse_time(run_dir, args, expect):
    before = snapshot(run_dir)
    r = cli("train", *TINY, "--max-steps", "5", "--out", run_dir, "--resume", *args)
    one_error_line(r, expect)
    assert snapshot(run_dir) == before


def test_rerun_into_a_run_directory_is_refused(run_dir):
    before = snapshot(run_dir)
    r = cli("train", *TINY, "--max-steps", "1", "--out", run_dir)
    one_error_line(r, "already holds a run")
    assert "--resume" in r.stderr and "--overwrite" in r.stderr
    assert snapshot(run_dir) == before


def test_failed_input_checks_leave_the_run_directory_alone(run_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("")
    before = snapshot(run_dir)
    r = cli("train", *TINY, "--max-steps", "1", "--out", run_dir, "--overwrite", "--data", bad)
    one_error_line(r, "bad.txt: file is empty")
    assert snapshot(run_dir) == before


def test_out_that_is_a_file_is_an_error(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    one_error_line(cli("train", *TINY, "--max-steps", "1", "--out", f), "is a file, not a directory")
    one_error_line(cli("train", *TINY, "--max-steps", "1", "--out", f / "sub"), "cannot write in the run directory")


def test_threads_above_the_cores_are_capped_with_a_warning(tmp_path):
    r = cli("train", *TINY, "--max-steps", "1", "--out", tmp_path / "t", "--threads", "999")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("--threads 999 is more than the") == 1


GENERATE_BAD = [
    (["--temperature", "-1"], "--temperature: must be >= 0"),
    (["--temperature", "nan"], "--temperature: 'nan' is not a finite number"),
    (["--top-k", "-5"], "--top-k: must be at least 0"),
    (["--top-p", "-1"], "--top-p: must be > 0"),
    (["--top-p", "1.5"], "--top-p: must be <= 1"),
    (["--max-new-tokens", "-3"], "--max-new-tokens: must be positive"),
]


@pytest.mark.parametrize("args, expect", GENERATE_BAD, ids=[" ".join(a) for a, _ in GENERATE_BAD])
def test_generate_rejects_bad_values(run_dir, args, expect):
    one_error_line(cli("generate", "--checkpoint", run_dir, "--prompt", "hi", *args), expect)


@pytest.mark.parametrize("case", ["missing", "empty-dir", "corrupt", "long-prompt"])
def test_generate_bad_checkpoint_or_prompt_is_one_line(run_dir, tmp_path, case):
    ckpt, prompt, expect = run_dir, "hi", None
    if case == "missing":
        ckpt, expect = tmp_path / "nope.ckpt", "checkpoint not found"
    elif case == "empty-dir":
        (tmp_path / "e").mkdir()
        ckpt, expect = tmp_path / "e", "no best.ckpt or last.ckpt"
    elif case == "corrupt":
        ckpt, expect = tmp_path / "c.ckpt", "not a codette_np checkpoint"
        ckpt.write_bytes(b"garbage")
    elif case == "long-prompt":
        prompt, expect = "word " * 400, "leaves no room in context"
    one_error_line(cli("generate", "--checkpoint", ckpt, "--prompt", prompt), expect)

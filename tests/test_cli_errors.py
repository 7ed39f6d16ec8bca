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


def cli(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", f"codette_np.{module}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**ENV, **(env or {})})


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


# --------------------------------------------------------------------------- nothing lost, resume alone

SETTINGS = ["--lr", "2e-3", "--warmup-steps", "2", "--weight-decay", "0.05", "--seq-len", "48"]


def step_losses(out):
    import json

    recs = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r and r.get("kind") != "eval"}


def test_resume_from_the_run_directory_alone(tmp_path):
    """`--out DIR --resume` restores every setting; it continues exactly as the same resume with
    every original flag typed again."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert cli("train", *TINY, *SETTINGS, "--max-steps", "3", "--out", d).returncode == 0
    ra = cli("train", *TINY, *SETTINGS, "--max-steps", "5", "--out", a, "--resume")
    rb = cli("train", "--out", b, "--resume", "--max-steps", "5")
    assert ra.returncode == 0 and rb.returncode == 0, rb.stderr
    la, lb = step_losses(a), step_losses(b)
    assert sorted(lb) == [1, 2, 3, 4, 5] and all(la[s] == lb[s] for s in la)


def test_resume_refuses_a_changed_setting(run_dir):
    before = snapshot(run_dir)
    r = cli("train", "--out", run_dir, "--resume", "--max-steps", "9", "--seq-len", "32")
    one_error_line(r, "--seq-len was 64 there, not 32")
    assert snapshot(run_dir) == before


def test_resume_after_the_data_changed(tmp_path):
    data, out = tmp_path / "mine.txt", tmp_path / "run"
    data.write_text("\n\n".join(f"paragraph {i} about rivers and lanterns" for i in range(40)))
    base = [*TINY, "--data", data, "--no-builtin", "--vocab-size", "300", "--seq-len", "16"]
    assert cli("train", *base, "--max-steps", "2", "--out", out).returncode == 0
    data.write_text("\n\n".join(f"other text {i} on gardens" for i in range(30)))
    before = snapshot(out)
    r = cli("train", "--out", out, "--resume", "--max-steps", "3")
    one_error_line(r, "the training data changed since")
    assert "--allow-data-change" in r.stderr and snapshot(out) == before
    r = cli("train", "--out", out, "--resume", "--max-steps", "3", "--allow-data-change")
    assert r.returncode == 0, r.stderr
    assert "continuing on the new data" in (out / "train.log").read_text()


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path):
    out = tmp_path / "run"
    assert cli("train", *TINY, "--max-steps", "2", "--out", out).returncode == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # a write cut short
    r = cli("train", "--out", out, "--resume", "--max-steps", "3")
    assert r.returncode == 0, r.stderr
    assert "dropped 1 unreadable line" in r.stdout
    assert sorted(step_losses(out)) == [1, 2, 3]


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "codette_np.train", *TINY, "--max-steps", "100000",
                              "--save-every", "100000", "--out", str(out)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.1)
        r = cli("train", *TINY, "--max-steps", "1", "--out", out, "--overwrite")
        one_error_line(r, f"another training (PID {first.pid}) is using {out}")
    finally:
        first.kill()
        first.wait()


def test_stale_save_temporaries_are_removed(run_dir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = run_dir / f".last.ckpt.tmp-{dead.pid}"
    stale.write_bytes(b"x" * 1000)
    r = cli("train", "--out", run_dir, "--resume", "--max-steps", "3")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and f"removed {stale}" in r.stderr


def _in_process(monkeypatch, capsys, *args):
    from codette_np import train

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = train.main([*map(str, TINY), *map(str, args)])
    return code, capsys.readouterr()


def test_a_full_disk_names_the_checkpoint_still_good(tmp_path, monkeypatch, capsys):
    import errno

    from codette_np import checkpoint as ck

    real, calls = ck.save_checkpoint, []

    def full(path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **kw)

    monkeypatch.setattr(ck, "save_checkpoint", full)
    out = tmp_path / "run"
    code, io = _in_process(monkeypatch, capsys, "--max-steps", "4", "--save-every", "2", "--out", out)
    assert code == 2
    assert io.err.strip() == (f"error: cannot write {out / 'last.ckpt'}: the disk is full; "
                              f"{out / 'last.ckpt'} (step 2) still good")


def test_ctrl_c_during_start_up_is_one_line(tmp_path, monkeypatch, capsys):
    from codette_np.data import mix

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mix, "generate", interrupted)  # while the built-in data is generated
    code, io = _in_process(monkeypatch, capsys, "--max-steps", "2", "--out", tmp_path / "run")
    assert code == 130 and io.err.strip().startswith("error: interrupted during start-up")
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_ctrl_c_during_the_final_evaluation_is_not_swallowed(tmp_path, monkeypatch, capsys):
    import signal

    from codette_np import evaluate

    real = evaluate.Evaluator.run

    def interrupted(self):
        os.kill(os.getpid(), signal.SIGINT)  # caught by the trainer's handler: a flag
        return real(self)

    monkeypatch.setattr(evaluate.Evaluator, "run", interrupted)
    out = tmp_path / "run"
    code, io = _in_process(monkeypatch, capsys, "--max-steps", "2", "--export-dtype", "f16", "--out", out)
    assert code == 128 + signal.SIGINT
    assert "during the final evaluation" in io.out
    assert (out / "last.ckpt").is_file() and not list(out.glob("*.gguf"))
    # the evaluation stops at its next row or request instead of running to its end
    assert '"kind": "eval"' not in (out / "metrics.jsonl").read_text()


@pytest.mark.parametrize("case", ["samples-0", "backend-env", "data-out-dir", "export-onto-input",
                                  "export-onto-log"])
def test_more_one_line_errors(run_dir, tmp_path, case):
    if case == "samples-0":
        r = cli("train", *TINY, "--samples", "0", "--max-steps", "1", "--out", tmp_path / "r")
        one_error_line(r, "no training examples: --samples is 0 and no --data was given")
    elif case == "backend-env":
        for module, args in (("train", [*TINY, "--max-steps", "1", "--out", tmp_path / "r"]),
                             ("generate", ["--checkpoint", run_dir, "--prompt", "hi"]),
                             ("export", ["--checkpoint", run_dir, "--out", tmp_path / "m.gguf"])):
            one_error_line(cli(module, *args, env={"CODETTE_BACKEND": "cuda"}),
                           "CODETTE_BACKEND='cuda' is not a kernel backend")
    elif case == "data-out-dir":
        one_error_line(cli("data", "--samples", "3", "--out", tmp_path), "is a directory")
    elif case == "export-onto-input":
        before = snapshot(run_dir)
        r = cli("export", "--checkpoint", run_dir / "last.ckpt", "--out", run_dir / "last.ckpt")
        one_error_line(r, "is the checkpoint being exported")
        assert snapshot(run_dir) == before
    elif case == "export-onto-log":
        before = snapshot(run_dir)
        one_error_line(cli("export", "--checkpoint", run_dir, "--out", run_dir / "metrics.jsonl"),
                       "would replace metrics.jsonl of the run")
        assert snapshot(run_dir) == before


def test_a_container_memory_limit_lowers_what_is_available(tmp_path, monkeypatch):
    from codette_np import train

    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text(f"{3 * 2**30}\n")
    usage.write_text(f"{2**30}\n")
    monkeypatch.setattr(train, "CGROUP_MEMORY_FILES", ((str(limit), str(usage)),))
    assert train.available_memory_bytes() == 2 * 2**30
    limit.write_text("max\n")
    assert train.available_memory_bytes() > 0  # no limit: MemAvailable alone


def test_resume_keeps_the_saved_value_of_a_changeable_flag_not_given_again(tmp_path):
    from codette_np import train as tr

    ap = tr.build_parser()
    argv = ["--out", str(tmp_path), "--resume", "--max-steps", "7"]
    args = ap.parse_args(argv)
    header = {"args": {**vars(ap.parse_args([])), "max_steps": 3, "eval_tool_samples": 0, "eval_rows": 2,
                       "seq_len": 32}}
    merged = tr._resume_args(args, tr.given_flags(ap, argv), header, tmp_path / "last.ckpt")
    assert merged.max_steps == 7  # given again: this command's
    assert merged.eval_tool_samples == 0 and merged.eval_rows == 2 and merged.seq_len == 32  # the run's own


def test_forced_gemm_path_that_cannot_run_is_one_line(tmp_path):
    from codette_np import gemm

    missing = [p for p, why in gemm.available().items() if why is not None and p != "numpy"]
    if not missing:
        pytest.skip("every GEMM path runs here")
    r = cli("train", *TINY, "--precision", "bf16", "--max-steps", "1", "--out", tmp_path / "run",
            env={"CODETTE_GEMM": missing[0]})
    one_error_line(r, f"CODETTE_GEMM={missing[0]}: GEMM path '{missing[0]}' cannot run here")

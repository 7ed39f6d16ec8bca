"""The loss plot: drawn from metrics.jsonl; a run without matplotlib says how to get it and goes on."""

import json
import sys

import pytest

from codette_np import plot


def _metrics(d, n=20):
    recs = [{"step": s, "loss": 5.0 / s, "lr": 1e-3} for s in range(1, n + 1)]
    recs.append({"step": n, "kind": "eval", "categories": {"tools": {"loss": 0.4}, "mixed": {"loss": 0.3}},
                 "overall": {"loss": 0.35}})
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n{torn")


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    _metrics(tmp_path)
    out = plot.plot_run(tmp_path)
    assert out == tmp_path / "loss.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 0 and (tmp_path / "x.png").is_file()


def test_plot_errors_are_one_line(tmp_path, capsys):
    assert plot.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no metrics.jsonl in {tmp_path}"


def test_without_matplotlib_the_run_says_how_and_does_not_fail(tmp_path, monkeypatch, capsys):
    from codette_np import train

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    code = train.main(["--size", "nano", "--samples", "300", "--vocab-size", "400", "--seq-len", "64",
                       "--batch-size", "4", "--max-steps", "2", "--eval-tool-samples", "0", "--quiet",
                       "--export-dtype", "none", "--out", str(out)])
    assert code == 0
    said = capsys.readouterr().out
    assert "loss plot not drawn: matplotlib is not installed: pip install 'codette_np[plot]'" in said
    assert f"python -m codette_np.plot {out}" in said and not (out / "loss.png").exists()

"""Every small preset starts out of the box on the built-in data: the command a user types,
`python -m codette_np.train --size S --max-steps 2`, trains two steps, evaluates and exports.
(The three large presets are measured by hand: see the README's memory section.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codette_np import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("size", ["nano", "tiny", "micro", "mini"])
def test_preset_starts_with_the_builtin_data(tmp_path, size):
    out = tmp_path / size
    # two held-out tool requests keep the final evaluation short; everything else is the default
    cmd = [sys.executable, "-m", "codette_np.train", "--size", size, "--max-steps", "2", "--out", str(out),
           "--eval-tool-samples", "2", "--quiet"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={k: v for k, v in os.environ.items() if k != "CODETTE_BACKEND"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert [s["step"] for s in steps if "loss" in s and s.get("kind") != "eval"] == [1, 2]
    assert any(s.get("kind") == "eval" for s in steps)
    assert (out / "last.ckpt").is_file() and (out / f"codette-{size}-f16.gguf").is_file()
    preset = ModelConfig.preset(size)
    log = (out / "train.log").read_text()
    # the model keeps the preset's vocabulary (ids the text cannot fill are reserved), so its
    # parameter count is the preset's
    assert f"tokenizer: SentencePiece BPE, {preset.vocab_size} pieces" in log
    assert f"model: {size}, {preset.n_params:,} parameters" in log
    if "the training text supports at most" in log:
        assert f"fewer than the {size} preset's {preset.vocab_size}" in log and "reserved" in log

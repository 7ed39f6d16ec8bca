"""The printed memory plan is the truth: a run's peak resident memory is within 10% of its
estimate, for both plans, on the micro preset (the big presets are measured by hand: README)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The peak is this process image's VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over
# fork and exec, so a child of a large pytest process would report the parent's size.
WRAP = ("import runpy, sys\n"
        "sys.argv = ['codette_np.train'] + sys.argv[1:]\n"
        "code = 0\n"
        "try:\n"
        "    runpy.run_module('codette_np.train', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print('peak_rss_kib', hwm, file=sys.stderr)\n"
        "sys.exit(code)\n")


@pytest.mark.slow
@pytest.mark.parametrize("memory,weights", [("fp32", "fp32"), ("lean", "fp32"), ("lean", "bf16")])
def test_peak_rss_is_the_printed_estimate(tmp_path, memory, weights):
    out = tmp_path / f"{memory}-{weights}"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", WRAP, "--size", "micro", "--max-steps", "2", "--memory", memory, "--weights", weights,
                        "--eval-tool-samples", "0", "--export-dtype", "none", "--quiet", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    total = float(re.search(r"^\s+total\s+([\d.]+) GiB", (out / "train.log").read_text(), re.M).group(1))
    peak = int(re.search(r"peak_rss_kib (\d+)", r.stderr).group(1)) / 2**20
    print(f"{memory}, weights {weights}: peak RSS {peak:.3f} GiB, estimate {total:.2f} GiB")
    assert abs(peak - total) <= 0.10 * total, f"peak RSS {peak:.3f} GiB, estimate {total:.2f} GiB"

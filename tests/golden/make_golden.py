"""Regenerate nano_losses.json from the float64 reference (run from the repo root)."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_model import GOLDEN, golden_run  # noqa: E402

losses = golden_run(dtype=np.float64)
GOLDEN.write_text(json.dumps({
    "description": "first 10 losses of the fixed-seed nano run (tests/test_model.py:golden_run), "
                   "computed by the float64 NumPy reference; regenerate with tests/golden/make_golden.py",
    "losses": losses}, indent=1))
print(losses)

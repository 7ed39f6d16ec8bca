import os

import numpy as np
import pytest


def need_backend(name):
    """The kernel backend `name`; skips the test when it is not available, fails it when CI is set
    (CI has a compiler and Numba, so every backend must be there)."""
    from codette_np import backend as be

    why = be.available()[name]
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires the {name} backend: {why}")
        pytest.skip(why)
    return be.get(name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def rel_err(a, b):
    """max|a - b| / max|b|: the relative error used throughout the tests."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# Property tests: random in development, derandomized (reproducible) under CI.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

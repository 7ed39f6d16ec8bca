"""Installing where the C build fails (no compiler) still gives a working package.

The repo's source is copied without build products and pip-installed into a
temporary target with CC=false: setup.py must report the failed C build and
the install must succeed without codette_np._ckernels. A fresh interpreter
that sees only that target (PYTHONPATH, cwd elsewhere) then picks Numba, or
NumPy when Numba cannot be imported, warns once saying why, refuses
CODETTE_BACKEND=c with an error naming the C extension, and trains a nano
model for a few steps.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP_WARNING = "codette_np's C kernels could not be built"
BUILD_PRODUCTS = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.o", "build", "*.egg-info")

# Run in the child. An editable install of the repo (pip install -e .) registers a finder that
# resolves codette_np.* by name to the repo's tree, so a module missing from the installed copy
# (the C extension) would be found there: the child drops that finder first.
CHILD = r"""
import json, os, sys, warnings
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
os.environ.pop("CODETTE_BACKEND", None)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import numpy as np
    import codette_np
    from codette_np import AdamW, Model, ModelConfig, backend
    name = backend.default_name()
    backend.default_name()
    cfg = ModelConfig.preset("nano")
    model = Model(cfg, seed=0)
    opt = AdamW(model, lr=3e-3, weight_decay=0.0)
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 33)).astype(np.int32)
    losses = []
    for _ in range(3):
        losses.append(model.forward_backward(data[:, :-1], data[:, 1:]))
        opt.step()
ours = [str(w.message) for w in caught
        if issubclass(w.category, RuntimeWarning) and str(w.message).startswith("codette_np")]
os.environ["CODETTE_BACKEND"] = "c"
try:
    Model(cfg, seed=0)
    c_error = None
except Exception as e:
    c_error = f"{type(e).__name__}: {e}"
try:
    import codette_np._ckernels
    ckernels = codette_np._ckernels.__name__
except ImportError:
    ckernels = None
print(json.dumps(dict(file=codette_np.__file__, name=name, model_backend=model.backend_name,
                      sources=sorted(set(model.kernels.sources.values())), warnings=ours,
                      losses=losses, c_error=c_error, ckernels=ckernels)))
"""


def _numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _can_build_without_isolation() -> bool:
    """--no-build-isolation needs the build tools here: setuptools with bdist_wheel (>= 70.1, or wheel)."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
    except ImportError:
        return False
    return True


def install_copy(tmp, **env_extra):
    """pip-install a copy of the source (without build products) into <tmp>/site,
    with env_extra added to the environment; returns (site, pip's log)."""
    src, site = tmp / "src", tmp / "site"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "csrc", src / "csrc", ignore=BUILD_PRODUCTS)
    shutil.copytree(REPO / "codette_np", src / "codette_np", ignore=BUILD_PRODUCTS)
    assert not list(src.rglob("_ckernels*")), "the source copy holds a built extension"
    cmd = [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--target", str(site), str(src)]
    if _can_build_without_isolation():
        cmd.insert(4, "--no-build-isolation")
    # else pip builds in an isolated environment, fetching setuptools/cffi/wheel from its index
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", **env_extra)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"pip install failed:\n{log[-5000:]}"
    return site, log


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """<tmp>/site: the package pip-installed from a copy of the source with CC=false."""
    site, log = install_copy(tmp_path_factory.mktemp("fallback"), CC="false", CXX="false")
    assert SETUP_WARNING in log, f"setup.py did not report the failed C build:\n{log[-5000:]}"
    warning_line = next(line for line in log.splitlines() if SETUP_WARNING in line)
    assert re.search(r"\bfalse\b", warning_line), f"the build did not run the compiler CC=false: {warning_line}"
    assert (site / "codette_np" / "__init__.py").exists()
    assert not list(site.rglob("_ckernels*")), "a C extension was installed although CC=false"
    return site


def _run_child(site, tmp_path, pythonpath_first=()):
    env = {k: v for k, v in os.environ.items() if k not in ("CODETTE_BACKEND", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath_first), str(site)])
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_cache")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-5000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site)), f"imported {out['file']}, not the installed copy"
    assert out["ckernels"] is None, "codette_np._ckernels is importable in the child"
    return out


def _check_fallback(out, expected):
    assert out["name"] == expected and out["model_backend"] == expected
    assert out["sources"] == [expected]  # every kernel from the chosen backend
    assert len(out["warnings"]) == 1, out["warnings"]
    msg = out["warnings"][0]
    assert f"{expected!r}" in msg and "C extension" in msg, msg
    assert out["c_error"] is not None and out["c_error"].startswith("BackendUnavailable"), out["c_error"]
    assert "C extension" in out["c_error"], out["c_error"]
    losses = out["losses"]
    assert len(losses) == 3 and np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    return msg


@pytest.mark.slow
def test_install_without_compiler_runs_on_numba_or_numpy(installed, tmp_path):
    expected = "numba" if _numba_importable() else "numpy"
    _check_fallback(_run_child(installed, tmp_path), expected)


@pytest.mark.slow
def test_install_without_compiler_or_numba_runs_on_numpy(installed, tmp_path):
    fake = tmp_path / "no_numba"
    (fake / "numba").mkdir(parents=True)
    (fake / "numba" / "__init__.py").write_text(
        'raise ImportError("numba is made unimportable for this test")\n')
    msg = _check_fallback(_run_child(installed, tmp_path, pythonpath_first=[fake]), "numpy")
    assert "numba is not importable" in msg and "made unimportable" in msg, msg

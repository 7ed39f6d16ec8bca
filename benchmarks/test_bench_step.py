"""One whole training step (forward + backward + clip + AdamW) per backend,
at the `micro` and `mini` presets with batch 8 x 256 tokens.

A `lean` row times the lean memory plan's step (8-bit moments, the update
fused into backward, activations recomputed) on the first compiled backend,
with fp32 weights and with bf16 weights (`lean bf16 weights`).
Two more rows put the rates in context, measured in the same run:
- `matmul-floor`: `forward_backward` with every kernel replaced by a no-op,
  so only the model's numpy matrix products (the linear layers and the LM
  head, which every backend shares) and the Python around them run. Every
  backend's step does all of this and more (attention's own products, the
  other kernels, AdamW), so none can be faster.
- `torch`: the same model and step in PyTorch fp32 eager (torch_step.py, in
  its own process, with the same thread defaults), when PyTorch is
  installed (`make bench` installs it); `torch bf16 autocast` the same under
  torch.autocast(bfloat16), checked against our float64 gradients first.
The `bf16` rows time Model(precision="bf16") (the products through the
engine's bf16 GEMM, on the path gemm.path() names) on fp32 master weights and
on bf16 weights.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig
from codette_np import backend as be

BACKENDS = [n for n, why in be.available().items() if why is None]
B, T = 8, 256
SIZES = ["micro", "mini"]
ROUNDS = {"micro": 5, "mini": 3}


def _batch(cfg):
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, (B, T + 1)).astype(np.int32)
    return data[:, :-1], data[:, 1:]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_train_step(record, size, backend):
    cfg = ModelConfig.preset(size)
    model = Model(cfg, seed=0, backend=backend)
    opt = AdamW(model, lr=1e-4)
    x, y = _batch(cfg)

    def step():
        model.forward_backward(x, y)
        opt.step(max_grad_norm=1.0)

    loss0 = model.forward_backward(x, y)  # check: a sane loss before timing
    assert abs(loss0 - np.log(cfg.vocab_size)) < 0.5
    record(f"step:{size}", f"train step B{B} T{T}", backend, step, B * T, "tokens", rounds=ROUNDS[size])


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
@pytest.mark.parametrize("size", SIZES)
def test_lean_train_step(record, size, weights):
    """The lean memory plan's step on the C backend (numba, else numpy, without it): 8-bit
    moments, the update fused into backward, activations recomputed; fp32 or bf16 weights."""
    backend = next(b for b in ("c", "numba", "numpy") if b in BACKENDS)
    cfg = ModelConfig.preset(size)
    model = Model(cfg, seed=0, backend=backend, recompute=True, fused_update=True, weights=weights)
    opt = AdamW(model, lr=1e-4, state="q8")
    x, y = _batch(cfg)
    loss0, _ = opt.fused_step(x, y, lr=0.0)  # check: a sane loss before timing
    assert abs(loss0 - np.log(cfg.vocab_size)) < 0.5
    name = f"{backend} lean" + (" bf16 weights" if weights == "bf16" else "")
    record(f"step:{size}", f"train step B{B} T{T}", name, lambda: opt.fused_step(x, y, max_grad_norm=1.0),
           B * T, "tokens", rounds=ROUNDS[size])


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
@pytest.mark.parametrize("size", SIZES)
def test_bf16_train_step(record, size, weights):
    """Model(precision="bf16"): the full-buffer step (as the backend rows), the products in bf16."""
    from codette_np import gemm

    backend = next(b for b in ("c", "numba", "numpy") if b in BACKENDS)
    cfg = ModelConfig.preset(size)
    model = Model(cfg, seed=0, backend=backend, precision="bf16", weights=weights)
    opt = AdamW(model, lr=1e-4)
    x, y = _batch(cfg)

    def step():
        model.forward_backward(x, y)
        opt.step(max_grad_norm=1.0)

    assert abs(model.forward_backward(x, y) - np.log(cfg.vocab_size)) < 0.5
    name = f"{backend} bf16 {gemm.path()}" + (" on bf16 weights" if weights == "bf16" else "")
    record(f"step:{size}", f"train step B{B} T{T}", name, step, B * T, "tokens", rounds=ROUNDS[size])


class _NoKernels:
    """Every kernel of the dispatch table as a no-op (the crossentropy losses stay 0)."""

    def __getattr__(self, name):
        if name not in be.KERNELS:
            raise AttributeError(name)
        return lambda *args: 0.0


@pytest.mark.parametrize("size", SIZES)
def test_matmul_floor(record, size):
    cfg = ModelConfig.preset(size)
    model = Model(cfg, seed=0, backend="numpy")
    model.kernels = _NoKernels()
    x, y = _batch(cfg)
    record(f"step:{size}", f"train step B{B} T{T}", "matmul-floor", lambda: model.forward_backward(x, y),
           B * T, "tokens", rounds=ROUNDS[size])


def _cpu_has_bf16() -> bool:
    """avx512_bf16 or amx_bf16 in /proc/cpuinfo (PyTorch's fast bf16 paths need one)."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("autocast", ["none", "bf16"])
@pytest.mark.parametrize("size", SIZES)
def test_torch_step(record_external, size, autocast):
    if autocast == "bf16" and size != "micro" and not _cpu_has_bf16():
        pytest.skip("PyTorch's bf16 autocast without AVX512-BF16 or AMX takes minutes a step: timed at micro only")
    script = os.path.join(os.path.dirname(__file__), "torch_step.py")
    out = subprocess.run([sys.executable, script, "--size", size, "--batch-size", str(B), "--seq-len", str(T),
                          "--rounds", str(ROUNDS[size] if autocast == "none" or _cpu_has_bf16() else 1),
                          "--autocast", autocast],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    name = "torch" if autocast == "none" else "torch bf16 autocast"
    record_external(f"step:{size}", f"train step B{B} T{T}", name, res["median_s"], B * T, "tokens")

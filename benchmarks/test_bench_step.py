"""One whole training step (forward + backward + clip + AdamW) per backend,
at the `micro` and `mini` presets with batch 8 x 256 tokens."""

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig
from codette_np import backend as be

BACKENDS = [n for n, why in be.available().items() if why is None]
B, T = 8, 256


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", ["micro", "mini"])
def test_train_step(record, size, backend):
    cfg = ModelConfig.preset(size)
    model = Model(cfg, seed=0, backend=backend)
    opt = AdamW(model, lr=1e-4)
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, (B, T + 1)).astype(np.int32)
    x, y = data[:, :-1], data[:, 1:]

    def step():
        model.forward_backward(x, y)
        opt.step(max_grad_norm=1.0)

    loss0 = model.forward_backward(x, y)  # check: a sane loss before timing
    assert abs(loss0 - np.log(cfg.vocab_size)) < 0.5
    record(f"step:{size}", f"train step B{B} T{T}", backend, step, B * T, "tokens",
           rounds=3 if size == "mini" else 5)

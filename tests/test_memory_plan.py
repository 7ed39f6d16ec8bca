"""The memory plan printed before a run allocates: its choices and its arithmetic."""

import numpy as np
import pytest

from codette_np import AdamW, Model, ModelConfig
from codette_np import optim
from codette_np.memory import plan_for


def test_auto_is_fp32_when_it_fits_else_lean():
    cfg = ModelConfig.preset("small")
    fp32 = plan_for(cfg, 1, 512, "fp32")
    lean = plan_for(cfg, 1, 512, "lean")
    assert lean.total < fp32.total
    assert plan_for(cfg, 1, 512, "auto", available=fp32.total).name == "fp32"
    assert plan_for(cfg, 1, 512, "auto", available=fp32.total - 1).name == "lean"
    assert plan_for(cfg, 1, 512, "auto", available=None).name == "fp32"
    with pytest.raises(ValueError, match="memory must be one of"):
        plan_for(cfg, 1, 512, "tiny")


def test_plan_buffers_are_the_allocated_ones():
    cfg = ModelConfig.preset("micro")
    model = Model(cfg, seed=0)
    for memory, weights in (("fp32", "fp32"), ("lean", "fp32"), ("lean", "bf16"), ("fp32", "bf16")):
        plan = plan_for(cfg, 4, 64, memory, weights=weights)
        parts = dict(plan.buffers)
        m = Model(cfg, seed=0, recompute=plan.recompute, fused_update=plan.fused_update,
                  weights=plan.weights)
        opt = AdamW(m, state=plan.optimizer_state)
        assert plan.weights == weights
        wbytes = [b for what, b in plan.buffers if what.startswith("weights")]
        assert wbytes == [m.params.nbytes + m.params_bf16.nbytes]
        if weights == "bf16":  # the decoded matrix and the optimizer's chunk, as allocated once used
            opt._chunk = np.empty(optim.WEIGHT_CHUNK, np.float32)
            assert parts["one matrix fp32 (decoded weight, then gradient)"] == m._matrix_f32.nbytes + opt._chunk.nbytes
        grads = [b for what, b in plan.buffers if what.startswith("gradients")]
        assert grads == [m.grad_buffer_bytes()]
        m.forward_backward(np.zeros((4, 64), np.int32), np.ones((4, 64), np.int32),
                           on_grads=(lambda names: None) if plan.fused_update else None)
        acts = [b for what, b in plan.buffers if what.startswith("activations")]
        assert acts == [m.activation_bytes(4, 64)]
        assert plan.recompute == plan.fused_update == (memory == "lean")
        moments = [b for what, b in plan.buffers if what.startswith("AdamW")]
        assert moments == [pytest.approx(opt.nbytes, abs=1)]
        assert plan.total == sum(parts.values())
        text = plan.describe(available=2**34)
        assert f"memory plan '{memory}', weights {weights}:" in text and "of 16.00 GiB available" in text
    # per parameter: 16 bytes in fp32, about 4.5 in lean
    assert dict(plan_for(cfg, 1, 8, "fp32").buffers)["AdamW moments fp32"] == 8 * cfg.n_params
    lean = plan_for(ModelConfig.preset("small"), 1, 8, "lean", weights="bf16")
    assert 2.0 < dict(lean.buffers)["AdamW moments 8-bit blockwise"] / lean.n_params < 2.1
    per_param = sum(b for what, b in lean.buffers if what.startswith(("weights", "gradients", "AdamW")))
    assert 4.0 < per_param / lean.n_params < 4.6


def test_the_key_value_cache_is_planned_only_when_evaluation_generates():
    cfg = ModelConfig.preset("small")
    gen, no_gen = plan_for(cfg, 1, 512, "lean"), plan_for(cfg, 1, 512, "lean", generation=False)
    kv = 4 * cfg.n_layer * cfg.context_length * 2 * cfg.d_model
    m = Model(ModelConfig.preset("nano"), init=False)
    c = m.new_cache()
    assert c.k.nbytes + c.v.nbytes == 4 * m.cfg.n_layer * m.cfg.context_length * 2 * m.cfg.d_model
    assert gen.total - no_gen.total == kv


def test_auto_weights_are_fp32_when_they_fit_else_bf16():
    cfg = ModelConfig.preset("small")
    wide = plan_for(cfg, 1, 512, "lean", weights="fp32")
    narrow = plan_for(cfg, 1, 512, "lean", weights="bf16")
    assert narrow.total < wide.total - 2 * 2**30  # 2 bytes less per matrix parameter
    assert plan_for(cfg, 1, 512, "lean", available=wide.total).weights == "fp32"
    assert plan_for(cfg, 1, 512, "lean", available=wide.total - 1).weights == "bf16"
    assert plan_for(cfg, 1, 512, "lean").weights == "fp32"  # nothing known about the machine
    auto = plan_for(cfg, 1, 512, "auto", available=wide.total - 1)
    assert (auto.name, auto.weights) == ("lean", "bf16")
    with pytest.raises(ValueError, match="weights must be one of"):
        plan_for(cfg, 1, 512, "lean", weights="fp16")

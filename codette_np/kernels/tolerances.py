"""How close every float32 kernel must come to the float64 reference: the one table.

    tolerance(kernel, backend) -> max|got - oracle| / max|oracle|, over every output

used by the kernel tests (every backend, every SIMD path) and by the
benchmarks' check before timing. The base values hold for the C backend and
the float32 NumPy reference (about 4-10x the float32 reference's own error on
the tests' cases); BACKEND_TOL lists where a backend's different but
equally valid arithmetic needs another bound.
"""

from __future__ import annotations

KERNEL_TOL = {
    "embedding_forward": 0.0,  # a copy
    "embedding_backward": 1e-6,
    "layernorm_forward": 2e-6,
    "layernorm_backward": 2e-6,
    "layernorm_backward_add": 2e-6,
    "bias_forward": 1e-6,
    "bias_backward": 2e-6,
    "residual_forward": 1e-6,
    "residual_backward": 1e-6,
    "rope_forward": 1e-6,
    "rope_backward": 1e-6,
    "attention_forward": 1e-5,
    "attention_backward": 1e-5,
    "gelu_forward": 1e-6,
    "gelu_backward": 5e-6,  # the reference's 1 + tanh(u) cancels for x < 0
    "bias_gelu_forward": 1e-6,
    "gelu_bias_backward": 5e-6,  # as gelu_backward
    "crossentropy_forward_backward": 2e-6,
    "grad_norm_sq": 1e-12,  # float64 sums of exact float32 squares
    "adamw_step": 1e-6,
    "adamw_step_bf16": 1e-6,  # the parameters; the stored moments are checked code by code
    "adamw_step_q8": 1e-6,
    # bf16 weights: one bf16 step where the float32 and float64 updates round to opposite
    # sides (the tests also count those elements); a step of x is at most 2^-7 |x| (2^-7 just
    # above a power of two, 2^-8 just below the next), so at most 2^-7 of the largest
    "adamw_step_q8_bf16w": 2.0 ** -7,
}

BACKEND_TOL = {
    "numba": {
        "attention_forward": 5e-6,
        "gelu_backward": 1e-5,  # rational tanh (7 ulp) and the cancellation in 1 - t^2
        "gelu_bias_backward": 1e-5,  # as gelu_backward
    },
}

MODEL_TOL = 1e-4  # a whole float32 model against float64: loss, every gradient, the logits
GOLDEN_TOL = 1e-5  # the recorded float64 golden training losses, relative


def tolerance(kernel: str, backend: str = "c") -> float:
    """The bound for `kernel` on `backend` ("c", "numba", "numpy")."""
    return BACKEND_TOL.get(backend, {}).get(kernel, KERNEL_TOL[kernel])

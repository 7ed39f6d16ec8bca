"""One boundary contract for every compiled backend (codette_np/kernels/checks.py).

Each bad call below raises the same error type with the same message on the
C and Numba backends, and each good call at the edge of the contract (an
exact alias where ref.py allows it, no rows) is accepted by both.
"""

import numpy as np
import pytest

from codette_np import backend as be
from conftest import need_backend

COMPILED = [n for n in be.ORDER if n != "numpy"]


def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def readonly(a):
    a.flags.writeable = False
    return a


X = z(4, 16)
W, BIAS = np.ones(16, np.float32), z(16)
MEAN, RSTD = z(4), np.ones(4, np.float32)
Q = z(1, 4, 2, 8)
QKV = z(4, 48)  # the model's q | k | v buffer for B=1, T=4, NH=2, hs=8
q_, k_, v_ = (QKV.reshape(1, 4, 3, 2, 8)[:, :, i] for i in range(3))
P = 40

# (id, call, error type, the start of its message)
BAD = [
    ("list-not-array", lambda K: K.gelu_forward([0.0], X), TypeError, "out must be a numpy array"),
    ("float64-input", lambda K: K.gelu_forward(X.copy(), z(4, 16, dtype=np.float64)), TypeError,
     "inp: kernels take float32, got float64"),
    ("int64-ids", lambda K: K.embedding_forward(X.copy(), z(4, dtype=np.int64), z(3, 16)), TypeError,
     "tokens: kernels take int32, got int64"),
    ("id-too-large", lambda K: K.embedding_forward(X.copy(), np.array([0, 1, 2, 3], np.int32), z(3, 16)),
     IndexError, "tokens holds ids outside [0, 3)"),
    ("negative-id", lambda K: K.embedding_backward(z(3, 16), X, np.array([0, -1, 2, 1], np.int32)),
     IndexError, "tokens holds ids outside [0, 3)"),
    ("target-below-minus-one", lambda K: K.crossentropy_forward_backward(
        z(4), X.copy(), X, np.array([0, -2, 1, 1], np.int32), 1.0), IndexError, "targets holds ids outside [-1, 16)"),
    ("shape", lambda K: K.residual_backward(X.copy(), z(4, 15)), ValueError,
     "dbranch has shape (4, 15), expected (4, 16)"),
    ("read-only-output", lambda K: K.gelu_forward(readonly(z(4, 16)), X), ValueError,
     "out is an output and must be writable"),
    ("non-contiguous-output", lambda K: K.gelu_forward(z(16, 4).T, X), ValueError,
     "out must be a C-contiguous array"),
    ("transposed-input", lambda K: K.gelu_forward(z(16, 4), z(4, 16).T), ValueError,
     "inp must be a C-contiguous array"),
    ("bias-length", lambda K: K.bias_gelu_forward(X.copy(), X.copy(), z(15)), ValueError,
     "bias_gelu_forward: pre (4, 16) must end in bias's length"),
    ("pre-aliases-out", lambda K: K.bias_gelu_forward(X, X, BIAS), ValueError, "out overlaps pre"),
    # Numba used to accept these and return wrong sums
    ("dbias-inside-dout", lambda K: (lambda d: K.bias_backward(d[0], d))(z(4, 16)), ValueError,
     "dbias overlaps dout"),
    ("dbias-inside-dinp", lambda K: (lambda d: K.gelu_bias_backward(d, d[0], z(4, 16), z(4, 16)))(z(4, 16)),
     ValueError, "dbias overlaps dinp"),
    ("partial-overlap", lambda K: (lambda b: K.gelu_forward(b[1:5], b[0:4]))(z(5, 16)), ValueError,
     "out overlaps inp"),
    ("ln-add-aliases-dout", lambda K: (lambda d: K.layernorm_backward_add(d, z(16), z(16), d, X, W, MEAN, RSTD))(
        z(4, 16)), ValueError, "dresid overlaps dout"),
    ("dweight-is-weight", lambda K: (lambda w: K.layernorm_backward(z(4, 16), w, z(16), X, X, w, MEAN, RSTD))(
        np.ones(16, np.float32)), ValueError, "dweight overlaps weight"),
    ("lse-shape", lambda K: K.attention_forward(Q.copy(), z(1, 4, 2), Q, Q, Q), ValueError,
     "lse has shape (1, 4, 2), expected (1, 2, 4)"),
    ("head-stride", lambda K: K.attention_forward(Q.copy(), z(1, 2, 4), z(1, 4, 2, 16)[..., ::2], Q, Q),
     ValueError, "q: the last two dims (NH, hs) must be contiguous"),
    ("negative-stride", lambda K: K.rope_forward(Q.copy(), z(1, 4, 2, 8)[:, ::-1], z(4, 4), z(4, 4)),
     ValueError, "inp: strides"),
    ("att-out-is-q", lambda K: (lambda q: K.attention_forward(q, z(1, 2, 4), q, Q, Q))(z(1, 4, 2, 8)),
     ValueError, "out overlaps q"),
    ("adamw-step-0", lambda K: K.adamw_step(z(P), z(P), z(P), z(P), True,
                                            1e-3, 0.9, 0.95, 1e-8, 0.1, 0, 1.0), ValueError,
     "adamw_step: step counts from 1, got 0"),
    ("adamw-m-is-v", lambda K: (lambda m: K.adamw_step(z(P), z(P), m, m, True,
                                                       1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0))(z(P)),
     ValueError, "m overlaps v"),
    ("adamw-decay-type", lambda K: K.adamw_step(z(P), z(P), z(P), z(P), z(P), 1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0),
     TypeError, "adamw_step: decay is True or False"),
    ("adamw-bf16-m-dtype", lambda K: K.adamw_step_bf16(z(P), z(P), z(P), z(P, dtype=np.uint16), True, 1e-3, 0.9,
                                                       0.95, 1e-8, 0.1, 1, 1.0, 0, 0),
     TypeError, "m: kernels take uint16, got float32"),
    ("adamw-q8-absmax-shape", lambda K: K.adamw_step_q8(z(300), z(300), z(300, dtype=np.uint8),
                                                        z(300, dtype=np.uint8), z(1), z(2), True, 1e-3, 0.9,
                                                        0.95, 1e-8, 0.1, 1, 1.0, 0, 0),
     ValueError, "m_absmax has shape (1,), expected (2,)"),
    ("adamw-q8-offset", lambda K: K.adamw_step_q8(z(P), z(P), z(P, dtype=np.uint8), z(P, dtype=np.uint8), z(1),
                                                  z(1), True, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1.0, 0, -1),
     ValueError, "adamw_step_q8: offset must be an integer in [0, 2^63), got -1"),
    ("adamw-q8-bf16w-params", lambda K: K.adamw_step_q8_bf16w(z(P), z(P), z(P, dtype=np.uint8),
                                                              z(P, dtype=np.uint8), z(1), z(1), True, 1e-3,
                                                              0.9, 0.95, 1e-8, 0.1, 1, 1.0, 0, 0),
     TypeError, "params: kernels take uint16, got float32"),
    ("norm-2d", lambda K: K.grad_norm_sq(X), ValueError, "grads must have 1 dimensions"),
]

# calls at the edge of the contract that every backend accepts
GOOD = [
    ("gelu-in-place", lambda K: (lambda x: K.gelu_forward(x, x))(z(4, 16))),
    ("ce-in-place", lambda K: (lambda lg: K.crossentropy_forward_backward(z(4), lg, lg, np.array([0, -1, 3, 15], np.int32), 1.0))(z(4, 16))),
    ("rope-in-place-on-qkv-views", lambda K: K.rope_forward(q_, q_, z(4, 4), z(4, 4))),
    ("attention-on-qkv-views", lambda K: K.attention_forward(z(1, 4, 2, 8), z(1, 2, 4), q_, k_, v_)),
    ("no-rows", lambda K: K.layernorm_backward_add(z(0, 16), z(16), z(16), z(0, 16), z(0, 16), W, z(0), z(0))),
    ("nd-contiguous", lambda K: K.gelu_forward(z(2, 3, 16), z(2, 3, 16))),
]


@pytest.fixture(params=COMPILED)
def K(request):
    return need_backend(request.param)


def _raised(call, K):
    with pytest.raises(Exception) as e:
        call(K)
    return type(e.value), str(e.value)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_call_raises_the_contract_error(K, case):
    _, call, etype, start = case
    typ, msg = _raised(call, K)
    assert typ is etype and msg.startswith(start), f"{K.name}: {typ.__name__}: {msg}"


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_every_backend_raises_the_same_error(case):
    _, call, _, _ = case
    got = {name: _raised(call, need_backend(name)) for name in COMPILED}
    assert len(set(got.values())) == 1, got


@pytest.mark.parametrize("case", GOOD, ids=[c[0] for c in GOOD])
def test_edge_calls_are_accepted(K, case):
    case[1](K)

"""The model: llama.cpp's `starcoder2` architecture, forward and backward.

    x = token_embd[tokens]
    per layer:  h = LN(x; attn_norm); q,k,v = h Wq^T+bq, h Wk^T+bk, h Wv^T+bv
                q,k = RoPE_neox(q,k) over the whole head; y = causal_attn(q,k,v)
                x = x + y Wo^T + bo
                h = LN(x; ffn_norm); x = x + GELU_tanh(h Wup^T + bup) Wdown^T + bdown
    logits = LN(x; output_norm) token_embd^T        (tied, no output bias)

Three pieces, as in llama2.c: the config (codette_np.config), the weights
(one flat buffer carved by codette_np.params) and the run state
(`Activations`, preallocated once per (B, T) and reused every step).
Element-wise ops go through one kernel backend (codette_np.backend); the
matrix products go through numpy's BLAS into preallocated buffers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from codette_np import backend as _backend
from codette_np import gemm
from codette_np.config import ModelConfig
from codette_np.params import BLOCK_TENSOR_NAMES, WEIGHT_FORMATS, ParamLayout

PRECISIONS = ("fp32", "bf16")  # Model(precision=...): the matrix products' operands
HEAD_CHUNK_BYTES = 64 << 20  # the LM head + cross-entropy runs over row chunks of at most this many logit bytes


class Activations:
    """Every buffer forward saves for backward, and backward's scratch, for one (B, T)."""

    def __init__(self, cfg: ModelConfig, B: int, T: int, dtype, with_grad: bool, recompute: bool = False,
                 precision: str = "fp32"):
        C, F, L, NH, V = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.n_head, cfg.vocab_size
        N = B * T
        z = lambda *shape: np.zeros(shape, dtype=dtype)
        u = lambda *shape: np.zeros(shape, dtype=np.uint16)  # bf16 bits
        self.B, self.T, self.with_grad, self.recompute = B, T, with_grad, recompute
        self.bf16 = precision == "bf16"
        # inference, and training that recomputes each layer in backward, keep one layer's
        # buffers and reuse them; only the residual stream entering each layer is kept
        self.per_layer = with_grad and not recompute
        Ls = L if self.per_layer else 1
        self.resid = z(L + 1, N, C)  # residual stream entering each layer, and the final one
        self.ln1 = z(Ls, N, C)
        self.ln1_mean, self.ln1_rstd = z(Ls, N), z(Ls, N)
        self.qkv = z(Ls, N, 3 * C)  # q | k | v side by side, q and k after RoPE
        self.att = z(Ls, N, C)  # attention output, heads concatenated
        self.lse = z(Ls, B, NH, T)  # per-row log-sum-exp of the attention scores
        self.resid_mid = z(Ls, N, C)  # residual stream after the attention block
        self.ln2 = z(Ls, N, C)
        self.ln2_mean, self.ln2_rstd = z(Ls, N), z(Ls, N)
        self.up = z(Ls, N, F)  # pre-activation of the FFN
        self.gelu = z(Ls, N, F)
        if self.bf16:  # what backward needs of each layer, but the residual stream (resid_mid), the
            # attention output (its rowsum with d att in attention backward cancels) and the
            # statistics, is kept in bf16 (half the bytes); the float32 forms are one layer's scratch
            self.ln1, self.qkv = z(1, N, C), z(1, N, 3 * C)
            self.ln2, self.up, self.gelu = z(1, N, C), z(1, N, F), z(1, N, F)
            self.ln1_b, self.qkv_b, self.att_b = u(Ls, N, C), u(Ls, N, 3 * C), u(1, N, C)
            self.ln2_b, self.up_b, self.gelu_b = u(Ls, N, C), u(Ls, N, F), u(Ls, N, F)
            self.lnf_b = u(N, C)
            self.wte_b = u(V, C)  # the tied embedding in bf16 for the LM head, once a step
        self.lnf = z(N, C)
        self.lnf_mean, self.lnf_rstd = z(N), z(N)
        self.head_rows = max(1, min(N, HEAD_CHUNK_BYTES // (V * np.dtype(dtype).itemsize)))
        self.logits = z(self.head_rows, V)  # one chunk of logits, then its dlogits in place
        self.losses = z(N)
        cos, sin = _rope(cfg, T, dtype)
        self.cos, self.sin = cos, sin  # (T, hs/2)
        if with_grad:
            self.dresid = z(N, C)  # gradient of the residual stream, walking backward
            self.dln = z(N, C)
            self.datt = z(N, C)
            self.dqkv = z(N, 3 * C)
            self.dff = z(N, F)
            self.dup = z(N, F)
            self.dwte_chunk = z(V, C) if self.head_rows < N else None
            if self.bf16:
                self.dy_b = u(N * max(3 * C, F))  # a product's output gradient in bf16


class KVCache:
    """Keys (after RoPE) and values of every layer for one sequence: (L, ctx, C) each,
    and the RoPE tables for every position."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32):
        self.k = np.zeros((cfg.n_layer, cfg.context_length, cfg.d_model), dtype=dtype)
        self.v = np.zeros_like(self.k)
        self.cos, self.sin = _rope(cfg, cfg.context_length, dtype)  # (ctx, hs/2)
        self.pos = 0  # number of positions filled

    def reset(self):
        self.pos = 0


def _rope(cfg, T, dtype):
    from codette_np.kernels.ref import rope_tables

    return rope_tables(T, cfg.head_dim, cfg.rope_base, dtype)


class Model:
    """A starcoder2-architecture decoder with flat float buffers.

    Model(cfg, seed=0, dtype=np.float32, backend=None). `backend` names the
    kernel backend ("c", "numba", "numpy"); None uses CODETTE_BACKEND or the
    best available. float64 models always use the NumPy reference.

    weights="bf16" stores the blocks' matrices as bf16 (2 bytes per parameter,
    params.stored_bf16): each layer's are decoded to float32 into one
    layer-sized buffer for its products, and the optimizer updates them in
    float32 and stores them back with stochastic rounding. The embedding and
    the 1-D tensors stay float32 (in `params`; the bf16 bits in `params_bf16`).

    precision="bf16" runs the matrix products (the layers' and the LM head's) in bf16
    through codette_np.gemm, with float32 accumulation: on bf16 weights the stored bits
    are multiplied directly; on float32 weights each matrix is rounded to nearest bf16
    right before its product. The products' inputs, q|k|v and the FFN pre-activation are
    kept in bf16 for backward; the residual stream, the attention output, the LayerNorm
    statistics, softmax, the loss and the optimizer stay float32.
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0, dtype=np.float32, backend: str | None = None,
                 init: bool = True, recompute: bool = False, fused_update: bool = False,
                 weights: str | None = None, precision: str = "fp32"):
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        if weights is None:
            weights = "bf16" if precision == "bf16" else "fp32"
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
        if weights == "bf16" and self.dtype != np.float32:
            raise ValueError("weights='bf16' needs dtype float32 (the products run in float32)")
        self.weights, self.precision = weights, precision
        self.layout = ParamLayout(cfg)
        self.kernels = _backend.get(backend, dtype=self.dtype)
        self._where, n32, n16 = where, n32, n16 = self.layout.stores(weights)
        self.params = np.zeros(n32, dtype=self.dtype)  # (P32,) the float32 tensors: all with weights="fp32"
        self.params_bf16 = np.zeros(n16, dtype=np.uint16)  # (P16,) bf16 bits of the blocks' matrices
        self._flat = {}  # name -> its flat view in its store
        for sl in self.layout.slots:
            store, off = where[sl.name]
            self._flat[sl.name] = (self.params if store == "fp32" else self.params_bf16)[off:off + sl.size]
        self._p = {sl.name: self._flat[sl.name].reshape(sl.shape) for sl in self.layout.slots}
        if weights == "fp32":  # each layer's weights by suffix: views of the store
            self._lw = [{**{sfx: self._p[f"blk.{l}.{sfx}"] for sfx in BLOCK_TENSOR_NAMES},
                         **self.layout.fused(self.params, l)} for l in range(cfg.n_layer)]
        else:  # a matrix decoded to float32 right before its product, one at a time
            self._matrix_f32 = np.zeros(self._matrix_sizes(), dtype=np.float32)
        if precision == "bf16" and weights == "fp32":  # float32 master weights: each matrix rounded
            self._matrix_b16 = np.zeros(self._matrix_sizes(), dtype=np.uint16)  # to bf16 before its product
        # fused_update: no full gradient buffer; the optimizer updates each layer as soon as its
        # gradients are complete (forward_backward's on_grads), so one layer's gradients, and
        # the tied embedding's and the final norm's (complete only at the ends), exist at once
        self.fused_update = bool(fused_update)
        if not self.fused_update:
            self.grads = np.zeros(self.layout.total, dtype=self.dtype)  # (P,) same layout as params
            self._g = self.layout.views(self.grads)
            self._gf = [self.layout.fused(self.grads, i) for i in range(cfg.n_layer)]
        else:
            self.grads = None
            self._g, self._gf = self._layer_grad_views()
        self.grads_valid = False  # True once forward_backward has written self.grads
        # recompute: backward re-runs each layer's forward from its saved input instead of keeping
        # every layer's activations (about a third more compute, L times fewer activation bytes)
        self.recompute = bool(recompute)
        self._train_acts: Activations | None = None  # buffers for the last training (B, T)
        self._infer_acts: Activations | None = None  # buffers for the last inference (B, T)
        if init:
            self.init_weights(seed)

    # -- parameters ---------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self.kernels.name

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    def named_parameters(self):
        """(name, view of its store): float arrays, or uint16 bf16 bits for the tensors a
        weights="bf16" model stores as bf16 (parameters_f32() decodes those)."""
        return self._p.items()

    def named_grads(self):
        return self._g.items()

    def _matrix_sizes(self) -> int:
        """Elements of the largest matrix a layer's products take (q, k, v count as one (3C, C))."""
        C, F = self.cfg.d_model, self.cfg.d_ff
        return max(3 * C * C, C * F)

    def _layer_grad_views(self):
        """Gradient views for fused_update. A layer's matrices complete their gradients one
        after another (grad_groups), each updated before the next is computed, so they share
        one buffer of the largest one's size (with bf16 weights, the buffer their decoded weights
        use); the layer's vectors share one set of buffers; the embedding and the final norm
        have their own."""
        L, C = self.cfg.n_layer, self.cfg.d_model
        if self.weights == "bf16":  # a matrix's gradient overwrites its decoded weight, which its
            # product (d input = d output . W) has used by then; the update follows at once
            self._matrix_grad = self._matrix_f32
        else:
            self._matrix_grad = np.zeros(self._matrix_sizes(), dtype=self.dtype)  # (largest matrix,)
        self._vector_grad = {sfx: np.zeros(self.layout.by_name[f"blk.0.{sfx}"].shape, dtype=self.dtype)
                             for sfx in BLOCK_TENSOR_NAMES
                             if len(self.layout.by_name[f"blk.0.{sfx}"].shape) == 1
                             and not sfx.startswith(("attn_q.", "attn_k.", "attn_v."))}
        qkv_bias = np.zeros(3 * C, dtype=self.dtype)  # q | k | v biases, adjacent as in the layout
        qkv = {"qkv.weight": self._matrix_grad[:3 * C * C].reshape(3 * C, C), "qkv.bias": qkv_bias}
        g = {}
        for s in self.layout.slots:
            if not s.name.startswith("blk."):
                g[s.name] = np.zeros(s.shape, dtype=self.dtype)
                continue
            sfx = s.name.split(".", 2)[2]
            if sfx.startswith(("attn_q.", "attn_k.", "attn_v.")):
                i = "qkv".index(sfx[5])
                g[s.name] = (self._matrix_grad[i * C * C:(i + 1) * C * C].reshape(C, C) if len(s.shape) == 2
                             else qkv_bias[i * C:(i + 1) * C])
            elif len(s.shape) == 2:
                g[s.name] = self._matrix_grad[:s.size].reshape(s.shape)
            else:
                g[s.name] = self._vector_grad[sfx]
        self._vector_grad["qkv.bias"] = qkv_bias
        return g, [qkv] * L

    def grad_buffer_bytes(self) -> int:
        """Bytes of the gradient buffers: the full one, or fused_update's shared ones."""
        if not self.fused_update:
            return self.grads.nbytes
        edges = sum(self._g[s.name].nbytes for s in self.layout.slots if not s.name.startswith("blk."))
        shared = self.weights == "bf16"  # the matrix gradients live in the decoded-weight buffer
        return (0 if shared else self._matrix_grad.nbytes) + sum(v.nbytes for v in self._vector_grad.values()) + edges

    def _layer_weights(self, l: int) -> Mapping:
        """Layer l's weights as float32 arrays by suffix, with the fused "qkv.weight" (3C, C) and
        "qkv.bias" (3C,): views of the store with fp32 weights. With bf16 weights, a matrix is
        decoded on access into one buffer of the largest matrix's size, so it is valid until
        the next matrix is accessed (each product takes its weight right before it runs)."""
        if self.weights == "fp32":
            return self._lw[l]
        return _DecodedLayer(self, l)

    def _store_span(self, name: str, n: int) -> np.ndarray:
        """n elements of the store holding `name`, from its first (adjacent tensors: q | k | v)."""
        store, off = self._where[name]
        return (self.params if store == "fp32" else self.params_bf16)[off:off + n]

    def stored(self, name: str) -> np.ndarray:
        """Tensor `name` as a flat view of its store: float32, or uint16 bf16 bits."""
        return self._flat[name]

    def parameters_f32(self) -> Mapping:
        """name -> float32 array of every tensor: views of the store, or, for bf16-stored
        tensors, a decoded copy made on access (so a whole-model float32 copy never exists)."""
        return _Float32Weights(self)

    def set_parameter(self, name: str, values):
        """Write tensor `name` from float values (rounded to the nearest bf16 where stored bf16)."""
        from codette_np.kernels.ref import bf16_round_nearest

        dst = self._p[name]
        values = np.asarray(values)
        if values.shape != dst.shape:
            raise ValueError(f"{name} has shape {dst.shape}, got values of shape {values.shape}")
        dst[...] = bf16_round_nearest(values) if dst.dtype == np.uint16 else values

    def grad_groups(self) -> list[list[str]]:
        """The tensors whose gradients forward_backward completes together, in the order it
        completes them: the final norm; per layer from the last to the first, each product's
        weight with its bias (ffn_down, ffn_up, then attn_output, q|k|v) and each norm; the
        embedding last."""
        groups = [["output_norm.weight", "output_norm.bias"]]
        for l in reversed(range(self.cfg.n_layer)):
            pre = f"blk.{l}."
            groups += [[pre + "ffn_down.weight", pre + "ffn_down.bias"],
                       [pre + "ffn_up.weight", pre + "ffn_up.bias"],
                       [pre + "ffn_norm.weight", pre + "ffn_norm.bias"],
                       [pre + "attn_output.weight", pre + "attn_output.bias"],
                       [pre + f"attn_{x}.weight" for x in "qkv"] + [pre + f"attn_{x}.bias" for x in "qkv"],
                       [pre + "attn_norm.weight", pre + "attn_norm.bias"]]
        groups.append(["token_embd.weight"])
        return groups

    def init_weights(self, seed: int):
        """normal(0, 0.02) matrices; attn_output/ffn_down scaled by 1/sqrt(2 L); biases 0; norm weights 1.

        Values are drawn in float32 whatever the model dtype, so a float64 model
        with the same seed holds exactly the float32 model's weights.
        """
        rng = np.random.default_rng(seed)
        resid_scale = 1.0 / np.sqrt(2.0 * self.cfg.n_layer)
        for name, p in self._p.items():
            if p.ndim == 2:
                w = rng.standard_normal(p.shape, dtype=np.float32) * np.float32(0.02)
                if name.endswith(("attn_output.weight", "ffn_down.weight")):
                    w *= np.float32(resid_scale)
                self.set_parameter(name, w)
            elif name.endswith("norm.weight"):
                p[:] = 1.0
            else:
                p[:] = 0.0

    # -- input checks --------------------------------------------------------

    def _check_tokens(self, tokens, what="tokens", allow_ignore=False):
        if not isinstance(tokens, np.ndarray):
            raise TypeError(f"{what} must be a numpy array of int32, got {type(tokens).__name__}")
        if tokens.dtype.kind not in "iu":
            raise TypeError(f"{what} must be an integer array (int32), got dtype {tokens.dtype}")
        if tokens.ndim != 2:
            raise ValueError(f"{what} must have shape (B, T), got {tokens.shape}"
                             + (" (use tokens[None, :] for a single sequence)" if tokens.ndim == 1 else ""))
        B, T = tokens.shape
        if B == 0 or T == 0:
            raise ValueError(f"{what} is empty: shape {tokens.shape}")
        if T > self.cfg.context_length:
            raise ValueError(f"sequence length T={T} exceeds context_length={self.cfg.context_length}")
        lo = -1 if allow_ignore else 0
        tmin, tmax = int(tokens.min()), int(tokens.max())
        if tmin < lo or tmax >= self.cfg.vocab_size:
            bad = tmin if tmin < lo else tmax
            rng = f"[0, {self.cfg.vocab_size})" + (" or -1 (ignored)" if allow_ignore else "")
            raise ValueError(f"{what} holds id {bad}, outside {rng}")
        return np.ascontiguousarray(tokens, dtype=np.int32)

    def _acts_for(self, B, T, with_grad):
        """Preallocated buffers for (B, T): one training set and one inference set are kept."""
        attr = "_train_acts" if with_grad else "_infer_acts"
        a = getattr(self, attr)
        recompute = self.recompute and with_grad
        if a is None or (a.B, a.T, a.recompute) != (B, T, recompute):
            setattr(self, attr, None)  # free the old set before allocating the new one
            a = Activations(self.cfg, B, T, self.dtype, with_grad, recompute, self.precision)
            setattr(self, attr, a)
        return a

    def free_buffers(self):
        """Drop the activation buffers (they are reallocated on the next call)."""
        self._train_acts = self._infer_acts = None

    # -- forward ---------------------------------------------------------------

    def _layer_forward(self, a: Activations, l: int, B: int, T: int, write_out: bool = True, w=None):
        """Layer l from a.resid[l]: its activations into slot l (slot 0 when one layer's buffers
        are kept), and, with write_out, the layer's output into a.resid[l + 1]. w: the layer's
        weights (_layer_weights(l)) when the caller has them."""
        K, cfg = self.kernels, self.cfg
        N, NH, hs = B * T, cfg.n_head, cfg.head_dim
        s = l if a.per_layer else 0
        bf = a.bf16
        f = 0 if bf else s  # the float32 activations: one layer's scratch with precision bf16
        w = self._layer_weights(l) if w is None else w
        x, ln1, qkv, att = a.resid[l], a.ln1[f], a.qkv[f], a.att[s]
        K.layernorm_forward(ln1, a.ln1_mean[s], a.ln1_rstd[s], x,
                            w["attn_norm.weight"], w["attn_norm.bias"], cfg.norm_eps)
        self._product(a, ln1, a.ln1_b[s] if bf else None, l, "qkv.weight", w, qkv)  # (N, 3C)
        K.bias_forward(qkv, w["qkv.bias"])
        q, k, v = _split_qkv(qkv, B, T, NH, hs)
        K.rope_forward(q, q, a.cos, a.sin)
        K.rope_forward(k, k, a.cos, a.sin)
        if bf:  # attention runs on the bf16 q, k, v that backward will see
            gemm.to_bf16(qkv, a.qkv_b[s])
            K.bf16_to_f32(qkv.reshape(-1), a.qkv_b[s].reshape(-1))
        K.attention_forward(att.reshape(B, T, NH, hs), a.lse[s], q, k, v)
        mid = a.resid_mid[s]
        self._product(a, att, a.att_b[0] if bf else None, l, "attn_output.weight", w, mid)
        K.residual_forward(mid, x, mid, w["attn_output.bias"])
        ln2 = a.ln2[f]
        K.layernorm_forward(ln2, a.ln2_mean[s], a.ln2_rstd[s], mid,
                            w["ffn_norm.weight"], w["ffn_norm.bias"], cfg.norm_eps)
        up, ge = a.up[f], a.gelu[f]
        self._product(a, ln2, a.ln2_b[s] if bf else None, l, "ffn_up.weight", w, up)  # (N, F)
        K.bias_gelu_forward(ge, up, w["ffn_up.bias"])  # up += bias; ge = gelu(up)
        if bf:  # kept for backward (even when the output is not wanted)
            gemm.to_bf16(up, a.up_b[s])
            gemm.to_bf16(ge, a.gelu_b[s])
        if write_out:
            out = a.resid[l + 1]
            self._product(a, None if a.bf16 else ge, a.gelu_b[s] if a.bf16 else None, l,
                          "ffn_down.weight", w, out)
            K.residual_forward(out, mid, out, w["ffn_down.bias"])

    def _bits(self, l: int, sfx: str) -> np.ndarray:
        """Layer l's matrix `sfx` (q | k | v as one "qkv.weight" (3C, C)) as bf16 bits: a view of the
        bf16 store, or, with float32 weights, rounded (nearest even) into one matrix-sized buffer
        (valid until the next call)."""
        if self.weights == "fp32":
            w32 = self._lw[l][sfx]
            out = self._matrix_b16[:w32.size].reshape(w32.shape)
            return gemm.to_bf16(w32, out)
        if sfx == "qkv.weight":
            C = self.cfg.d_model
            return self._store_span(f"blk.{l}.attn_q.weight", 3 * C * C).reshape(3 * C, C)
        return self._p[f"blk.{l}.{sfx}"]

    def _product(self, a: Activations, x, xb, l: int, sfx: str, w, out):
        """out (N, n_out) = x (N, n_in) . W^T. precision bf16: x is rounded into its bf16 buffer xb
        (kept for backward; x None: xb holds it already) and the product takes W's stored bits;
        else a float32 BLAS product with w[sfx]."""
        if a.bf16:
            if x is not None:
                gemm.to_bf16(x, xb)
            gemm.matmul(xb, self._bits(l, sfx).T, out)
        else:
            np.matmul(x, w[sfx].T, out=out)

    def _backprop(self, a: Activations, dy, x, xb, l: int, sfx: str, w, dx, dw):
        """Through out = x . W^T: dx (N, n_in) = dy . W, then dw (n_out, n_in) = dy^T . x (x float32,
        or its saved bf16 form xb with precision bf16, where dy is rounded to bf16 first)."""
        if a.bf16:
            N, n = dy.shape
            dyb = a.dy_b[:N * n].reshape(N, n)
            gemm.to_bf16(dy, dyb)
            gemm.matmul(dyb, self._bits(l, sfx), dx)
            gemm.matmul(dyb.T, xb, dw)
        else:
            np.matmul(dy, w[sfx], out=dx)
            np.matmul(dy.T, x, out=dw)

    def _blocks_forward(self, a: Activations, tokens):
        """Embedding and every layer; leaves the final LayerNorm output in a.lnf."""
        K, cfg, p = self.kernels, self.cfg, self._p
        B, T = tokens.shape
        K.embedding_forward(a.resid[0], tokens.reshape(B * T), p["token_embd.weight"])
        for l in range(cfg.n_layer):
            self._layer_forward(a, l, B, T)
        K.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.resid[cfg.n_layer],
                            p["output_norm.weight"], p["output_norm.bias"], cfg.norm_eps)

    def forward(self, tokens) -> np.ndarray:
        """logits (B, T, V) for int32 tokens (B, T); no gradients kept."""
        tokens = self._check_tokens(tokens)
        B, T = tokens.shape
        t = self._train_acts
        a = t if t is not None and (t.B, t.T) == (B, T) else self._acts_for(B, T, with_grad=False)
        self._blocks_forward(a, tokens)
        logits = np.empty((B * T, self.cfg.vocab_size), dtype=self.dtype)
        np.matmul(a.lnf, self._p["token_embd.weight"].T, out=logits)
        return logits.reshape(B, T, -1)

    # -- incremental inference (KV cache) --------------------------------------

    def new_cache(self) -> "KVCache":
        """An empty key/value cache for one sequence of up to context_length tokens."""
        return KVCache(self.cfg, self.dtype)

    def forward_cached(self, cache: "KVCache", tokens) -> np.ndarray:
        """Append tokens (n,) at the cache's next positions; returns their logits (n, V).

        The same layers as _blocks_forward on the same kernels, one sequence,
        attending over every cached position; attention over the cache is two
        BLAS products and a float32 softmax per head.
        """
        K, cfg, p = self.kernels, self.cfg, self._p
        tokens = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
        n, C, NH, hs = len(tokens), cfg.d_model, cfg.n_head, cfg.head_dim
        p0 = cache.pos
        if p0 + n > cfg.context_length:
            raise ValueError(f"context full: {p0} + {n} tokens > context_length {cfg.context_length}")
        if n == 0:
            return np.zeros((0, cfg.vocab_size), self.dtype)
        dt = self.dtype
        x = np.empty((n, C), dt)  # residual stream (n, C)
        K.embedding_forward(x, tokens, p["token_embd.weight"])
        cos, sin = cache.cos[p0:p0 + n], cache.sin[p0:p0 + n]  # (n, hs/2)
        h, mean, rstd = np.empty((n, C), dt), np.empty(n, dt), np.empty(n, dt)
        qkv, att, mid = np.empty((n, 3 * C), dt), np.empty((n, C), dt), np.empty((n, C), dt)
        up, ge = np.empty((n, cfg.d_ff), dt), np.empty((n, cfg.d_ff), dt)
        S = p0 + n
        # causal mask of the new rows over all cached positions: row i sees keys 0..p0+i
        masked = np.arange(S)[None, :] > (p0 + np.arange(n))[:, None]  # (n, S)
        scale = dt.type(1.0 / np.sqrt(hs))
        for l in range(cfg.n_layer):
            w = self._layer_weights(l)
            K.layernorm_forward(h, mean, rstd, x, w["attn_norm.weight"], w["attn_norm.bias"], cfg.norm_eps)
            np.matmul(h, w["qkv.weight"].T, out=qkv)  # (n, 3C)
            K.bias_forward(qkv, w["qkv.bias"])
            q, k, v = _split_qkv(qkv, 1, n, NH, hs)  # (1, n, NH, hs) views
            K.rope_forward(q, q, cos, sin)
            K.rope_forward(k, k, cos, sin)
            cache.k[l, p0:S] = k[0].reshape(n, C)
            cache.v[l, p0:S] = v[0].reshape(n, C)
            Kc = cache.k[l, :S].reshape(S, NH, hs).transpose(1, 0, 2)  # (NH, S, hs)
            Vc = cache.v[l, :S].reshape(S, NH, hs).transpose(1, 0, 2)
            Q = q[0].transpose(1, 0, 2)  # (NH, n, hs)
            sc = (Q @ Kc.transpose(0, 2, 1)) * scale  # (NH, n, S)
            sc[:, masked] = -np.inf
            sc -= sc.max(axis=-1, keepdims=True)
            e = np.exp(sc)
            att[:] = ((e / e.sum(axis=-1, keepdims=True)) @ Vc).transpose(1, 0, 2).reshape(n, C)
            np.matmul(att, w["attn_output.weight"].T, out=mid)
            K.residual_forward(mid, x, mid, w["attn_output.bias"])  # mid = x + att Wo^T + bo
            K.layernorm_forward(h, mean, rstd, mid, w["ffn_norm.weight"], w["ffn_norm.bias"], cfg.norm_eps)
            np.matmul(h, w["ffn_up.weight"].T, out=up)
            K.bias_gelu_forward(ge, up, w["ffn_up.bias"])
            np.matmul(ge, w["ffn_down.weight"].T, out=x)
            K.residual_forward(x, mid, x, w["ffn_down.bias"])  # x = mid + ge Wd^T + bd
        cache.pos = S
        K.layernorm_forward(h, mean, rstd, x, p["output_norm.weight"], p["output_norm.bias"], cfg.norm_eps)
        return h @ p["token_embd.weight"].T  # (n, V)

    # -- forward + backward ---------------------------------------------------

    def forward_backward(self, tokens, targets, on_grads=None, n_targets: int | None = None) -> float:
        """Mean cross-entropy over targets != -1; writes every gradient into self.grads.

        on_grads(names), if given, is called as each group of grad_groups() is complete (its
        gradients in self._g[name]); a fused_update model needs it, as its gradient buffers
        are reused for the next group. n_targets: the count the loss (and so the gradient) is
        divided by, when the batch is one rank's share of a larger one (default: this batch's)."""
        if self.fused_update and on_grads is None:
            raise ValueError("this model was made with fused_update=True: it keeps no full gradient "
                             "buffer, so forward_backward needs on_grads (AdamW.fused_step passes it)")
        tokens = self._check_tokens(tokens)
        targets = self._check_tokens(targets, "targets", allow_ignore=True)
        if targets.shape != tokens.shape:
            raise ValueError(f"targets shape {targets.shape} != tokens shape {tokens.shape}")
        if n_targets is None:
            n_targets = int(np.count_nonzero(targets >= 0))
            if n_targets == 0:
                raise ValueError("targets are all -1: there is nothing to learn from in this batch")
        elif not (isinstance(n_targets, (int, np.integer)) and n_targets > 0):
            raise ValueError(f"n_targets must be a positive integer, got {n_targets!r}")
        K, cfg, p, g = self.kernels, self.cfg, self._p, self._g
        B, T = tokens.shape
        N, NH, hs = B * T, cfg.n_head, cfg.head_dim
        a = self._acts_for(B, T, with_grad=True)
        self._blocks_forward(a, tokens)

        # LM head + cross-entropy, chunked over rows so (N, V) logits never exist at once
        wte, dwte = p["token_embd.weight"], g["token_embd.weight"]
        tflat = targets.reshape(N)
        R = a.head_rows
        if a.bf16:  # the head's products in bf16 too: the embedding and lnf rounded once
            gemm.to_bf16(wte, a.wte_b)
            gemm.to_bf16(a.lnf, a.lnf_b)
        for r0 in range(0, N, R):
            r1 = min(N, r0 + R)
            lg = a.logits[: r1 - r0]
            if a.bf16:
                xb = a.lnf_b[r0:r1]
                gemm.matmul(xb, a.wte_b.T, lg)  # (R, V)
                K.crossentropy_forward_backward(a.losses[r0:r1], lg, lg, tflat[r0:r1], 1.0 / n_targets)
                lgb = gemm.to_bf16_in_place(lg)  # dlogits (R, V) in bf16, in the first half of lg's bytes
                gemm.matmul(lgb, a.wte_b, a.dln[r0:r1])  # d lnf (R, C)
                gemm.matmul(lgb.T, xb, dwte, accumulate=r0 > 0)  # (V, C)
                continue
            np.matmul(a.lnf[r0:r1], wte.T, out=lg)  # (R, V)
            K.crossentropy_forward_backward(a.losses[r0:r1], lg, lg, tflat[r0:r1], 1.0 / n_targets)
            np.matmul(lg, wte, out=a.dln[r0:r1])  # d lnf (R, C)
            if r0 == 0:
                np.matmul(lg.T, a.lnf[r0:r1], out=dwte)  # (V, C)
            else:
                np.matmul(lg.T, a.lnf[r0:r1], out=a.dwte_chunk)
                K.residual_backward(dwte, a.dwte_chunk)
        loss = float(a.losses.sum(dtype=np.float64)) / n_targets

        K.layernorm_backward(a.dresid, g["output_norm.weight"], g["output_norm.bias"], a.dln,
                             a.resid[cfg.n_layer], p["output_norm.weight"], a.lnf_mean, a.lnf_rstd)
        groups = self.grad_groups()

        def done(i):  # group i of grad_groups() is complete (a fused model updates it now)
            if on_grads is not None:
                on_grads(groups[i])

        done(0)
        for l in reversed(range(cfg.n_layer)):
            pre, first = f"blk.{l}.", 1 + 6 * (cfg.n_layer - 1 - l)  # first: this layer's first group
            gf = self._gf[l]
            w = self._layer_weights(l)
            if a.recompute:  # this layer's activations again, from its saved input
                self._layer_forward(a, l, B, T, write_out=False, w=w)
            s = l if a.per_layer else 0
            # FFN: resid[l+1] = mid + gelu Wd^T + bd ; a.dresid holds d resid[l+1]
            bf = a.bf16
            self._backprop(a, a.dresid, None if bf else a.gelu[s], a.gelu_b[s] if bf else None, l,
                           "ffn_down.weight", w, a.dff, g[pre + "ffn_down.weight"])  # (N, F), (C, F)
            K.bias_backward(g[pre + "ffn_down.bias"], a.dresid)
            done(first)
            if bf:  # this layer's saved bf16 activations back to float32 for its kernels
                K.bf16_to_f32(a.up[0].reshape(-1), a.up_b[s].reshape(-1))
                K.bf16_to_f32(a.qkv[0].reshape(-1), a.qkv_b[s].reshape(-1))
            f = 0 if bf else s
            K.gelu_bias_backward(a.dup, g[pre + "ffn_up.bias"], a.dff, a.up[f])
            self._backprop(a, a.dup, None if bf else a.ln2[s], a.ln2_b[s] if bf else None, l,
                           "ffn_up.weight", w, a.dln, g[pre + "ffn_up.weight"])  # (N, C), (F, C)
            done(first + 1)
            K.layernorm_backward_add(a.dresid, g[pre + "ffn_norm.weight"], g[pre + "ffn_norm.bias"],
                                     a.dln, a.resid_mid[s], w["ffn_norm.weight"],
                                     a.ln2_mean[s], a.ln2_rstd[s])  # now d resid_mid
            done(first + 2)
            # attention: mid = resid[l] + att Wo^T + bo
            if bf:
                gemm.to_bf16(a.att[s], a.att_b[0])  # this layer's attention output in bf16 again
            self._backprop(a, a.dresid, None if bf else a.att[s], a.att_b[0] if bf else None, l,
                           "attn_output.weight", w, a.datt, g[pre + "attn_output.weight"])  # (N, C), (C, C)
            K.bias_backward(g[pre + "attn_output.bias"], a.dresid)
            done(first + 3)
            q, k, v = _split_qkv(a.qkv[f], B, T, NH, hs)
            dq, dk, dv = _split_qkv(a.dqkv, B, T, NH, hs)
            K.attention_backward(dq, dk, dv, a.datt.reshape(B, T, NH, hs), q, k, v,
                                 a.att[s].reshape(B, T, NH, hs), a.lse[s])
            K.rope_backward(dq, dq, a.cos, a.sin)
            K.rope_backward(dk, dk, a.cos, a.sin)
            self._backprop(a, a.dqkv, None if bf else a.ln1[s], a.ln1_b[s] if bf else None, l,
                           "qkv.weight", w, a.dln, gf["qkv.weight"])  # (N, C), (3C, C)
            K.bias_backward(gf["qkv.bias"], a.dqkv)
            done(first + 4)
            K.layernorm_backward_add(a.dresid, g[pre + "attn_norm.weight"], g[pre + "attn_norm.bias"],
                                     a.dln, a.resid[l], w["attn_norm.weight"],
                                     a.ln1_mean[s], a.ln1_rstd[s])  # now d resid[l]
            done(first + 5)
        K.embedding_backward(dwte, a.dresid, tokens.reshape(N))
        done(len(groups) - 1)
        self.grads_valid = not self.fused_update
        return loss

    def activation_bytes(self, B: int, T: int) -> int:
        """Bytes of the training buffers for a (B, T) batch (allocated on first use)."""
        return _act_bytes(self.cfg, B, T, self.dtype, self.recompute, self.precision)


def _act_bytes(cfg, B, T, dtype, recompute=False, precision="fp32"):
    """Bytes of every array of Activations(cfg, B, T, dtype, with_grad=True, recompute, precision)."""
    C, F, L, NH, V = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.n_head, cfg.vocab_size
    N = B * T
    it = np.dtype(dtype).itemsize
    rows = max(1, min(N, HEAD_CHUNK_BYTES // (V * it)))
    Ls = 1 if recompute else L
    if precision == "bf16":  # kept in bf16 but resid_mid and the statistics; one layer's float32 scratch
        per_layer = it * (N * (C + C) + 4 * N + B * NH * T) + 2 * N * (C + 3 * C + C + 2 * F)
        extra = it * N * (C + 3 * C + C + 2 * F) + 2 * (N * C + N * C + V * C + N * max(3 * C, F))
    else:
        per_layer = it * (N * (C + 3 * C + C + C + C + 2 * F) + 4 * N + B * NH * T)
        extra = 0
    saved = it * ((L + 1) * N * C + N * C + 3 * N + rows * V + T * cfg.head_dim) + Ls * per_layer  # + cos, sin
    scratch = it * (N * (3 * C + 3 * C + 2 * F) + (V * C if rows < N else 0))  # dresid dln datt, dqkv, dff dup
    return saved + scratch + extra


def _split_qkv(qkv, B, T, NH, hs):
    """(N, 3C) buffer -> q, k, v strided views (B, T, NH, hs)."""
    x = qkv.reshape(B, T, 3, NH, hs)  # qkv is contiguous: always a view
    return x[:, :, 0], x[:, :, 1], x[:, :, 2]


class _DecodedLayer(Mapping):
    """Model._layer_weights(l) with bf16 weights: vectors are views of the float32 store; a
    matrix is decoded into the model's one matrix buffer when accessed."""

    def __init__(self, model: Model, l: int):
        self._model, self._pre = model, f"blk.{l}."

    def __getitem__(self, sfx: str) -> np.ndarray:
        m, C = self._model, self._model.cfg.d_model
        if sfx == "qkv.bias":
            return m._store_span(self._pre + "attn_q.bias", 3 * C)
        name = self._pre + ("attn_q.weight" if sfx == "qkv.weight" else sfx)
        shape = (3 * C, C) if sfx == "qkv.weight" else m.layout.by_name[name].shape
        if len(shape) == 1:
            return m._p[name]
        n = shape[0] * shape[1]
        out = m._matrix_f32[:n]
        m.kernels.bf16_to_f32(out, m._store_span(name, n))
        return out.reshape(shape)

    def __iter__(self):
        return iter((*BLOCK_TENSOR_NAMES, "qkv.weight", "qkv.bias"))

    def __len__(self) -> int:
        return len(BLOCK_TENSOR_NAMES) + 2


class _Float32Weights(Mapping):
    """Model.parameters_f32(): name -> float32 array, bf16-stored tensors decoded on access."""

    def __init__(self, model: Model):
        self._model = model

    def __getitem__(self, name: str) -> np.ndarray:
        a = self._model._p[name]
        if a.dtype != np.uint16:
            return a
        out = np.empty(a.shape, np.float32)
        self._model.kernels.bf16_to_f32(out.reshape(-1), self._model._flat[name])
        return out

    def __contains__(self, name) -> bool:  # without decoding
        return name in self._model._p

    def __iter__(self):
        return iter(self._model._p)

    def __len__(self) -> int:
        return len(self._model._p)

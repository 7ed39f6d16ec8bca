"""Flat parameter storage: one contiguous buffer, carved into GGUF-named views.

Every tensor is stored in (out_features, in_features) layout, which is also
GGUF's layout, so export is a straight copy. Gradients (and the optimizer's
moments) live in buffers of the same layout, so per-tensor views of any of
them are found by the same offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codette_np.config import ModelConfig

# Per-layer tensors in storage order: (suffix, shape as a function of (C, F)).
# q, k and v weights are adjacent (and so are their biases), so the three
# projections run as one (3C, C) GEMM on a view, forward and backward.
_BLOCK_TENSORS = (
    ("attn_norm.weight", lambda C, F: (C,)),
    ("attn_norm.bias", lambda C, F: (C,)),
    ("attn_q.weight", lambda C, F: (C, C)),
    ("attn_k.weight", lambda C, F: (C, C)),
    ("attn_v.weight", lambda C, F: (C, C)),
    ("attn_q.bias", lambda C, F: (C,)),
    ("attn_k.bias", lambda C, F: (C,)),
    ("attn_v.bias", lambda C, F: (C,)),
    ("attn_output.weight", lambda C, F: (C, C)),
    ("attn_output.bias", lambda C, F: (C,)),
    ("ffn_norm.weight", lambda C, F: (C,)),
    ("ffn_norm.bias", lambda C, F: (C,)),
    ("ffn_up.weight", lambda C, F: (F, C)),
    ("ffn_up.bias", lambda C, F: (F,)),
    ("ffn_down.weight", lambda C, F: (C, F)),
    ("ffn_down.bias", lambda C, F: (C,)),
)
BLOCK_TENSOR_NAMES = tuple(s for s, _ in _BLOCK_TENSORS)


def param_layout(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """[(gguf_name, shape)] in storage order: 3 + 16 * n_layer tensors."""
    C, F, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    out = [("token_embd.weight", (V, C))]
    for i in range(cfg.n_layer):
        out += [(f"blk.{i}.{s}", shp(C, F)) for s, shp in _BLOCK_TENSORS]
    out += [("output_norm.weight", (C,)), ("output_norm.bias", (C,))]
    return out


WEIGHT_FORMATS = ("fp32", "bf16")


def stored_bf16(name: str, shape) -> bool:
    """With bf16 weights, the blocks' matrices are stored as bf16; the embedding (gathered by
    row and the tied LM head's operand) and the 1-D tensors (norms, biases) stay float32."""
    return len(shape) == 2 and name.startswith("blk.")


@dataclass(frozen=True)
class TensorSlot:
    name: str
    shape: tuple[int, ...]
    offset: int  # in elements, into the flat buffer
    size: int


class ParamLayout:
    """Names, shapes and offsets of every tensor in the flat buffer."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.slots: list[TensorSlot] = []
        off = 0
        for name, shape in param_layout(cfg):
            size = int(np.prod(shape))
            self.slots.append(TensorSlot(name, shape, off, size))
            off += size
        self.total = off  # buffer length in elements (no padding: views must stay adjacent)
        self.n_params = sum(s.size for s in self.slots)
        self.by_name = {s.name: s for s in self.slots}

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """name -> shaped view into `flat` (no copies)."""
        assert flat.ndim == 1 and flat.shape[0] == self.total
        return {s.name: flat[s.offset:s.offset + s.size].reshape(s.shape) for s in self.slots}

    def fused(self, flat: np.ndarray, layer: int) -> dict[str, np.ndarray]:
        """Views spanning adjacent tensors of block `layer`: qkv weight (3C, C), qkv bias (3C,)."""
        C = self.cfg.d_model
        w = self.by_name[f"blk.{layer}.attn_q.weight"].offset
        b = self.by_name[f"blk.{layer}.attn_q.bias"].offset
        return {"qkv.weight": flat[w:w + 3 * C * C].reshape(3 * C, C),
                "qkv.bias": flat[b:b + 3 * C]}

    def stores(self, weights: str) -> tuple[dict[str, tuple[str, int]], int, int]:
        """How weights of format `weights` are stored: ({name: (store, offset in it)}, float32
        store length, bf16 store length). With "fp32" every tensor sits in the float32 store at
        its layout offset; with "bf16" the stored_bf16 tensors fill the bf16 store, in order."""
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
        where, n32, n16 = {}, 0, 0
        for s in self.slots:
            if weights == "bf16" and stored_bf16(s.name, s.shape):
                where[s.name] = ("bf16", n16)
                n16 += s.size
            else:
                where[s.name] = ("fp32", n32)
                n32 += s.size
        return where, n32, n16

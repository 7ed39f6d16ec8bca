"""Model configuration: one frozen dataclass and the named presets.

The architecture is llama.cpp's `starcoder2` (see codette_np/model.py); the
fields here are exactly the hyperparameters its GGUF metadata carries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 4096  # V; the tokenizer's size (ids 0..V-1)
    d_model: int = 256  # C, residual width
    n_layer: int = 6  # L
    n_head: int = 4  # NH; head_dim D = d_model // n_head, RoPE spans all of it
    d_ff: int = 0  # F; 0 means 4 * d_model
    context_length: int = 512  # longest sequence the model is trained / run on
    norm_eps: float = 1e-5  # LayerNorm epsilon (biased variance)
    rope_base: float = 10000.0  # RoPE frequency base
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        for f in ("vocab_size", "d_model", "n_layer", "n_head", "d_ff", "context_length"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"ModelConfig.{f} must be a positive int, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for NEOX RoPE")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}")
        if not self.rope_base > 0:
            raise ValueError(f"rope_base must be > 0, got {self.rope_base}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_params(self) -> int:
        """Exact parameter count (tied embedding counted once)."""
        from codette_np.params import param_layout

        return sum(int(_prod(shape)) for _, shape in param_layout(self))

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named preset; keyword overrides replace fields (e.g. vocab_size)."""
        if name not in PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        cfg = dict(PRESETS[name])
        cfg.update(overrides)
        return cls(name=name, **cfg)


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# Label -> nominal size in parameters, for the presets that carry one.
PRESET_LABELS = {
    "small": 1.3e9,
    "medium": 2.7e9,
    "large": 5.3e9,
}

PRESETS = {
    # For tests: ~0.14M params; vocab 512, the smallest power of two above what the
    # tokenizer needs (3 special ids, 5 chat markers, newline, 256 byte pieces).
    "nano": dict(vocab_size=512, d_model=64, n_layer=2, n_head=4, context_length=128),
    # ~1.3M params: `make train`'s model. At a 15-minute budget it learns to copy a request's
    # arguments into its tool calls (3,300 steps), where micro, 4x slower per step, does not
    # get far enough (850 steps): README, "the tool-call recipe".
    "tiny": dict(vocab_size=4096, d_model=128, n_layer=4, n_head=4, context_length=512),
    # Trains in minutes on a laptop: ~5.8M params.
    "micro": dict(vocab_size=4096, d_model=256, n_layer=6, n_head=4, context_length=512),
    # ~34M params (the d512 L8 shape of the performance notes).
    "mini": dict(vocab_size=16384, d_model=512, n_layer=8, n_head=8, context_length=1024),
    # The three promised sizes: vocab 32768, context 2048, 32 heads, d_ff = 4d.
    "small": dict(vocab_size=32768, d_model=2048, n_layer=24, n_head=32, context_length=2048),
    "medium": dict(vocab_size=32768, d_model=2560, n_layer=32, n_head=32, context_length=2048),
    "large": dict(vocab_size=32768, d_model=4096, n_layer=26, n_head=32, context_length=2048),
}

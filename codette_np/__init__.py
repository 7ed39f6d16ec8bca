"""codette_np: a CPU-first engine that trains starcoder2-architecture
transformers from scratch with hand-written kernels and writes GGUF."""

from codette_np import backend
from codette_np.config import PRESETS, ModelConfig
from codette_np.model import Model
from codette_np.optim import AdamW, lr_schedule

__all__ = ["ModelConfig", "PRESETS", "Model", "AdamW", "lr_schedule", "backend"]
__version__ = "0.1.0"

"""codette_np: a CPU-first engine that trains starcoder2-architecture
transformers from scratch with hand-written kernels and writes GGUF."""

import os

# The C kernels' OpenMP threads and numpy's BLAS threads take turns on the same
# cores. OpenMP threads that spin-wait long after each parallel region (libgomp's
# default: 300,000 spins) steal the cores the next GEMM needs (measured: several
# times slower steps); threads that sleep at once (OMP_WAIT_POLICY=passive) pay a
# futex wake-up at every kernel. So they spin briefly, then sleep: 5,000 spins
# (measured, Zen 4, micro B 8 x T 256, three runs: fp32 step 553-621 -> 532-549 ms,
# bf16 step 397-468 -> 353-376 ms against passive), unless the user chose
# (OMP_WAIT_POLICY or GOMP_SPINCOUNT set). Must be set before the C extension
# (and with it the OpenMP runtime) loads.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "5000"
# numpy's OpenBLAS workers spin for 2^28 cycles (about 0.1 s) after each GEMM
# by default, on the cores the kernels between GEMMs then need. 2^16 cycles
# (tens of microseconds) still covers the gap between back-to-back GEMMs
# (measured: micro training step 771 -> 668 ms, median of 5, 2 cores). Takes
# effect only if codette_np is imported before numpy.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

from codette_np import backend  # noqa: E402
from codette_np.config import PRESETS, ModelConfig  # noqa: E402
from codette_np.model import Model  # noqa: E402
from codette_np.optim import AdamW, lr_schedule  # noqa: E402

__all__ = ["ModelConfig", "PRESETS", "Model", "AdamW", "lr_schedule", "backend"]
__version__ = "0.1.0"

"""The memory plan of a training run, printed before anything is allocated.

Two plans:
- "fp32": float32 gradients and AdamW moments (16 bytes per parameter with
  float32 weights) and every layer's activations;
- "lean": AdamW moments as 8-bit blockwise codes (optim.AdamW state "q8",
  about 2.05 bytes per parameter), activations recomputed layer by layer in
  backward (Model(recompute=True): only each layer's input is kept, for
  about a third more compute), and the update fused into backward
  (Model(fused_update=True), AdamW.fused_step): only one matrix's gradients,
  the tied embedding's and one layer's vectors exist at once. About 6 bytes
  per parameter with float32 weights.
Weights "fp32" or "bf16": with bf16 the blocks' matrices are stored in 2
bytes (Model(weights="bf16"): updated in float32 and stored back with
stochastic rounding; the embedding and 1-D tensors stay float32; one matrix
is decoded to float32 at a time, into the buffer its gradient then uses):
about 4 bytes per parameter in the lean plan. bf16 weights cost quality on
small models (README), so "auto" keeps float32 weights when they fit.
"auto" is the fp32 plan when it fits in the available memory, else the lean
one. Activations (model.Model.activation_bytes), evaluation's buffers and a
fixed allowance for the interpreter, the libraries and the tokenized data
come on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from codette_np.checkpoint import READ_CHUNK
from codette_np.distributed import GATHER_CHUNK_BYTES
from codette_np.optim import WEIGHT_CHUNK, state_bytes_per_param
from codette_np.params import ParamLayout

MEMORY_PLANS = ("auto", "fp32", "lean")
WEIGHT_CHOICES = ("auto", "fp32", "bf16")  # "auto": fp32 weights when the plan fits with them, else bf16
STATE_OF_PLAN = {"fp32": "fp32", "lean": "q8"}  # AdamW moment format of each plan
# a data parallel checkpoint: rank 0 receives the moments one gathered chunk at a time, and a
# resuming rank reads them one file chunk at a time
CHECKPOINT_CHUNKS = GATHER_CHUNK_BYTES + READ_CHUNK
RUNTIME_BYTES = 200 * 2**20  # interpreter, libraries, data and tokenizer: 158 MiB measured at micro, before the model


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass(frozen=True)
class Plan:
    name: str  # "fp32" or "lean"
    optimizer_state: str  # optim.AdamW state format
    recompute: bool  # Model(recompute=...): activations recomputed in backward
    fused_update: bool  # Model(fused_update=...): each layer updated as its gradients complete
    weights: str  # Model(weights=...): "fp32" or "bf16"
    n_params: int
    buffers: tuple  # ((what, bytes), ...)

    @property
    def total(self) -> int:
        return sum(b for _, b in self.buffers)

    def describe(self, available: int | None = None) -> str:
        """One line per buffer (bytes per parameter where it scales with them), then the total."""
        lines = [f"memory plan '{self.name}', weights {self.weights}:"]
        for what, b in self.buffers:
            per = f"{b / self.n_params:5.2f} B/param" if what.startswith(("weights", "gradients", "AdamW")) else " " * 13
            lines.append(f"  {what:<48} {per}  {gib(b):>10}")
        lines.append(f"  {'total':<48} {' ' * 13}  {gib(self.total):>10}"
                     + (f" of {gib(available)} available" if available else ""))
        return "\n".join(lines)


def plan_for(cfg, B: int, T: int, memory: str = "auto", available: int | None = None,
             weights: str = "auto", generation: bool = True, ranks: int = 1,
             precision: str = "fp32") -> "Plan":
    """The plan `memory` ("auto", "fp32" or "lean") for a model of `cfg` trained on B x T, with
    weights "fp32", "bf16" or "auto" (fp32 when the plan fits in `available` with them, else bf16);
    generation: whether evaluation generates text (so holds a key/value cache); ranks: the
    number of ranks of a distributed run (the plan is one rank's: its shard of the moments,
    and on rank 0 the gathered moments while a checkpoint is written); precision: the
    products' operands (Model(precision=...)); with fp32 weights, bf16 products round each matrix
    into one matrix-sized buffer first."""
    if memory not in MEMORY_PLANS:
        raise ValueError(f"memory must be one of {MEMORY_PLANS}, not {memory!r}")
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, not {weights!r}")
    if memory == "auto":
        fp32 = plan_for(cfg, B, T, "fp32", weights="fp32" if weights == "auto" else weights,
                        generation=generation, ranks=ranks, precision=precision)
        memory = "fp32" if available is None or fp32.total <= available else "lean"
    if weights == "auto":
        wide = plan_for(cfg, B, T, memory, weights="fp32", generation=generation, ranks=ranks, precision=precision)
        weights = "fp32" if available is None or wide.total <= available else "bf16"
    from codette_np.model import _act_bytes

    layout = ParamLayout(cfg)
    P = layout.n_params
    state = STATE_OF_PLAN[memory]
    opt_all = round(state_bytes_per_param(state, layout) * P)
    opt = -(-opt_all // ranks)
    fmt = {"fp32": "fp32", "bf16": "bf16", "q8": "8-bit blockwise"}[state]
    lean = memory == "lean"  # recompute, fused update, 8-bit moments
    act = _act_bytes(cfg, B, T, "float32", recompute=lean, precision=precision)
    # evaluation: one row of logits per sequence (B, T, V), and, when it generates (the tool-call
    # evaluation), its key/value cache (L, ctx, 2C)
    evaluation = 4 * B * T * cfg.vocab_size
    if generation:
        evaluation += 4 * cfg.n_layer * cfg.context_length * 2 * cfg.d_model
    C, F = cfg.d_model, cfg.d_ff
    largest = max(3 * C * C, C * F)  # elements of the largest product's weight (q | k | v as one)
    if lean:  # the largest matrix's gradients (in the decoded-weight buffer with bf16 weights),
        # one layer's vectors', the embedding's and the final norm's
        edges = sum(s.size for s in layout.slots if not s.name.startswith("blk."))
        vectors = sum(s.size for s in layout.slots if s.name.startswith("blk.0.") and len(s.shape) == 1)
        shared = weights == "bf16"
        grads = 4 * ((0 if shared else largest) + vectors + edges)
        gwhat = "gradients fp32 (embedding, vectors)" if shared else "gradients fp32 (one matrix + embedding)"
    else:
        grads, gwhat = 4 * P, "gradients fp32"
    if weights == "bf16":
        _, n32, n16 = layout.stores("bf16")
        wbufs = (("weights: blocks' matrices bf16, the rest fp32", 2 * n16 + 4 * n32),
                 ("one matrix fp32 (decoded weight, then gradient)", 4 * (largest + WEIGHT_CHUNK)))
    else:
        wbufs = (("weights fp32", 4 * P),
                 *((("one matrix bf16 (rounded for its product)", 2 * largest),) if precision == "bf16" else ()))
    shard = f" (1/{ranks} shard)" if ranks > 1 else ""
    buffers = (*wbufs, (gwhat, grads), (f"AdamW moments {fmt}{shard}", opt),
               *((("checkpoint: the moments streamed, a chunk at a time", CHECKPOINT_CHUNKS),) if ranks > 1 else ()),
               (f"activations{' (recomputed)' if lean else ''}{', bf16 products' if precision == 'bf16' else ''} "
                f"and scratch ({B} x {T})", act),
               ("evaluation (logits, KV cache)", evaluation),
               ("runtime (interpreter, libraries, data)", RUNTIME_BYTES))
    return Plan(memory, state, lean, lean, weights, P, buffers)

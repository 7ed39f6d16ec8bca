"""Train a model end to end on the built-in mixed dataset (and/or your data).

    python -m codette_np.train --size micro
    python -m codette_np.train --size nano --max-steps 200 --out runs/nano
    python -m codette_np.train --out runs/micro --resume        # continue a run with its own settings

What a run does, in order: generate the built-in dataset (or read --data),
split it by example per category, train (or load from cache) a SentencePiece
tokenizer, print the parameter count / memory estimate / tokens per step,
train with a progress bar, evaluate every --eval-every steps and at the end
(validation loss, perplexity and next-token accuracy per category; on
held-out tool requests, per tool: validity, grounded, exact match and
whether the answer uses the tool's result), save checkpoints (last.ckpt
periodically, best.ckpt by validation loss), draw loss.png, and export GGUF
+ an Ollama Modelfile. Ctrl-C / SIGTERM save a checkpoint and exit.

A run directory holds one run: --resume continues it with the settings
saved in its checkpoint, --overwrite starts it again; without either an
existing run is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from codette_np.batches import TRAIN_ON
from codette_np.memory import MEMORY_PLANS, WEIGHT_CHOICES
from codette_np.argtypes import (Parser, int_at_least, nonempty, nonneg_float, nonneg_int, positive_float,
                                 positive_int)

# Per-size defaults: batch size, sequence length, peak learning rate.
SIZE_DEFAULTS = {
    "nano": dict(batch_size=8, seq_len=128, lr=3e-3),
    "tiny": dict(batch_size=8, seq_len=256, lr=3e-3),
    "micro": dict(batch_size=16, seq_len=256, lr=2e-3),
    "mini": dict(batch_size=8, seq_len=512, lr=1e-3),
    "small": dict(batch_size=4, seq_len=1024, lr=3e-4),
    "medium": dict(batch_size=4, seq_len=1024, lr=2.5e-4),
    "large": dict(batch_size=2, seq_len=1024, lr=2e-4),
}
MIN_VOCAB = 266  # 3 special ids, 5 chat markers, the newline and 256 byte pieces, plus one
MAX_BAD_STEPS = 5  # consecutive non-finite steps before the run stops
CKPT_FORMAT = 1


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="python -m codette_np.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="micro", choices=list(SIZE_DEFAULTS),
                    help="model preset (default micro): nano ~0.1M params (tests), tiny ~1.3M (make train), micro ~5.8M, "
                         "mini ~34M, small ~1.3B, medium ~2.7B, large ~5.3B")
    ap.add_argument("--data", nargs="+", metavar="FILE",
                    help=".jsonl (a 'text' field, optional 'category') or .txt files to train on")
    ap.add_argument("--no-builtin", action="store_true",
                    help="with --data: train on your files only (default: mix them with the built-in set)")
    ap.add_argument("--samples", type=nonneg_int, default=5000,
                    help="number of built-in examples to generate (default 5000)")
    ap.add_argument("--mix", type=nonempty, default=None,
                    help="category mix of the built-in set, e.g. 'perspectives=0.3,tools=0.25,"
                         "consciousness=0.25,mixed=0.2' (the default)")
    ap.add_argument("--vocab-size", type=int_at_least(MIN_VOCAB), default=None,
                    help=f"tokenizer vocabulary size, at least {MIN_VOCAB} (default: the preset's, or what "
                         "the training text supports if that is less)")
    ap.add_argument("--train-on", choices=list(TRAIN_ON), default="assistant",
                    help="what a chat example trains on: 'assistant' (default) predicts only the "
                         "assistant's turns (tool calls and answers), reading the system prompt, the "
                         "user's words and tool results as context; 'all' predicts every token. Plain "
                         "text trains on all of it either way")
    ap.add_argument("--packing", choices=["stream", "whole"], default="stream",
                    help="how examples fill the rows of --seq-len tokens: 'stream' (default) concatenates "
                         "them and cuts rows anywhere; 'whole' keeps each example that fits in one row, "
                         "padding the rest of the row (so a tool call is always seen with its request)")
    ap.add_argument("--max-steps", type=positive_int, default=5000, help="optimizer steps to train (default 5000)")
    ap.add_argument("--batch-size", type=positive_int, default=None, help="rows per step (default per size)")
    ap.add_argument("--seq-len", type=positive_int, default=None, help="tokens per row (default per size)")
    ap.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default per size)")
    ap.add_argument("--min-lr", type=nonneg_float, default=None, help="final learning rate of the cosine (default lr/10)")
    ap.add_argument("--warmup-steps", type=nonneg_int, default=100, help="linear warmup steps (default 100)")
    ap.add_argument("--weight-decay", type=nonneg_float, default=0.1,
                    help="decoupled weight decay on matrices only (default 0.1)")
    ap.add_argument("--max-grad-norm", type=nonneg_float, default=1.0,
                    help="clip the global gradient norm to this (default 1.0; 0 = off)")
    ap.add_argument("--eval-every", type=positive_int, default=500, help="evaluate every N steps (default 500)")
    ap.add_argument("--eval-rows", type=positive_int, default=64,
                    help="validation rows of --seq-len tokens per category at each eval (default 64; "
                         "fewer make evaluation of the big presets quicker)")
    ap.add_argument("--eval-tool-samples", type=nonneg_int, default=100,
                    help="held-out tool requests generated from at each eval (default 100)")
    ap.add_argument("--save-every", type=positive_int, default=1000, help="write last.ckpt every N steps (default 1000)")
    ap.add_argument("--out", default=None, help="run directory (default runs/<size>)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.ckpt")
    ap.add_argument("--allow-data-change", action="store_true",
                    help="with --resume: continue although the training data differs from the data "
                         "the checkpoint was trained on (without it, such a resume is refused)")
    ap.add_argument("--overwrite", action="store_true",
                    help="start a new run in an --out that already holds one, replacing its files "
                         "(without it, such an --out is refused)")
    ap.add_argument("--seed", type=nonneg_int, default=0, help="seed for data, init and order (default 0)")
    ap.add_argument("--threads", type=positive_int, default=None,
                    help="threads for the kernels and BLAS (default: all cores; more than the cores "
                         "is capped at the cores)")
    ap.add_argument("--rank-timeout", type=nonneg_float, default=60.0, metavar="SECONDS",
                    help="under mpiexec: end the job, naming the rank, when a rank has not been heard "
                         "from for this long (stopped, hung, or cut off from the others); 0 leaves it "
                         "to MPI (default 60)")
    ap.add_argument("--backend", choices=["c", "numba", "numpy"], default=None,
                    help="kernel backend (default: CODETTE_BACKEND or the best available)")
    ap.add_argument("--export-dtype", default="f16", choices=["none", "f32", "f16", "bf16", "q8_0", "q4_0"],
                    help="GGUF written at the end of the run (default f16; 'none' skips export)")
    ap.add_argument("--memory", choices=list(MEMORY_PLANS), default="auto",
                    help="memory plan: 'fp32' keeps gradients and both AdamW moments in fp32 (16 "
                         "bytes per parameter with fp32 weights) and every layer's activations; 'lean' "
                         "stores the moments as 8-bit blockwise codes, updates each weight as soon as "
                         "its gradient is complete (so one matrix's gradients exist at a time; --clip "
                         "says how it clips) and recomputes activations in backward (about 6 "
                         "bytes per parameter with fp32 weights, 4 with --weights bf16; a third more "
                         "compute, and with --clip exact a second pass); 'auto' (default) is fp32 "
                         "when it fits in the available memory, else lean. A resumed run keeps its plan. The plan is printed before anything is "
                         "allocated")
    ap.add_argument("--clip", choices=["exact", "previous"], default="exact",
                    help="how the lean plan clips the gradient norm, as its updates run during backward, "
                         "before the step's norm is known: 'exact' (default) measures the norm in a "
                         "first forward and backward pass (twice the compute), 'previous' scales by the "
                         "previous step's norm in one pass (faster; on micro and mini it trains to a "
                         "several percent higher loss, README). The fp32 plan always clips exactly")
    ap.add_argument("--weights", choices=list(WEIGHT_CHOICES), default="auto",
                    help="storage of the blocks' matrices: 'fp32', or 'bf16' (2 bytes per parameter, "
                         "updated in fp32 and stored back with stochastic rounding; costs some quality "
                         "on small models); 'auto' (default) is fp32 when the plan fits with it, else "
                         "bf16. A resumed run keeps its weights")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="the matrix products' operands: 'fp32' (default), or 'bf16' (weights and "
                         "products' inputs rounded to bf16, float32 accumulation, through the engine's "
                         "bf16 GEMM; norms, softmax, the loss, the residual stream and the optimizer stay "
                         "fp32). With fp32 weights these stay the master copy and each matrix is rounded "
                         "for its product, as mixed-precision training does; with --weights bf16 the "
                         "stored bits are multiplied directly. A resumed run keeps it")
    ap.add_argument("--ignore-memory-check", action="store_true",
                    help="train even if the memory estimate exceeds the available RAM")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _set_threads_and_reexec(args, argv):
    """Thread counts must be in the environment before numpy / OpenMP load: re-exec once."""
    if args.threads is None:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    asked, args.threads = args.threads, min(args.threads, cores)
    want = str(args.threads)
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    if all(os.environ.get(k) == want for k in keys):
        return
    if asked > cores:
        print(f"warning: --threads {asked} is more than the {cores} cores this process may use; "
              f"using {cores}", file=sys.stderr)
    env = dict(os.environ, **{k: want for k in keys})
    os.execve(sys.executable, [sys.executable, "-m", "codette_np.train", *argv], env)


# (limit, usage) of a container's memory: cgroup v2, then v1
CGROUP_MEMORY_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _read_int(path) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int | None:
    """What this process may still allocate: MemAvailable, lowered by a container's
    memory limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes) minus its usage."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_file, usage_file in CGROUP_MEMORY_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 1 << 60:  # "max" or a huge number means no limit
            room = max(0, limit - (usage or 0))
            avail = room if avail is None else min(avail, room)
            break
    return avail


def _gib(n):
    return f"{n / 2**30:.2f} GiB"


class Log:
    """train.log (human) and metrics.jsonl (one record per step and per eval).

    Nothing in the run directory is touched until `open()`, which the run
    calls once its inputs have passed every check: until then messages are
    printed and kept, and written to train.log when it opens."""

    def __init__(self, out: Path, resume_step: int | None, enabled: bool = True):
        self.out, self.resume_step = out, resume_step
        self.enabled = enabled  # False on the ranks of a distributed run other than rank 0
        self.metrics = self.text = None
        self.pending: list[str] = []

    def open(self):
        if not self.enabled:
            return
        mpath, resume = self.out / "metrics.jsonl", self.resume_step
        if resume is not None and mpath.exists():
            # drop records past the checkpoint (they are replayed identically) and lines that
            # a killed writer tore: the checkpoint, not the log, is the run's state
            keep, torn = [], 0
            for line in mpath.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    torn += 1
                    continue
                if isinstance(rec, dict) and rec.get("step", 0) <= resume:
                    keep.append(line)
                elif rec is not None and not isinstance(rec, dict):
                    torn += 1
            if torn:
                self.say(f"metrics.jsonl: dropped {torn} unreadable line(s) (a write cut short); "
                         f"the records up to step {resume} are kept")
            mpath.write_text("".join(k + "\n" for k in keep))
        self.metrics = open(mpath, "a" if resume is not None else "w")
        self.text = open(self.out / "train.log", "a" if resume is not None else "w")
        for line in self.pending:
            self.text.write(line)
        self.text.flush()
        self.pending = []

    def record(self, rec: dict):
        if not self.enabled:
            return
        self.metrics.write(json.dumps(rec) + "\n")
        self.metrics.flush()

    def say(self, msg: str, echo=True):
        if not self.enabled:
            return
        line = time.strftime("%H:%M:%S ") + msg + "\n"
        if self.text is None:
            self.pending.append(line)
        else:
            self.text.write(line)
            self.text.flush()
        if echo:
            from tqdm import tqdm
            tqdm.write(msg)
            sys.stdout.flush()  # on screen before a long allocation (or an out-of-memory kill)


# the flags a --resume may give again (everything else comes from the checkpoint)
# what a run did before these flags existed (its checkpoint does not name them)
BEFORE_THE_FLAG = {"train_on": "all", "packing": "stream", "memory": "fp32", "weights": "fp32", "clip": "previous",
                   "precision": "fp32"}
RESUMABLE = ("max_steps", "eval_every", "eval_rows", "eval_tool_samples", "save_every", "threads", "quiet",
             "ignore_memory_check", "export_dtype", "allow_data_change")


def given_flags(ap, argv) -> dict:
    """The options `argv` names explicitly (dest -> value), defaults left out."""
    import copy

    quiet = copy.deepcopy(ap)
    for a in quiet._actions:
        a.default = argparse.SUPPRESS
    return vars(quiet.parse_args(argv))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.no_builtin and not args.data:
        ap.error("--no-builtin needs --data (the files to train on instead of the built-in set)")
    if args.resume and args.overwrite:
        ap.error("--resume continues a run and --overwrite starts a new one: give one of them")
    _set_threads_and_reexec(args, argv)
    from codette_np.backend import BackendUnavailable
    from codette_np.checkpoint import CheckpointError
    from codette_np.data import DataError
    from codette_np.tokenizer import TokenizerError

    from codette_np.distributed import World

    try:
        world = World.from_environment()  # one rank unless started by mpiexec
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    world.start_watchdog(args.rank_timeout)  # a silent rank ends the job, never a hang
    where = f"rank {world.rank} of {world.size}: " if world.size > 1 else ""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(args, given_flags(ap, argv), world)
    except (DataError, CheckpointError, TokenizerError, UserError, BackendUnavailable) as e:
        if getattr(e, "on_every_rank", False):  # every rank stopped here together: rank 0 says why
            if world.is_root:
                print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"error: {where}{e}", file=sys.stderr)
        world.abort(2)  # the other ranks would wait for this one forever: end the job
        return 2
    except KeyboardInterrupt:  # before the loop's own handler is installed
        print(f"error: {where}interrupted during start-up, before the first step; no checkpoint was "
              f"written", file=sys.stderr)
        world.abort(130)
        return 130
    except BaseException as e:
        if world.size > 1:  # a crash on one rank ends the job with its message, never a hang
            import traceback

            traceback.print_exc()
            print(f"error: {where}{type(e).__name__}: {e}; ending the job", file=sys.stderr)
            world.abort(1)
        raise
    finally:  # the loop's Ctrl-C / SIGTERM handlers end with the run
        world.stop_watchdog()
        for sig, h in handlers.items():
            signal.signal(sig, h)


class UserError(RuntimeError):
    """A one-line error for the user. on_every_rank: raised by every rank of a distributed run
    at the same point (from global values), so the job ends without MPI_Abort."""

    def __init__(self, message: str, on_every_rank: bool = False):
        super().__init__(message)
        self.on_every_rank = on_every_rank


_HELD_LOCKS = []  # run-directory locks this process holds


def _lock(out: Path):
    """Hold <out>/.lock for the whole run; a second run on the same directory is refused."""
    import fcntl

    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip() or "unknown"
        f.close()
        raise UserError(f"another training (PID {pid}) is using {out}; wait for it, stop it, "
                        f"or give another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _resume_args(args, given: dict, header: dict, path: Path):
    """The saved run's settings, with the flags that may change taken from this command."""
    saved = {**BEFORE_THE_FLAG, **(header.get("args") or {})}  # a checkpoint older than a flag ran without it
    for k, v in given.items():
        if k in RESUMABLE or k in ("resume", "out"):
            continue
        if k in saved and saved[k] != v:
            flag = "--" + k.replace("_", "-")
            raise UserError(f"--resume continues the run in {path.parent} with its own settings: {flag} "
                            f"was {saved[k]!r} there, not {v!r}; leave it out (only "
                            f"{', '.join('--' + r.replace('_', '-') for r in RESUMABLE)} may change)")
    # the saved settings, except the changeable ones this command names
    merged = {**vars(args), **{k: v for k, v in saved.items() if k not in RESUMABLE or k not in given}}
    merged.update(resume=True, out=args.out, overwrite=False)
    return argparse.Namespace(**merged)


def data_digest(examples) -> str:
    """sha256 over the examples (category and text, in order): what the run trains on."""
    import hashlib

    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e["category"], e["text"]]).encode())
    return h.hexdigest()


def resume_command(out: Path) -> str:
    return f"python -m codette_np.train --out {shlex.quote(str(out))} --resume"


def run(args, given: dict | None = None, world=None) -> int:
    import tempfile

    import numpy as np
    from tqdm import tqdm

    from codette_np import AdamW, Model, ModelConfig, backend, lr_schedule
    from codette_np.kernels.ref import Q8_CODE
    from codette_np import checkpoint as ck
    from codette_np import data as D
    from codette_np import memory as M
    from codette_np import evaluate as E
    from codette_np import distributed as dist
    from codette_np.batches import batch_at, encode_example, pack_masks, pack_rows, pack_whole
    from codette_np.tokenizer import Tokenizer, VocabTooLarge, train_or_load

    try:
        backend.check_environment()
    except ValueError as e:
        raise UserError(str(e)) from None
    world = world or dist.World()
    root = world.is_root  # rank 0 writes the run directory, logs, evaluates and exports
    out = Path(args.out or f"runs/{args.size}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; give a directory for the run")
    state = None
    if args.resume:
        path = out / "last.ckpt"
        if not path.is_file():
            raise UserError(f"nothing to resume: {path} does not exist (start the run without --resume)")
        header = ck.read_header(path)  # the settings and sizes; the arrays are read after the memory check
        if header.get("format") != CKPT_FORMAT:
            raise UserError(f"{path}: unsupported checkpoint format {header.get('format')}")
        args = _resume_args(args, given or {}, header, path)
        state = {"header": header, "path": path, "step": header["step"]}
    elif not args.overwrite:
        held = [n for n in ("last.ckpt", "best.ckpt") if (out / n).is_file()]
        if held:
            raise UserError(f"{out} already holds a run ({' and '.join(held)}); continue it with "
                            f"{resume_command(out)}, start again there with --overwrite (its files are "
                            f"replaced), or give another --out")
    if root:
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as e:
            raise UserError(f"cannot write in the run directory {out}: {e.strerror or e}") from None
        _HELD_LOCKS.append(_lock(out))  # held until the process ends
        for p in ck.remove_stale_temporaries(out):
            print(f"removed {p}, a temporary left by a save that was killed", file=sys.stderr)
    d = SIZE_DEFAULTS[args.size]
    B = args.batch_size or d["batch_size"]
    T = args.seq_len or d["seq_len"]
    max_lr = args.lr or d["lr"]
    min_lr = args.min_lr if args.min_lr is not None else max_lr / 10
    log = Log(out, state["step"] if state else None, enabled=root)
    rank_rows = slice(None)  # the rows of every batch this process trains on
    if world.size > 1:
        try:
            rank_rows = dist.rows_of_rank(B, world.rank, world.size)
        except ValueError as e:
            raise UserError(str(e)) from None

    # 1) size and memory, before generating or allocating anything
    preset = ModelConfig.preset(args.size)
    if state is not None:
        planned = ModelConfig.from_dict(state["header"]["config"])
    else:
        planned = preset.replace(vocab_size=args.vocab_size or preset.vocab_size,
                                 context_length=max(preset.context_length, T))
    avail = available_memory_bytes()
    if state is not None:  # the checkpoint's plan: its weights and optimizer state are stored so
        memory = state["header"].get("memory_plan", "fp32")
        weights = state["header"].get("weights", "fp32")
    else:
        memory, weights = args.memory, args.weights
    if args.precision == "bf16":  # a CODETTE_GEMM this machine cannot run: one line, before anything
        from codette_np import gemm

        try:
            log.say(f"bf16 GEMM path: {gemm.path()}")
        except gemm.GemmUnavailable as e:
            raise UserError(str(e)) from None
    plan = M.plan_for(planned, B, T, memory, avail, weights, generation=args.eval_tool_samples > 0,
                      ranks=world.size, precision=args.precision)
    log.say(f"model: {args.size}, {planned.n_params:,} parameters (d={planned.d_model}, "
            f"L={planned.n_layer}, H={planned.n_head}, V={planned.vocab_size}); {B} x {T} = "
            f"{B * T:,} tokens/step")
    log.say(plan.describe(avail))
    here = dist.local_ranks() if world.size > 1 else 1  # ranks sharing this machine's memory
    if here > 1:
        log.say(f"{here} ranks on this machine: {_gib(here * plan.total)} in all")
    if avail is not None and here * plan.total > avail and not args.ignore_memory_check:
        lean = "" if plan.name == "lean" or world.size > 1 else "use --memory lean, "
        raise UserError(f"this run needs about {_gib(here * plan.total)} but {_gib(avail)} is available; {lean}lower "
                        f"--batch-size or --seq-len, pick a smaller --size, or pass "
                        f"--ignore-memory-check to try anyway")

    # 2) data
    t0 = time.time()
    examples = D.run_examples(args.samples, args.seed, args.mix, args.data, args.no_builtin)
    if not examples:
        raise UserError("no training examples: --samples is 0 and no --data was given")
    digest = data_digest(examples)
    if state is not None and state["header"].get("data_sha256") not in (None, digest):
        if not args.allow_data_change:
            raise UserError(f"the training data changed since {state['path']} was saved (now "
                            f"{len(examples)} examples); resume on the data it was trained on, or pass "
                            f"--allow-data-change to continue on the new data")
        log.say("the training data changed since the checkpoint: continuing on the new data "
                "(--allow-data-change)")
    train_ex, val_ex = D.split_by_example(examples, val_fraction=0.05, seed=args.seed)
    cats = sorted({e["category"] for e in examples})
    log.say(f"data: {len(train_ex)} training / {len(val_ex)} validation examples in "
            f"{len(cats)} categories ({', '.join(cats)}), {time.time() - t0:.1f}s")

    # 3) tokenizer (cached by corpus hash and settings; restored from the checkpoint on resume)
    if state is not None:
        tok = Tokenizer.from_proto(ck.read_blob(state["path"], "tokenizer").tobytes())
    elif not root:  # rank 0 trains (or loads) it and sends it
        tok = Tokenizer.from_proto(world.bcast(None))
    else:
        corpus = [e["text"] for e in train_ex]
        try:
            tok = train_or_load(corpus, planned.vocab_size, out / "tokenizer")
        except VocabTooLarge as e:
            if args.vocab_size is not None:
                raise  # the user asked for this size: say what the corpus supports
            # the preset's vocabulary is more than this corpus can fill: the model keeps it (so its
            # size stays the preset's) and the ids the text cannot fill are reserved, unused
            log.say(f"tokenizer: the training text supports at most {e.supported} pieces, fewer than "
                    f"the {args.size} preset's {planned.vocab_size}; ids {e.supported}.."
                    f"{planned.vocab_size - 1} are reserved and unused (add text with --data to fill them)")
            tok = train_or_load(corpus, e.supported, out / "tokenizer").with_reserved(planned.vocab_size)
        if world.size > 1:
            world.bcast(tok.model_proto)
    log.say(f"tokenizer: SentencePiece BPE, {tok.vocab_size} pieces"
            + (f" ({tok.vocab_size - tok.n_used} reserved)" if tok.n_used < tok.vocab_size else ""))

    cfg = planned.replace(vocab_size=tok.vocab_size)
    encoded = [encode_example(tok, e, args.train_on) for e in train_ex]
    if args.packing == "whole":
        rows, trained = pack_whole([ids for ids, _ in encoded], [m for _, m in encoded], tok.bos_id,
                                   tok.eos_id, T, args.seed)  # (R, T+1), (R, T+1) bool
    else:
        rows = pack_rows([ids for ids, _ in encoded], tok.bos_id, tok.eos_id, T, args.seed)  # (R, T+1)
        trained = pack_masks([m for _, m in encoded], T, args.seed)  # (R, T+1) bool
    del encoded
    if len(rows) < B:
        raise UserError(f"only {len(rows)} rows of {T + 1} tokens in the training data; "
                        f"lower --batch-size or --seq-len, or add data")

    log.open()  # every input check has passed: from here on the run writes its files
    model = Model(cfg, seed=args.seed, backend=args.backend, recompute=plan.recompute,
                  fused_update=plan.fused_update, weights=plan.weights, precision=args.precision)
    bounds = dist.shard_bounds(model.layout, world.size)  # rank r keeps the moments of [b[r], b[r+1])
    opt = AdamW(model, lr=max_lr, weight_decay=args.weight_decay, state=plan.optimizer_state, seed=args.seed,
                shard=(bounds[world.rank], bounds[world.rank + 1]))
    reducer = None
    if world.size > 1 and not plan.fused_update:  # each rank gets its shard's summed gradients
        reducer = dist.GradReducer(world, model, bounds)
        opt.sum_over_ranks = world.sum  # the norm: the shards' sums of squares, summed
    step, tokens_seen, best_val = 0, 0, math.inf
    if state is not None and world.size == 1:  # streamed straight into the model's and the optimizer's buffers
        ck.load_checkpoint(state["path"], into={**ck.model_blobs(model), **opt.state_arrays()})
    elif state is not None:  # each rank reads the whole file, keeping only its shard of the moments
        parts = {name: (world.part_range(a.size)[0], a) for name, a in opt.state_arrays().items()}
        ck.load_checkpoint(state["path"], into=ck.model_blobs(model), parts=parts)
    if state is not None:
        code = state["header"].get("q8_code", 1)
        if opt.state_format == "q8" and code != Q8_CODE:
            log.say(f"the checkpoint's 8-bit moments are of code version {code}: each m code is "
                    f"mapped to its nearest in version {Q8_CODE}")
        opt.upgrade_q8_codes(code)  # moments saved before the current code
        opt.t = state["header"]["opt_t"]
        opt.last_grad_norm = state["header"].get("last_grad_norm")
        step = state["header"]["step"]
        tokens_seen = state["header"]["tokens_seen"]
        best_val = state["header"]["best_val"] if state["header"]["best_val"] is not None else math.inf
        log.say(f"resumed from {out / 'last.ckpt'} at step {step}")
    log.say(f"backend: {model.backend_name}; threads: {os.environ.get('OMP_NUM_THREADS', 'all')}")
    if world.size > 1:
        import socket

        where = world.allgather(f"{os.getpid()} on {socket.gethostname()}")
        log.say(f"{world.size} ranks, {B // world.size} of every {B} rows each, the AdamW moments sharded; "
                + ", ".join(f"rank {r}: pid {w}" for r, w in enumerate(where)))
    evaluator = E.Evaluator(model, tok, val_ex, T, batch_size=B, train_on=args.train_on, packing=args.packing,
                            tool_samples=args.eval_tool_samples, max_rows_per_category=args.eval_rows)
    evaluator.stop = lambda: stop["sig"] is not None

    def save(path, kind):
        """Write a checkpoint (every rank calls it: rank 0 gathers the moments' shards and writes)."""
        if world.size > 1:  # the moments' shards streamed to rank 0 while it writes, a chunk at a time
            finite = world.sum(float(all(np.isfinite(a).all() for a in opt.state_arrays().values()
                                         if a.dtype.kind == "f"))) == world.size
            if not finite:  # (every rank knows before any gather starts)
                if root:
                    log.say(f"checkpoint not written: the optimizer state holds non-finite values")
                return False
            gathered = dist.GatheredParts(world, opt.state_arrays())
            if not root:
                gathered.serve()
                return world.bcast(None)
            try:
                ok = _write(path, kind, gathered.blobs())
            finally:
                gathered.drain()  # the gathers the other ranks still wait in
            return world.bcast(ok)
        return _write(path, kind, opt.state_arrays())

    def _write(path, kind, moments):
        header = {"format": CKPT_FORMAT, "kind": kind, "step": step, "tokens_seen": tokens_seen,
                  "best_val": best_val if math.isfinite(best_val) else None,
                  "opt_t": opt.t, "last_grad_norm": opt.last_grad_norm, "config": cfg.to_dict(), "shape": [B, T], "size": args.size,
                  "args": {k: v for k, v in vars(args).items()},
                  "data_position": {"rows_consumed": step * B, "rows_per_epoch": len(rows)},
                  # the only randomness after init is the data order, a pure function of
                  # (seed, epoch): batches.batch_at; so the seed is the whole RNG state
                  "rng": {"seed": args.seed, "data_order": "default_rng([seed, epoch]).permutation"},
                  "data_sha256": digest, "backend": model.backend_name,
                  "memory_plan": plan.name, "optimizer_state": opt.state_format, "q8_code": Q8_CODE, "weights": model.weights,
                  "precision": model.precision}
        blobs = {**ck.model_blobs(model), **moments, "tokenizer": np.frombuffer(tok.model_proto, dtype=np.uint8)}
        try:
            ck.save_checkpoint(path, header, blobs)
        except ValueError as e:
            log.say(f"checkpoint not written: {e}")
            return False
        except OSError as e:
            import errno

            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            good = [f"{p} (step {ck.read_header(p)['step']})" for p in (out / "last.ckpt", out / "best.ckpt")
                    if p.is_file()]
            raise UserError(f"cannot write {path}: {why}; "
                            + (f"{' and '.join(good)} still good" if good else "no checkpoint of this run "
                               "was written yet")) from None
        return True

    stop = {"sig": None}

    def on_signal(signum, frame):
        stop["sig"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def do_eval():
        """Rank 0 evaluates (the other ranks wait, asleep); every rank learns the result."""
        nonlocal best_val
        res = None
        if root:
            t_e = time.time()
            try:
                res = evaluator.run()
            except E.EvaluationStopped:  # a signal: the caller saves and stops
                res = None
            if res is not None:
                log.record({"step": step, "kind": "eval", **res, "seconds": round(time.time() - t_e, 2)})
                log.say(E.format_report(res, step))
        if world.size > 1:
            world.wait_for_all()
            res = world.bcast(res)
        if res is None:
            return None
        if res["overall"]["loss"] < best_val:
            best_val = res["overall"]["loss"]
            save(out / "best.ckpt", "best")
        return res

    # 4) the loop (5: export after it)
    bad = 0
    bar = tqdm(total=args.max_steps, initial=step, disable=args.quiet or not root, unit="step",
               dynamic_ncols=True, desc="train")
    t_last = time.perf_counter()
    last_eval = None
    while step < args.max_steps:
        x, y = batch_at(rows, step, B, args.seed, trained)
        lr = lr_schedule(step, max_lr, min_lr, args.warmup_steps, args.max_steps)
        loss = norm = float("nan")
        if not (y >= 0).any():  # context only (one long prompt, say): nothing to learn from
            log.say(f"step {step}: no trained token in this batch; step skipped", echo=False)
        elif plan.fused_update:  # each group updated (its shard) as soon as its gradients are complete
            loss, norm = opt.fused_step(x[rank_rows], y[rank_rows], lr=lr, max_grad_norm=args.max_grad_norm or None,
                                        clip=args.clip, n_targets=int(np.count_nonzero(y >= 0)),
                                        reduce=world.allreduce_sum if world.size > 1 else None)
            loss = world.sum(loss)  # (one process: these two do nothing)
            world.allgather_model(model, bounds)  # (the groups updated before a non-finite one, too)
        elif world.size > 1:  # this rank's rows; gradients summed over the ranks while backward runs
            loss = model.forward_backward(x[rank_rows], y[rank_rows], on_grads=reducer.on_grads,
                                          n_targets=int(np.count_nonzero(y >= 0)))
            reducer.finish()
            loss = world.sum(loss)  # each rank's share of the global mean
            if math.isfinite(loss):
                try:
                    norm = opt.step(lr=lr, max_grad_norm=args.max_grad_norm or None)  # this rank's shard
                except FloatingPointError:
                    pass
                else:
                    world.allgather_model(model, bounds)  # every store: float32 and bf16 bits
        else:
            loss = model.forward_backward(x, y)
            if math.isfinite(loss):
                try:
                    norm = opt.step(lr=lr, max_grad_norm=args.max_grad_norm or None)
                except FloatingPointError:
                    pass
        if (y >= 0).any() and not (math.isfinite(loss) and math.isfinite(norm)):
            # (loss and norm are global: every rank of a distributed run counts the same)
            bad += 1
            log.say(f"step {step}: non-finite loss {loss} / grad norm {norm}; update skipped "
                    f"({bad} in a row)")
            if bad >= MAX_BAD_STEPS:
                bar.close()
                best = out / "best.ckpt"
                raise UserError(f"{bad} non-finite steps in a row at step {step}: training diverged. "
                                f"Lower --lr (now {max_lr}) or --max-grad-norm"
                                + (f"; {best} holds the best weights so far" if best.is_file() else ""),
                                on_every_rank=True)
        elif (y >= 0).any():
            bad = 0
        step += 1
        tokens_seen += B * T
        now = time.perf_counter()
        tps = B * T / max(now - t_last, 1e-9)
        t_last = now
        log.record({"step": step, "loss": loss, "lr": lr, "grad_norm": norm, "tokens_per_s": round(tps, 1)})
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}", refresh=False)
        bar.update(1)
        if step % args.eval_every == 0 and step < args.max_steps:
            last_eval = do_eval()
        if step % args.save_every == 0:
            save(out / "last.ckpt", "periodic")
        if world.size > 1:  # a signal to any rank stops every rank at this step
            stop["sig"] = world.first(stop["sig"])
        if stop["sig"] is not None:
            bar.close()
            save(out / "last.ckpt", "interrupted")
            log.say(f"stopped by signal {stop['sig']} at step {step}; saved {out / 'last.ckpt'}; "
                    f"continue with: {resume_command(out)}")
            for s, h in old.items():
                signal.signal(s, h)
            return 128 + stop["sig"]
    bar.close()
    save(out / "last.ckpt", "final")
    last_eval = do_eval()
    for s, h in old.items():
        signal.signal(s, h)
    if stop["sig"] is not None:  # during the final evaluation: the run is saved, not exported
        log.say(f"stopped by signal {stop['sig']} during the final evaluation; {out / 'last.ckpt'} "
                f"(step {step}) is saved; no GGUF was written (python -m codette_np.export "
                f"--checkpoint {out} writes it)")
        return 128 + stop["sig"]

    # 5) the loss plot and the export (rank 0; the other ranks wait for it asleep)
    if not root:
        world.wait_for_all()
        return 0
    from codette_np import plot

    try:
        log.say(f"loss plot: {plot.plot_run(out)}")
    except plot.PlotError as e:
        log.say(f"loss plot not drawn: {e}; then: python -m codette_np.plot {shlex.quote(str(out))}")
    if args.export_dtype != "none":
        # the run is saved: the training buffers and the optimizer's state make room for the export's
        model.free_buffers()
        del opt
        _export(model, tok, cfg, out, args.export_dtype, step, tokens_seen, last_eval, log, args.size)
    world.wait_for_all()
    return 0


def _export(model, tok, cfg, out, dtype, step, tokens_seen, last_eval, log, size):
    from codette_np import gguf_io

    gguf = out / f"codette-{size}-{dtype}.gguf"
    prov = {"steps": step, "tokens_seen": tokens_seen, "val_loss": last_eval["overall"]["loss"]}
    gguf_io.write_gguf(gguf, cfg, model.parameters_f32(), tok, dtype=dtype, provenance=prov,
                       name=f"codette-{size}")
    mf = out / "Modelfile"
    gguf_io.write_modelfile(mf, gguf.name, cfg)
    log.say(f"exported {gguf} ({gguf.stat().st_size / 2**20:.1f} MiB) and {mf}\n"
            f"next:\n"
            f"  python -m codette_np.generate --checkpoint {out} --prompt 'Who are you?'\n"
            f"  python -c \"from llama_cpp import Llama; print(Llama('{gguf}')('Hello', max_tokens=32))\"\n"
            f"  llama-cli -m {gguf} -cnv\n"
            f"  cd {out} && ollama create codette-{size} -f Modelfile && ollama run codette-{size}")


if __name__ == "__main__":
    sys.exit(main())

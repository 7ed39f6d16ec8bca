"""Export a training checkpoint to GGUF (+ an Ollama Modelfile), and import GGUF back.

    python -m codette_np.export --checkpoint runs/micro --dtype q8_0
    python -m codette_np.export --checkpoint runs/micro/last.ckpt --out micro.gguf --dtype f16

Export reads a checkpoint file, or a run directory (best.ckpt, else
last.ckpt), writes a llama.cpp `starcoder2` GGUF with codette_np.gguf_io
(atomically: a failed export leaves no .gguf behind) and an Ollama
Modelfile next to it, and prints the commands to run the file.

Import: `load_gguf_model(path)` returns (Model, Tokenizer, metadata) from a
starcoder2 GGUF of any supported type (f32, f16, bf16, q8_0, q4_0); an f32
file gives back bit-identical weights. The SentencePiece tokenizer is rebuilt
from the GGUF's own piece table (pieces, scores, types, special ids,
add_space_prefix): that table is what llama.cpp tokenizes with, so the
rebuilt tokenizer encodes as llama.cpp does, for our files and foreign ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from codette_np import gguf_io, quant
from codette_np.tokenizer import sentencepiece_model_proto

GGUF_ALIGNMENT = 32  # gguf-py's default tensor data alignment

class ExportError(RuntimeError):
    """A failed export, with a one-line message for the user."""


def tokenizer_from_gguf(tokenizer_info: dict):
    """A codette_np Tokenizer from gguf_io.read_gguf's tokenizer_info.

    Returns None when the file's tokenizer is not SentencePiece-style
    (tokenizer.ggml.model != "llama"); raises ValueError when it is but
    cannot be rebuilt.
    """
    from codette_np.tokenizer import Tokenizer, TokenizerError

    if tokenizer_info.get("model") != "llama":
        return None
    proto = sentencepiece_model_proto(
        tokenizer_info["tokens"], tokenizer_info["scores"], tokenizer_info["token_types"],
        unk_id=int(tokenizer_info["unk_id"]), bos_id=int(tokenizer_info["bos_id"]),
        eos_id=int(tokenizer_info["eos_id"]), add_dummy_prefix=bool(tokenizer_info["add_space_prefix"]))
    try:
        return Tokenizer.from_proto(proto)
    except TokenizerError as e:
        raise ValueError(f"cannot rebuild the SentencePiece tokenizer: {e}") from None


# --------------------------------------------------------------------------- import

def load_gguf_model(path, backend: str | None = None, weights: str = "fp32", **model_options):
    """(Model, Tokenizer | None, metadata) from a starcoder2 GGUF file.

    Tensors of any supported type (f32, f16, bf16, q8_0, q4_0) are read one
    at a time, dequantized to float32 and copied into a new Model's store
    (f32 files round-trip bit for bit; with weights="bf16" the blocks'
    matrices are rounded to the nearest bf16, so bf16 files round-trip too).
    model_options (recompute=, fused_update=) are the Model's; the default
    keeps no full gradient buffer (fused_update=True), as to continue
    training with AdamW.fused_step or to run inference. metadata holds every non-tokenizer key
    (hyperparameters, general.training.* provenance) and, under "tokenizer",
    the tokenizer's special ids, flags and chat template. The tokenizer is
    None when the file's tokenizer is not SentencePiece-style. Raises
    ValueError naming the file when it cannot be used.
    """
    from codette_np.model import Model

    path = os.fspath(path)
    cfg, params, tok_info, meta = gguf_io.read_gguf(path)
    try:
        tok = tokenizer_from_gguf(tok_info)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if tok is not None and tok.vocab_size != cfg.vocab_size:
        raise ValueError(f"{path}: tokenizer has {tok.vocab_size} pieces, the model {cfg.vocab_size} rows")
    model = Model(cfg, init=False, backend=backend, weights=weights,
                  **{"fused_update": True, **model_options})
    for name in model.parameters_f32():
        model.set_parameter(name, params[name])
    meta = dict(meta)
    meta["tokenizer"] = {k: v for k, v in tok_info.items() if k not in ("tokens", "scores", "token_types")}
    return model, tok, meta


# --------------------------------------------------------------------------- export

def resolve_checkpoint(path) -> Path:
    """checkpoint.resolve, with its error as an ExportError."""
    from codette_np.checkpoint import CheckpointError, resolve

    try:
        return resolve(path)
    except CheckpointError as e:
        raise ExportError(str(e)) from None


def _padded(n: int) -> int:
    return -(-n // GGUF_ALIGNMENT) * GGUF_ALIGNMENT


def tensor_data_bytes(cfg, dtype: str) -> int:
    """Bytes of tensor data (with alignment padding) in a GGUF of file type `dtype`."""
    from codette_np.params import param_layout

    return sum(_padded(quant.nbytes(quant.storage_dtype(dtype, shape), shape))
               for _, shape in param_layout(cfg))


def f32_file_size(file_size: int, cfg, dtype: str) -> int:
    """Size the same GGUF would have as f32 (only the tensor data differs)."""
    return file_size - tensor_data_bytes(cfg, dtype) + tensor_data_bytes(cfg, "f32")


def export_checkpoint(checkpoint, out=None, dtype: str = "f16", name: str | None = None,
                      modelfile: bool = True) -> dict:
    """Write the GGUF (and Modelfile) for a checkpoint file or run directory.

    out defaults to codette-<size>-<dtype>.gguf next to the checkpoint; name
    (general.name and the suggested Ollama name) to codette-<size>. Returns
    paths, sizes and provenance. Raises ExportError with a one-line message.
    """
    from codette_np.checkpoint import CheckpointError, load_model_and_tokenizer

    if dtype not in quant.DTYPES:
        raise ExportError(f"unsupported dtype {dtype!r}; choose one of {', '.join(quant.DTYPES)}")
    if name is not None and (not name or any(c.isspace() for c in name)):
        raise ExportError(f"--name must be non-empty and without spaces, got {name!r}")
    if out is not None:
        _check_output(Path(out))
    ckpt = resolve_checkpoint(checkpoint)
    if out is not None:
        _not_an_input(Path(out), ckpt)
    try:
        model, tok, header = load_model_and_tokenizer(ckpt)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    except (KeyError, TypeError, ValueError) as e:  # a readable file that is not a training checkpoint
        raise ExportError(f"{ckpt}: not a codette_np training checkpoint ({type(e).__name__}: {e})") from None
    cfg = model.cfg
    size = header.get("size") or cfg.name
    name = name or f"codette-{size}"
    out = Path(out) if out is not None else ckpt.parent / f"codette-{size}-{dtype}.gguf"
    _check_output(out)
    provenance = {"steps": header.get("step"), "tokens_seen": header.get("tokens_seen"),
                  "val_loss": header.get("best_val")}
    try:
        types = gguf_io.write_gguf(out, cfg, model.parameters_f32(), tok, dtype=dtype,
                                   provenance=provenance, name=name)
    except ValueError as e:
        raise ExportError(f"cannot export {ckpt}: {e}") from None
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    mf = None
    if modelfile:
        mf = out.parent / "Modelfile"
        try:
            gguf_io.write_modelfile(mf, out.name, cfg)
        except OSError as e:
            raise ExportError(f"wrote {out}, but cannot write {mf}: {e.strerror or e}") from None
    size_bytes = out.stat().st_size
    return {"gguf": out, "modelfile": mf, "checkpoint": ckpt, "name": name, "dtype": dtype,
            "bytes": size_bytes, "f32_bytes": f32_file_size(size_bytes, cfg, dtype), "types": types,
            "provenance": provenance, "context_length": cfg.context_length, "n_params": model.n_params}


RUN_FILES = ("last.ckpt", "best.ckpt", "metrics.jsonl", "train.log", ".lock")  # what a run directory needs


def _not_an_input(out: Path, ckpt: Path) -> None:
    """The output must not replace the checkpoint read, nor a file its run directory needs."""
    o = out.resolve()
    if o == ckpt.resolve():
        raise ExportError(f"--out {out} is the checkpoint being exported; give another file name "
                          f"such as model.gguf")
    if o.parent == ckpt.resolve().parent and (o.name in RUN_FILES or o.suffix == ".ckpt"):
        raise ExportError(f"--out {out} would replace {o.name} of the run in {o.parent}; give another "
                          f"file name such as model.gguf")
    if "tokenizer" in o.relative_to(o.anchor).parts and (ckpt.resolve().parent / "tokenizer") in o.parents:
        raise ExportError(f"--out {out} is inside the run's tokenizer cache; give another file name")


def _check_output(out: Path) -> None:
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a directory (give a file name such as model.gguf)")
    parent = out.parent
    if not parent.exists():
        raise ExportError(f"cannot write {out}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise ExportError(f"cannot write {out}: directory {parent} is not writable")


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def next_commands(result: dict) -> list[str]:
    """Shell commands that run the exported file with llama-cpp-python and Ollama."""
    gguf = str(result["gguf"])
    code = ("from llama_cpp import Llama; "
            f"llm = Llama(model_path={json.dumps(gguf)}, n_ctx={result['context_length']}, verbose=False); "
            'r = llm.create_chat_completion(messages=[{"role": "user", "content": "Who are you?"}], '
            'max_tokens=64); print(r["choices"][0]["message"]["content"])')
    cmds = [f"python3 -c {shlex.quote(code)}"]
    if result["modelfile"] is not None:
        name = shlex.quote(result["name"])
        where = shlex.quote(str(result["modelfile"].parent))
        cmds += [f"cd {where} && ollama create {name} -f Modelfile", f"ollama run {name}"]
    return cmds


def report(result: dict) -> str:
    """What was written, its size against an f32 file, and the next commands."""
    p = result["provenance"]
    size = f"{_mib(result['bytes'])} as {result['dtype']}"
    other = sorted({t for t in result["types"].values() if t != result["dtype"]})
    if other and result["dtype"] in ("q8_0", "q4_0"):
        n = sum(t != result["dtype"] for t in result["types"].values())
        size += (f" ({n} of {len(result['types'])} tensors as {'/'.join(other)}: 1-D tensors always are, "
                 f"matrices when their rows are not multiples of 32)")
    if result["dtype"] != "f32":
        size += f" ({result['bytes'] / result['f32_bytes']:.0%} of the {_mib(result['f32_bytes'])} of f32)"
    lines = [f"wrote {result['gguf']}: {size}, {result['n_params']:,} parameters"]
    prov = [f"step {p['steps']}" if p["steps"] is not None else None,
            f"{p['tokens_seen']:,} tokens seen" if p["tokens_seen"] is not None else None,
            f"best validation loss {p['val_loss']:.4f}" if p["val_loss"] is not None else None]
    lines.append(f"from {result['checkpoint']}: " + (", ".join(x for x in prov if x) or "no training record"))
    if result["modelfile"] is not None:
        lines.append(f"wrote {result['modelfile']}")
    lines.append("next:")
    lines += [f"  {c}" for c in next_commands(result)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m codette_np.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, metavar="DIR_OR_CKPT",
                    help="a .ckpt file, or a run directory (uses best.ckpt, else last.ckpt)")
    ap.add_argument("--out", default=None, metavar="FILE.gguf",
                    help="GGUF file to write (default: codette-<size>-<dtype>.gguf next to the checkpoint); "
                         "its directory must exist")
    ap.add_argument("--dtype", default="f16", metavar="DTYPE",
                    help="weight storage: f32, f16 (default), bf16, q8_0 or q4_0; biases and norms stay f32, "
                         "q8_0/q4_0 matrices whose rows are not whole 32-blocks fall back to f16")
    ap.add_argument("--name", default=None,
                    help="model name written to general.name and used in the Ollama commands "
                         "(default codette-<size>)")
    ap.add_argument("--no-modelfile", action="store_true",
                    help="do not write the Ollama Modelfile next to the GGUF")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from codette_np import backend

    try:
        backend.check_environment()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the writer removes its temporary file.
    old = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        result = export_checkpoint(args.checkpoint, args.out, args.dtype, args.name,
                                   modelfile=not args.no_modelfile)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

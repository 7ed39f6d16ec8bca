"""Write and read llama.cpp `starcoder2` GGUF files, and Ollama Modelfiles.

The file holds exactly the tensors of `params.param_layout(cfg)` (no
`output.weight`: llama.cpp then ties the output matrix to `token_embd.weight`),
the hyperparameters under `starcoder2.*`, a SentencePiece ("llama") tokenizer,
a Jinja chat template equal to `chat.render`, and training provenance under
`general.training.*`.

Files are written atomically: to a temporary name in the target directory,
fsynced, then renamed; a failed write leaves no file behind.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets

from collections.abc import Mapping

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from codette_np import chat, quant
from codette_np.config import ModelConfig
from codette_np.params import param_layout

ARCH = "starcoder2"
PROVENANCE_PREFIX = "general.training."
PRESET_KEY = PROVENANCE_PREFIX + "preset"
# sha256 (hex) of every byte from the start of the tensor data to the end of the file; llama.cpp
# ignores the key, read_gguf verifies it when present
DATA_SHA_KEY = "codette.tensor_data_sha256"
_SHA_PLACEHOLDER = "0" * 64

# GGUF token types (llama.cpp's llama_token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# Ollama sampling defaults written to the Modelfile.
MODELFILE_DEFAULTS = {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.1}


# --------------------------------------------------------------------------- chat templates

def chat_template() -> str:
    """Jinja template (for `tokenizer.chat_template`) rendering like chat.render.

    With `add_generation_prompt` it renders like chat.generation_prompt. No BOS
    is emitted: llama.cpp adds it when tokenizing (add_bos_token is true).
    """
    def lit(s: str) -> str:  # a Jinja string literal
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    parts = ["{%- for message in messages -%}"]
    for i, (role, marker) in enumerate(chat.ROLE_MARKERS.items()):
        kw = "if" if i == 0 else "elif"
        parts.append(f"{{%- {kw} message['role'] == {lit(role)} -%}}{{{{- {lit(marker + chr(10))} -}}}}")
    parts.append("{%- else -%}{{- raise_exception('unknown role: ' + message['role']) -}}")
    parts.append("{%- endif -%}")
    parts.append(f"{{{{- message['content'] + {lit(chat.END + chr(10))} -}}}}")
    parts.append("{%- endfor -%}")
    parts.append("{%- if add_generation_prompt -%}"
                 f"{{{{- {lit(chat.ASSISTANT + chr(10))} -}}}}"
                 "{%- endif -%}")
    return "\n".join(parts)


def ollama_template() -> str:
    """Ollama Go template over .System / .Prompt / .Response in the chat format.

    Rendered for one exchange it gives chat.generation_prompt of
    [system, user] followed by the response and `<|end|>\\n`; Ollama cuts the
    text after .Response for the turn being generated.
    """
    s, u, a, e = chat.SYSTEM, chat.USER, chat.ASSISTANT, chat.END
    return (f"{{{{ if .System }}}}{s}\n{{{{ .System }}}}{e}\n{{{{ end }}}}"
            f"{{{{ if .Prompt }}}}{u}\n{{{{ .Prompt }}}}{e}\n{{{{ end }}}}"
            f"{a}\n{{{{ .Response }}}}{e}\n")


def modelfile_text(gguf_filename: str, context_length: int, system_prompt: str = chat.SYSTEM_PROMPT,
                   *, temperature: float = MODELFILE_DEFAULTS["temperature"],
                   top_k: int = MODELFILE_DEFAULTS["top_k"],
                   top_p: float = MODELFILE_DEFAULTS["top_p"],
                   repeat_penalty: float = MODELFILE_DEFAULTS["repeat_penalty"]) -> str:
    """The text of an Ollama Modelfile for a GGUF file next to it."""
    if '"""' in system_prompt:
        raise ValueError('the system prompt cannot contain """ (Modelfile quoting)')
    if not gguf_filename or "\n" in gguf_filename:
        raise ValueError(f"bad GGUF file name {gguf_filename!r}")
    if not (isinstance(context_length, int) and context_length > 0):
        raise ValueError(f"context_length must be a positive int, got {context_length!r}")
    ref = gguf_filename.replace(os.sep, "/")
    if not ref.startswith(("./", "../", "/")):
        ref = "./" + ref
    lines = [
        f"FROM {ref}",
        "",
        f'TEMPLATE """{ollama_template()}"""',
        "",
        f'SYSTEM """{system_prompt}"""',
        "",
        f'PARAMETER stop "{chat.END}"',
        f'PARAMETER stop "{chat.USER}"',
        f"PARAMETER temperature {float(temperature)}",
        f"PARAMETER top_k {int(top_k)}",
        f"PARAMETER top_p {float(top_p)}",
        f"PARAMETER repeat_penalty {float(repeat_penalty)}",
        f"PARAMETER num_ctx {context_length}",
    ]
    return "\n".join(lines) + "\n"


def write_modelfile(path, gguf_filename, cfg: ModelConfig, system_prompt: str = chat.SYSTEM_PROMPT,
                    **sampling) -> None:
    """Write an Ollama Modelfile at `path` for the GGUF file `gguf_filename`.

    A relative `gguf_filename` is taken as relative to the Modelfile's
    directory; an absolute one is made relative to it. num_ctx is
    cfg.context_length. `sampling` overrides MODELFILE_DEFAULTS.
    """
    path = os.fspath(path)
    gguf_filename = os.fspath(gguf_filename)
    if os.path.isabs(gguf_filename):
        gguf_filename = os.path.relpath(gguf_filename, os.path.dirname(os.path.abspath(path)))
    unknown = set(sampling) - set(MODELFILE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown Modelfile parameters: {sorted(unknown)}")
    text = modelfile_text(gguf_filename, cfg.context_length, system_prompt, **sampling)
    _atomic_write(path, lambda tmp: _write_text(tmp, text))


# --------------------------------------------------------------------------- atomic files

def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, write) -> None:
    """Call write(tmp) on a temporary in path's directory, fsync, rename to path."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


# --------------------------------------------------------------------------- validation

def check_params(cfg: ModelConfig, params) -> None:
    """Exactly the tensors of param_layout(cfg), right shapes, finite; else ValueError naming
    the first offending tensor. `params` maps names to float arrays; they are fetched one at a
    time, so a lazy mapping (Model.parameters_f32(), which decodes bf16 tensors on access) is
    never held whole in float32."""
    layout = param_layout(cfg)
    names = [n for n, _ in layout]
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"missing tensor {missing[0]!r} ({len(missing)} missing)")
    extra = sorted(set(params) - set(names))
    if extra:
        raise ValueError(f"unexpected tensor {extra[0]!r} (not in the {ARCH} layout for this config)")
    for name, shape in layout:
        as_float32(name, params[name], shape)


def as_float32(name: str, a, shape) -> np.ndarray:
    """Tensor `name` as a contiguous float32 array of `shape` (no copy when it is one already),
    finite; else ValueError."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"tensor {name!r} has dtype {a.dtype}, expected a float array")
    if a.shape != tuple(shape):
        raise ValueError(f"tensor {name!r} has shape {a.shape}, expected {tuple(shape)}")
    with np.errstate(over="ignore"):
        a32 = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise ValueError(f"tensor {name!r} has non-finite values (as float32)")
    return a32


def tokenizer_fields(tokenizer, cfg: ModelConfig) -> dict:
    """Validated tokenizer data as plain Python values, ready for GGUF.

    The chat markers are written as CONTROL tokens: llama.cpp then matches
    them only in text tokenized with special=True (the chat template), never
    in user text (special=False), and it forces that type on `<|end|>` (an
    end-of-generation token) anyway. `add_space_prefix` comes from the
    tokenizer's attribute of that name (True, SentencePiece's default for
    add_dummy_prefix, when it has none).
    """
    tokens, scores, types = tokenizer.pieces_scores_types()
    tokens = [str(t) for t in tokens]
    scores = [float(s) for s in scores]
    types = [int(t) for t in types]
    n = len(tokens)
    if not (len(scores) == len(types) == n == int(tokenizer.vocab_size)):
        raise ValueError(
            f"tokenizer: {n} tokens, {len(scores)} scores, {len(types)} types, "
            f"vocab_size {tokenizer.vocab_size}: these must agree")
    if n != cfg.vocab_size:
        raise ValueError(f"tokenizer has {n} tokens but cfg.vocab_size is {cfg.vocab_size}")
    if len(set(tokens)) != n:
        raise ValueError("tokenizer has duplicate token strings")
    bad = [i for i, t in enumerate(types) if not TOKEN_NORMAL <= t <= TOKEN_BYTE]
    if bad:
        raise ValueError(f"tokenizer: token {bad[0]} has invalid type {types[bad[0]]}")
    if not all(math.isfinite(s) for s in scores):
        raise ValueError("tokenizer has non-finite scores")
    ids = {}
    for key in ("bos_id", "eos_id", "unk_id"):
        v = getattr(tokenizer, key)
        if not (isinstance(v, (int, np.integer)) and 0 <= int(v) < n):
            raise ValueError(f"tokenizer.{key} = {v!r} is not a token id")
        ids[key] = int(v)
    index = {t: i for i, t in enumerate(tokens)}
    for m in chat.MARKERS:
        if m not in index:
            raise ValueError(f"tokenizer has no single token for the chat marker {m!r}")
    eot = index[chat.END]
    for m in chat.MARKERS:  # CONTROL: llama.cpp matches them only in text it is told is special
        types[index[m]] = TOKEN_CONTROL
    add_space_prefix = getattr(tokenizer, "add_space_prefix", True)
    if not isinstance(add_space_prefix, (bool, np.bool_)):
        raise ValueError(f"tokenizer.add_space_prefix must be a bool, got {add_space_prefix!r}")
    return dict(tokens=tokens, scores=scores, types=types, eot_id=eot,
                add_space_prefix=bool(add_space_prefix), **ids)


def _provenance_items(provenance: dict | None) -> list[tuple[str, object, GGUFValueType, GGUFValueType | None]]:
    """Flatten provenance into (gguf key, value, type, array sub-type) rows.

    Nested dicts join with '.'; None values are skipped; numpy scalars and
    arrays become Python values. ints are INT64, floats FLOAT64.
    """
    rows = []

    def scalar_type(v):
        if isinstance(v, bool):
            return GGUFValueType.BOOL
        if isinstance(v, int):
            if not -2**63 <= v < 2**63:
                raise ValueError("int out of int64 range")
            return GGUFValueType.INT64
        if isinstance(v, float):
            return GGUFValueType.FLOAT64
        if isinstance(v, str):
            return GGUFValueType.STRING
        raise ValueError(f"unsupported type {type(v).__name__}")

    def visit(prefix, d):
        for k, v in d.items():
            if not isinstance(k, str) or not k or any(c.isspace() for c in k):
                raise ValueError(f"provenance key {k!r} must be a non-empty string without spaces")
            key = prefix + k
            if isinstance(v, np.generic) or isinstance(v, np.ndarray):
                v = v.tolist()
            if v is None:
                continue
            if isinstance(v, dict):
                visit(key + ".", v)
                continue
            try:
                if isinstance(v, (list, tuple)):
                    v = [x.item() if isinstance(x, np.generic) else x for x in v]
                    if not v:
                        raise ValueError("empty list")
                    sub = scalar_type(v[0])
                    if any(scalar_type(x) is not sub for x in v[1:]):
                        raise ValueError("list items of different types")
                    rows.append((key, list(v), GGUFValueType.ARRAY, sub))
                else:
                    rows.append((key, v, scalar_type(v), None))
            except ValueError as e:
                raise ValueError(f"provenance {key!r}: {e}") from None

    visit(PROVENANCE_PREFIX, provenance or {})
    return rows


# --------------------------------------------------------------------------- write

def write_gguf(path, cfg: ModelConfig, params: dict, tokenizer, dtype: str = "f16",
               provenance: dict | None = None, name: str = "codette") -> dict[str, str]:
    """Write a llama.cpp `starcoder2` GGUF file; returns {tensor name: storage dtype}.

    dtype is the file type (f32, f16, bf16, q8_0, q4_0): matrices are stored
    in it (q8_0 / q4_0 fall back to f16 for rows that are not whole blocks),
    1-D tensors always as f32. provenance (e.g. {"steps": 1000, "val_loss":
    2.1}) is written under general.training.*. Raises ValueError on bad
    inputs before anything is written.
    """
    path = os.fspath(path)
    quant.ggml_type(dtype)  # validates the name
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    check_params(cfg, params)
    tok = tokenizer_fields(tokenizer, cfg)
    prov = _provenance_items(provenance)
    if not any(key == PRESET_KEY for key, *_ in prov):
        prov.append((PRESET_KEY, cfg.name, GGUFValueType.STRING, None))
    layout = param_layout(cfg)
    types = {n: quant.storage_dtype(dtype, shape) for n, shape in layout}

    def write(tmp: str) -> None:
        w = GGUFWriter(tmp, ARCH)
        try:
            w.add_type("model")
            w.add_name(name)
            w.add_file_type(quant.file_type(dtype))
            w.add_quantization_version(2)  # GGML_QNT_VERSION
            w.add_context_length(cfg.context_length)
            w.add_embedding_length(cfg.d_model)
            w.add_block_count(cfg.n_layer)
            w.add_feed_forward_length(cfg.d_ff)
            w.add_head_count(cfg.n_head)
            w.add_head_count_kv(cfg.n_head)
            w.add_layer_norm_eps(float(cfg.norm_eps))
            w.add_rope_freq_base(float(cfg.rope_base))
            w.add_rope_dimension_count(cfg.head_dim)
            for key, value, vtype, sub in prov:
                w.add_key_value(key, value, vtype, sub_type=sub)

            w.add_tokenizer_model("llama")
            w.add_token_list(tok["tokens"])
            w.add_token_scores(tok["scores"])
            w.add_token_types(tok["types"])
            w.add_bos_token_id(tok["bos_id"])
            w.add_eos_token_id(tok["eos_id"])
            w.add_unk_token_id(tok["unk_id"])
            w.add_eot_token_id(tok["eot_id"])
            w.add_add_bos_token(True)
            w.add_add_eos_token(False)
            w.add_add_space_prefix(tok["add_space_prefix"])
            w.add_chat_template(chat_template())
            w.add_string(DATA_SHA_KEY, _SHA_PLACEHOLDER)  # patched once the data is written

            for tname, shape in layout:
                st = types[tname]
                size = quant.nbytes(st, shape)
                if st == "f32":
                    w.add_tensor_info(tname, shape, np.dtype(np.float32), size)
                elif st == "f16":
                    w.add_tensor_info(tname, shape, np.dtype(np.float16), size)
                else:  # stored as uint8 rows of blocks
                    byte_shape = (*shape[:-1], quant.row_bytes(st, shape[-1]))
                    w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), size,
                                      raw_dtype=quant.ggml_type(st))
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for tname, shape in layout:  # one tensor (and its encoding) in memory at a time
                w.write_tensor_data(quant.quantize(as_float32(tname, params[tname], shape), types[tname]))
            w.flush()
        finally:
            w.close()
        _patch_data_digest(tmp)

    _atomic_write(path, write)
    return types


def _data_digest(path: str, data_offset: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(data_offset)
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _patch_data_digest(path: str) -> None:
    """Write the digest of the tensor data over the placeholder value of DATA_SHA_KEY."""
    offset = GGUFReader(path).tensors[0].data_offset  # tensors follow one another from here
    digest = _data_digest(path, offset)
    with open(path, "r+b") as f:
        head = f.read(offset)
        key = DATA_SHA_KEY.encode()
        at = head.find(key)
        # key, then the value's type (u32 = 8, a string) and length (u64 = 64), then the value
        value_at = at + len(key) + 4 + 8
        if at < 0 or head[value_at:value_at + 64] != _SHA_PLACEHOLDER.encode():
            raise ValueError("internal error: the tensor data digest placeholder was not found")
        f.seek(value_at)
        f.write(digest.encode())


# --------------------------------------------------------------------------- read

def _f32_value(x) -> float:
    """A float32 metadata value as the shortest decimal that round-trips (1e-5, not 9.99e-6)."""
    return float(str(np.float32(x)))


class _TensorsOfFile(Mapping):
    """name -> float32 array, dequantized from the (memory-mapped) file when asked for, so a
    model is loaded one tensor at a time; a non-finite tensor raises ValueError naming the file."""

    def __init__(self, path, tensors, shapes):
        self._path, self._tensors, self._shapes = path, tensors, shapes

    def __getitem__(self, name):
        t, shape = self._tensors[name], self._shapes[name]
        a = quant.dequantize(t.data, quant.DTYPE_OF_GGML[int(t.tensor_type)], shape)
        if not np.isfinite(a).all():
            raise ValueError(f"{self._path}: tensor {name!r} holds non-finite values")
        return a

    def __iter__(self):
        return iter(self._shapes)

    def __len__(self):
        return len(self._shapes)


def read_gguf(path):
    """Read a starcoder2 GGUF file written by write_gguf (or compatible).

    Returns (cfg, params, tokenizer_info, metadata): params maps tensor names
    to float32 arrays in (out_features, in_features) layout (each dequantized
    from the memory-mapped file when it is read: one tensor in memory at a time); tokenizer_info
    holds model, tokens, scores, token_types, bos_id, eos_id, unk_id, eot_id,
    add_bos, add_eos, add_space_prefix, chat_template; metadata holds every other key's value.
    Raises ValueError naming the file when it is not a complete starcoder2 model.
    """
    path = os.fspath(path)
    try:
        return _read_gguf(path)
    except ValueError as e:
        if str(e).startswith(path):  # ours, naming the file
            raise
        raise ValueError(f"{path}: corrupt or not a GGUF file ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - a damaged file makes the parser fail in many ways
        raise ValueError(f"{path}: corrupt or not a GGUF file ({type(e).__name__}: {e})") from None


def _read_gguf(path: str):
    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as GGUF: {e}") from e

    fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    want = fields.get(DATA_SHA_KEY)
    if want is not None and reader.tensors:
        if _data_digest(path, reader.tensors[0].data_offset) != want:
            raise ValueError(f"{path}: the tensor data fails its checksum ({DATA_SHA_KEY}): the file is "
                             f"corrupt")

    def get(key, default=KeyError):
        if key in fields:
            return fields[key]
        if default is KeyError:
            raise ValueError(f"{path}: missing key {key!r}")
        return default

    arch = get("general.architecture")
    if arch != ARCH:
        raise ValueError(f"{path}: architecture is {arch!r}, expected {ARCH!r}")
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ValueError(f"{path}: missing tensor 'token_embd.weight'")
    vocab_size = int(tensors["token_embd.weight"].shape[-1])  # ggml dims are reversed
    n_head = int(get(f"{ARCH}.attention.head_count"))
    try:
        cfg = ModelConfig(
            vocab_size=vocab_size,
            d_model=int(get(f"{ARCH}.embedding_length")),
            n_layer=int(get(f"{ARCH}.block_count")),
            n_head=n_head,
            d_ff=int(get(f"{ARCH}.feed_forward_length")),
            context_length=int(get(f"{ARCH}.context_length")),
            norm_eps=_f32_value(get(f"{ARCH}.attention.layer_norm_epsilon")),
            rope_base=_f32_value(get(f"{ARCH}.rope.freq_base", 10000.0)),
            name=str(get(PRESET_KEY, "custom")),
        )
    except (TypeError, ValueError) as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: bad hyperparameters: {e}") from e
    n_head_kv = int(get(f"{ARCH}.attention.head_count_kv", n_head))
    if n_head_kv != n_head:
        raise ValueError(f"{path}: head_count_kv {n_head_kv} != head_count {n_head} (GQA is not supported)")
    n_rot = int(get(f"{ARCH}.rope.dimension_count", cfg.head_dim))
    if n_rot != cfg.head_dim:
        raise ValueError(f"{path}: rope.dimension_count {n_rot} != head_dim {cfg.head_dim}")

    layout = param_layout(cfg)
    names = {n for n, _ in layout}
    for n, _ in layout:
        if n not in tensors:
            raise ValueError(f"{path}: missing tensor {n!r}")
    extra = sorted(set(tensors) - names)
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]!r}")
    for n, shape in layout:
        t = tensors[n]
        got = tuple(int(s) for s in reversed(t.shape.tolist()))
        if got != tuple(shape):
            raise ValueError(f"{path}: tensor {n!r} has shape {got}, expected {tuple(shape)}")
        if quant.DTYPE_OF_GGML.get(int(t.tensor_type)) is None:
            raise ValueError(f"{path}: tensor {n!r} has unsupported type {t.tensor_type.name}")
    params = _TensorsOfFile(path, tensors, dict(layout))

    tokens = get("tokenizer.ggml.tokens")
    if len(tokens) != vocab_size:
        raise ValueError(f"{path}: {len(tokens)} tokens but token_embd has {vocab_size} rows")
    tokenizer_info = {
        "model": get("tokenizer.ggml.model"),
        "tokens": tokens,
        "scores": get("tokenizer.ggml.scores"),
        "token_types": get("tokenizer.ggml.token_type"),
        "bos_id": get("tokenizer.ggml.bos_token_id"),
        "eos_id": get("tokenizer.ggml.eos_token_id"),
        "unk_id": get("tokenizer.ggml.unknown_token_id"),
        "eot_id": get("tokenizer.ggml.eot_token_id", None),
        "add_bos": get("tokenizer.ggml.add_bos_token", True),
        "add_eos": get("tokenizer.ggml.add_eos_token", False),
        "add_space_prefix": get("tokenizer.ggml.add_space_prefix", True),
        "chat_template": get("tokenizer.chat_template", None),
    }
    metadata = {k: v for k, v in fields.items() if not k.startswith("tokenizer.")}
    return cfg, params, tokenizer_info, metadata

"""Checkpoints: one self-describing file, written atomically, verified on load.

Layout of a `.ckpt` file:

    b"CODETTE-CKPT\\x00v1\\n"          magic (16 bytes)
    u64 little-endian header length
    header: UTF-8 JSON (config, step, RNG states, data position, arguments,
            and for every blob: name, dtype, shape, offset, nbytes, sha256)
    blobs: raw array bytes (params, optimizer moments, tokenizer model)
    sha256 of everything above (32 bytes)

Writing goes to a temporary file in the same directory, is fsynced, then
renamed over the target, so a crash leaves either the old file or the new
one. Loading checks the magic, the lengths, the whole-file digest and each
blob's digest; any mismatch is a CheckpointError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

MAGIC = b"CODETTE-CKPT\x00v1\n"
assert len(MAGIC) == 16


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path, header: dict, blobs: dict[str, np.ndarray]):
    """Atomically write `header` (JSON-able) and named arrays to `path`.

    Refuses (ValueError) to write non-finite float arrays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries, off = [], 0
    for name, a in blobs.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"refusing to write checkpoint {path}: {name} holds non-finite values")
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                        "offset": off, "nbytes": int(a.nbytes),
                        "sha256": hashlib.sha256(memoryview(a).cast("B")).hexdigest()})
        off += a.nbytes
    head = json.dumps({**header, "blobs": entries}, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as f:
            def put(b):
                digest.update(b)
                f.write(b)
            put(MAGIC)
            put(struct.pack("<Q", len(head)))
            put(head)
            for name, a in blobs.items():
                put(memoryview(np.ascontiguousarray(a)).cast("B"))
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_checkpoint(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, blobs) from `path`; CheckpointError if missing, truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if len(raw) < len(MAGIC) + 8 + 32 or raw[:len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path} is not a codette_np checkpoint (bad magic or too short)")
    if hashlib.sha256(memoryview(raw)[:-32]).digest() != raw[-32:]:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (checksum mismatch)")
    (hlen,) = struct.unpack("<Q", raw[len(MAGIC):len(MAGIC) + 8])
    h0 = len(MAGIC) + 8
    try:
        header = json.loads(raw[h0:h0 + hlen].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has an unreadable header: {e}") from None
    base = h0 + hlen
    blobs = {}
    for e in header.pop("blobs"):
        lo, hi = base + e["offset"], base + e["offset"] + e["nbytes"]
        if hi > len(raw) - 32:
            raise CheckpointError(f"checkpoint {path} is truncated (blob {e['name']})")
        buf = memoryview(raw)[lo:hi]
        if hashlib.sha256(buf).hexdigest() != e["sha256"]:
            raise CheckpointError(f"checkpoint {path}: blob {e['name']} fails its checksum")
        blobs[e["name"]] = np.frombuffer(buf, dtype=np.dtype(e["dtype"])).reshape(e["shape"]).copy()
    return header, blobs



# ---------------------------------------------------------------------------
# run directories


def resolve(path) -> Path:
    """The checkpoint a path names: the file itself, or in a run directory
    best.ckpt, else last.ckpt (the rule every command uses)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"no best.ckpt or last.ckpt in {p}")
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def load_model_and_tokenizer(path, backend: str | None = None):
    """(model, tokenizer, header) from a .ckpt file or a run directory (best, else last)."""
    from codette_np.config import ModelConfig
    from codette_np.model import Model
    from codette_np.tokenizer import Tokenizer

    header, blobs = load_checkpoint(resolve(path))
    cfg = ModelConfig.from_dict(header["config"])
    model = Model(cfg, init=False, backend=backend)
    model.params[:] = blobs["params"]
    tok = Tokenizer.from_proto(blobs["tokenizer"].tobytes())
    return model, tok, header

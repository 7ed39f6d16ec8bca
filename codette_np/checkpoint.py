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
one. Loading reads the header first (read_header: enough to plan memory),
then streams each blob into its array, checking the magic, the lengths,
each blob's digest and the whole-file digest; any mismatch is a
CheckpointError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

MAGIC = b"CODETTE-CKPT\x00v1\n"
assert len(MAGIC) == 16


class CheckpointError(RuntimeError):
    pass


def _all_finite(a: np.ndarray, chunk: int = 1 << 22) -> bool:
    """np.isfinite(a).all() a chunk at a time (no array-sized temporary)."""
    flat = a.reshape(-1)
    return all(np.isfinite(flat[i:i + chunk]).all() for i in range(0, flat.size, chunk))


class Streamed:
    """A blob that is never whole in memory: its dtype and shape, and pieces(), which yields its
    elements in order as 1-D arrays (each valid until the next is asked for). save_checkpoint
    calls pieces() twice: once for the digest, once for the file."""

    def __init__(self, dtype, shape, pieces):
        self.dtype, self.shape, self.pieces = np.dtype(dtype), tuple(shape), pieces

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _bytes(a: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(a)).cast("B") if a.size else memoryview(b"")


def save_checkpoint(path, header: dict, blobs: dict):
    """Atomically write `header` (JSON-able) and named arrays (or Streamed blobs) to `path`.

    Refuses (ValueError) to write non-finite float arrays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries, off = [], 0
    for name, a in blobs.items():
        if isinstance(a, Streamed):
            h = hashlib.sha256()
            for piece in a.pieces():
                if a.dtype.kind == "f" and not _all_finite(piece):
                    raise ValueError(f"refusing to write checkpoint {path}: {name} holds non-finite values")
                h.update(_bytes(piece))
            sha = h.hexdigest()
        else:
            a = np.ascontiguousarray(a)
            if a.dtype.kind == "f" and not _all_finite(a):
                raise ValueError(f"refusing to write checkpoint {path}: {name} holds non-finite values")
            sha = hashlib.sha256(_bytes(a)).hexdigest()
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                        "offset": off, "nbytes": int(a.nbytes), "sha256": sha})
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
                for piece in (a.pieces() if isinstance(a, Streamed) else (a,)):
                    put(_bytes(piece))
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


def read_header(path) -> dict:
    """The header of a checkpoint (with its blob table), reading only the file's start.

    Checks the magic and the lengths; the checksums are verified by load_checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            start = f.read(len(MAGIC) + 8)
            if len(start) < len(MAGIC) + 8 or start[:len(MAGIC)] != MAGIC or size < len(start) + 32:
                raise CheckpointError(f"{path} is not a codette_np checkpoint (bad magic or too short)")
            (hlen,) = struct.unpack("<Q", start[len(MAGIC):])
            if len(start) + hlen + 32 > size:
                raise CheckpointError(f"checkpoint {path} is corrupt or truncated (header length)")
            raw = f.read(hlen)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode())
        blobs = header["blobs"]
        end = len(MAGIC) + 8 + hlen + sum(int(e["nbytes"]) for e in blobs)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an unreadable header: {e}") from None
    if end + 32 != size:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (size {size}, expected {end + 32})")
    return header


READ_CHUNK = 1 << 24  # bytes read at a time from a blob of which only a part is kept


def load_checkpoint(path, into: dict[str, np.ndarray] | None = None,
                    parts: dict[str, tuple[int, np.ndarray]] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, blobs) from `path`; CheckpointError if missing, truncated or corrupt.

    Streams the file blob by blob (the whole file is never in memory twice):
    a blob named in `into` is read straight into that array (same dtype and
    size), a blob named in `parts` as (lo, dst) is read READ_CHUNK bytes at a
    time and only its elements [lo, lo + dst.size) are kept, in dst (a data
    parallel rank's shard); the others are read into new arrays. Every blob's
    digest and the file's digest are checked; on a mismatch nothing read may
    be trusted."""
    path = Path(path)
    header = read_header(path)
    into, parts = into or {}, parts or {}
    digest = hashlib.sha256()
    blobs = {}
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 8)
            digest.update(head)
            (hlen,) = struct.unpack("<Q", head[len(MAGIC):])
            digest.update(f.read(hlen))
            for e in header["blobs"]:
                dt, shape = np.dtype(e["dtype"]), tuple(e["shape"])
                if e["name"] in parts:
                    lo, dst = parts[e["name"]]
                    _read_part(f, path, e, dt, lo, dst, digest)
                    blobs[e["name"]] = dst
                    continue
                dst = into.get(e["name"])
                if dst is not None:
                    if dst.dtype != dt or dst.size * dt.itemsize != e["nbytes"] or not dst.flags.c_contiguous:
                        raise CheckpointError(f"checkpoint {path}: blob {e['name']} is {e['dtype']} {shape}, "
                                              f"which does not fit the given {dst.dtype} {dst.shape} array")
                    a = dst
                else:
                    a = np.empty(shape, dtype=dt)
                buf = memoryview(a).cast("B") if a.size else memoryview(bytearray(0))
                if f.readinto(buf) != e["nbytes"]:
                    raise CheckpointError(f"checkpoint {path} is truncated (blob {e['name']})")
                digest.update(buf)
                if hashlib.sha256(buf).hexdigest() != e["sha256"]:
                    raise CheckpointError(f"checkpoint {path} is corrupt or truncated (blob {e['name']} fails its checksum)")
                blobs[e["name"]] = a if dst is not None else a.reshape(shape)
            if f.read(32) != digest.digest():
                raise CheckpointError(f"checkpoint {path} is corrupt or truncated (checksum mismatch)")
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    header.pop("blobs")
    return header, blobs


def _read_part(f, path, e, dt, lo, dst, digest):
    """Blob entry e, read from f in chunks into the file digest and its own; its elements
    [lo, lo + dst.size) copied into dst."""
    if dst.dtype != dt or not dst.flags.c_contiguous or lo < 0 or (lo + dst.size) * dt.itemsize > e["nbytes"]:
        raise CheckpointError(f"checkpoint {path}: blob {e['name']} is {e['dtype']} {tuple(e['shape'])}, "
                              f"which does not hold elements {lo}..{lo + dst.size} as {dst.dtype}")
    own, want = hashlib.sha256(), memoryview(dst).cast("B") if dst.size else memoryview(bytearray(0))
    b0, b1 = lo * dt.itemsize, (lo + dst.size) * dt.itemsize  # the bytes kept, within the blob
    done = 0
    while done < e["nbytes"]:
        chunk = f.read(min(READ_CHUNK, e["nbytes"] - done))
        if not chunk:
            raise CheckpointError(f"checkpoint {path} is truncated (blob {e['name']})")
        own.update(chunk)
        digest.update(chunk)
        a, b = max(b0, done), min(b1, done + len(chunk))
        if a < b:
            want[a - b0:b - b0] = chunk[a - done:b - done]
        done += len(chunk)
    if own.hexdigest() != e["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (blob {e['name']} fails its checksum)")


def read_blob(path, name: str) -> np.ndarray:
    """One blob of a checkpoint, read alone (checked against its own digest)."""
    path = Path(path)
    header = read_header(path)
    for e in header["blobs"]:
        if e["name"] == name:
            try:
                with open(path, "rb") as f:
                    f.seek(len(MAGIC))
                    (hlen,) = struct.unpack("<Q", f.read(8))
                    f.seek(len(MAGIC) + 8 + hlen + e["offset"])
                    raw = f.read(e["nbytes"])
            except OSError as err:
                raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
            if len(raw) != e["nbytes"] or hashlib.sha256(raw).hexdigest() != e["sha256"]:
                raise CheckpointError(f"checkpoint {path} is corrupt or truncated (blob {name} fails its checksum)")
            return np.frombuffer(raw, dtype=np.dtype(e["dtype"])).reshape(e["shape"]).copy()
    raise CheckpointError(f"checkpoint {path} has no {name}")


# ---------------------------------------------------------------------------
# run directories

_TMP = re.compile(r"^\..+\.tmp-(\d+)$")  # save_checkpoint's temporaries: .<name>.tmp-<pid>


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory) -> list[Path]:
    """Delete the temporaries that writers killed mid-save left behind (their PID is gone)."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


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


def model_blobs(model) -> dict:
    """The checkpoint blobs of a model's weights: its float32 store, and its bf16 one if any."""
    return {"params": model.params, **({"params_bf16": model.params_bf16} if model.weights == "bf16" else {})}


def load_model_and_tokenizer(path, backend: str | None = None):
    """(model, tokenizer, header) from a .ckpt file or a run directory (best, else last)."""
    from codette_np.config import ModelConfig
    from codette_np.model import Model
    from codette_np.tokenizer import Tokenizer

    path = resolve(path)
    head = read_header(path)
    cfg = ModelConfig.from_dict(head["config"])
    # for inference: no full gradient buffer; the weights in the format they were trained in
    model = Model(cfg, init=False, backend=backend, fused_update=True, weights=head.get("weights", "fp32"))
    header, blobs = load_checkpoint(path, into=model_blobs(model))
    tok = Tokenizer.from_proto(blobs["tokenizer"].tobytes())
    return model, tok, header

"""Checkpoint files: round trip, atomicity, corruption and truncation errors."""

import numpy as np
import pytest

from codette_np.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _blobs(rng):
    return {"params": rng.standard_normal(1000).astype(np.float32),
            "tok": np.frombuffer(b"abc\x00def", dtype=np.uint8)}


def test_round_trip(tmp_path, rng):
    b = _blobs(rng)
    save_checkpoint(tmp_path / "x.ckpt", {"step": 7, "cfg": {"a": 1}}, b)
    h, got = load_checkpoint(tmp_path / "x.ckpt")
    assert h["step"] == 7 and h["cfg"] == {"a": 1}
    for k in b:
        assert np.array_equal(got[k], b[k]) and got[k].dtype == b[k].dtype
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]  # no temporary left


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_files_are_clear_errors(tmp_path, rng, damage):
    p = tmp_path / "x.ckpt"
    save_checkpoint(p, {"step": 1}, _blobs(rng))
    raw = bytearray(p.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(b"not a checkpoint at all" * 10)
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="x.ckpt"):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_non_finite_is_never_written(tmp_path):
    p = tmp_path / "x.ckpt"
    save_checkpoint(p, {"step": 1}, {"params": np.ones(4, np.float32)})
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(p, {"step": 2}, {"params": np.array([1, np.nan], np.float32)})
    h, _ = load_checkpoint(p)
    assert h["step"] == 1  # the old file is intact
    assert [q.name for q in tmp_path.iterdir()] == ["x.ckpt"]


def test_streamed_blobs_write_the_same_file(tmp_path, rng):
    """A Streamed blob (pieces asked for twice: digest, then file) writes the bytes the whole
    array would; a non-finite piece is refused as an array's is."""
    from codette_np.checkpoint import Streamed

    b = _blobs(rng)
    save_checkpoint(tmp_path / "whole.ckpt", {"step": 1}, b)
    calls = []

    def pieces():
        calls.append(1)
        for lo in range(0, 1000, 300):  # 300, 300, 300, 100 elements
            yield b["params"][lo:lo + 300].copy()

    streamed = {"params": Streamed(np.float32, (1000,), pieces), "tok": b["tok"]}
    save_checkpoint(tmp_path / "streamed.ckpt", {"step": 1}, streamed)
    assert len(calls) == 2
    assert (tmp_path / "streamed.ckpt").read_bytes() == (tmp_path / "whole.ckpt").read_bytes()
    bad = b["params"].copy()
    bad[650] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(tmp_path / "bad.ckpt", {"step": 1},
                        {"params": Streamed(np.float32, (1000,), lambda: iter([bad[:500], bad[500:]]))})
    assert not (tmp_path / "bad.ckpt").exists()


@pytest.mark.parametrize("lo, n", [(0, 1000), (0, 1), (256, 512), (999, 1), (3, 0)])
def test_a_blob_read_in_part(tmp_path, rng, monkeypatch, lo, n):
    """parts={name: (lo, dst)} keeps elements [lo, lo + n) of a blob read in chunks (7 bytes
    here: chunk edges inside elements), still checking every digest."""
    from codette_np import checkpoint as ck

    monkeypatch.setattr(ck, "READ_CHUNK", 7)
    b = _blobs(rng)
    save_checkpoint(tmp_path / "x.ckpt", {"step": 1}, b)
    dst = np.zeros(n, np.float32)
    _, got = load_checkpoint(tmp_path / "x.ckpt", parts={"params": (lo, dst)})
    assert got["params"] is dst and np.array_equal(dst, b["params"][lo:lo + n])
    assert np.array_equal(got["tok"], b["tok"])
    with pytest.raises(CheckpointError, match="does not hold elements"):
        load_checkpoint(tmp_path / "x.ckpt", parts={"params": (1000 - n + 1, np.zeros(n, np.float32))})
    raw = bytearray((tmp_path / "x.ckpt").read_bytes())
    raw[-100] ^= 1  # inside the params blob
    (tmp_path / "y.ckpt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "y.ckpt", parts={"params": (lo, np.zeros(n, np.float32))})

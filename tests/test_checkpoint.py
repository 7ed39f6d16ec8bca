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

"""Packing tokenized examples into training rows, and the batch of each step.

Each example becomes `BOS ids... EOS`; examples are concatenated (in a
seeded order) and cut into rows of T+1 tokens (inputs = row[:-1],
targets = row[1:]). The batch of step s is a pure function of (rows, s, B,
seed): epoch e visits the rows in the permutation drawn from
default_rng([seed, e]). So resuming at step s needs only s, and a resumed
run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np


def pack_rows(token_lists, bos_id: int, eos_id: int, T: int, seed: int = 0) -> np.ndarray:
    """rows (R, T+1) int32 from a list of token-id lists; the tail shorter than a row is dropped."""
    order = np.random.default_rng([seed, 0xC0DE]).permutation(len(token_lists))
    total = sum(len(token_lists[i]) + 2 for i in order)
    stream = np.empty(total, dtype=np.int32)
    pos = 0
    for i in order:
        ids = token_lists[i]
        stream[pos] = bos_id
        stream[pos + 1:pos + 1 + len(ids)] = ids
        stream[pos + 1 + len(ids)] = eos_id
        pos += len(ids) + 2
    n_rows = (total - 1) // T
    if n_rows == 0:
        return np.zeros((0, T + 1), dtype=np.int32)
    # row r covers stream[r*T : r*T + T + 1] (consecutive rows share one token)
    idx = np.arange(n_rows)[:, None] * T + np.arange(T + 1)[None, :]
    return stream[idx]


def batch_at(rows: np.ndarray, step: int, B: int, seed: int = 0):
    """(inputs, targets), each (B, T) int32, for optimizer step `step` (0-based)."""
    R = rows.shape[0]
    first = step * B
    sel = np.empty(B, dtype=np.int64)
    perm, perm_epoch = None, -1
    for j in range(B):
        e, r = divmod(first + j, R)
        if e != perm_epoch:
            perm, perm_epoch = np.random.default_rng([seed, e]).permutation(R), e
        sel[j] = perm[r]
    batch = rows[sel]
    return np.ascontiguousarray(batch[:, :-1]), np.ascontiguousarray(batch[:, 1:])


def eval_rows(token_lists, bos_id: int, eos_id: int, T: int):
    """(inputs, targets) (R, T) for evaluation: every token of every example is a
    target exactly once; the last row is padded with target -1."""
    stream = []
    for ids in token_lists:
        stream += [bos_id, *ids, eos_id]
    stream = np.asarray(stream, dtype=np.int32)
    n_targets = len(stream) - 1
    R = max(1, -(-n_targets // T))
    x = np.zeros((R, T), dtype=np.int32)
    y = np.full((R, T), -1, dtype=np.int32)
    for r in range(R):
        seg = stream[r * T:r * T + T + 1]
        n = len(seg) - 1
        x[r, :n] = seg[:-1]
        y[r, :n] = seg[1:]
    return x, y

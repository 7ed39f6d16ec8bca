"""Packing tokenized examples into training rows, and the batch of each step.

Each example becomes `BOS ids... EOS`; examples are concatenated (in a
seeded order) and cut into rows of T+1 tokens (inputs = row[:-1],
targets = row[1:]). The batch of step s is a pure function of (rows, s, B,
seed): epoch e visits the rows in the permutation drawn from
default_rng([seed, e]). So resuming at step s needs only s, and a resumed
run sees exactly the batches of an uninterrupted one.

A mask per example (True where a token is trained) can go along: packed the
same way (`pack_masks`), it turns the untrained targets into -1, which the
loss ignores. A chat example trains only on its assistant turns
(Tokenizer.encode_chat_trained): the system prompt, the user's words and the
tool results are context the model reads, not text it must write.
"""

from __future__ import annotations

import numpy as np

TRAIN_ON = ("assistant", "all")  # what a chat example trains on; text without turns trains on all of it


def encode_example(tok, example: dict, train_on: str = "assistant") -> tuple[list[int], list[bool]]:
    """(ids, trained) of one example: with train_on "assistant", a chat example (one with
    "messages") trains on its assistant turns only; anything else trains on every token."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, not {train_on!r}")
    if train_on == "assistant" and example.get("messages"):
        return tok.encode_chat_trained(example["messages"])
    ids = tok.encode(example["text"])
    return ids, [True] * len(ids)


def _with_ends(mask) -> list[bool]:
    """An example's mask with its BOS and EOS: BOS is never a target; EOS is trained when all
    of the example is."""
    m = [bool(b) for b in mask]
    return [False, *m, bool(m) and all(m)]


def _stream(lists, first, last, seed: int, dtype) -> np.ndarray:
    """Concatenate `first, *lists[i], last` over the seeded order of the examples."""
    order = np.random.default_rng([seed, 0xC0DE]).permutation(len(lists))
    total = sum(len(lists[i]) + 2 for i in order)
    stream = np.empty(total, dtype=dtype)
    pos = 0
    for i in order:
        seq = lists[i]
        stream[pos] = first(seq)
        stream[pos + 1:pos + 1 + len(seq)] = seq
        stream[pos + 1 + len(seq)] = last(seq)
        pos += len(seq) + 2
    return stream


def _cut(stream: np.ndarray, T: int) -> np.ndarray:
    """Rows (R, T+1) of the stream; row r covers stream[r*T : r*T + T + 1] (consecutive rows
    share one token); the tail shorter than a row is dropped."""
    n_rows = (len(stream) - 1) // T
    if n_rows <= 0:
        return np.zeros((0, T + 1), dtype=stream.dtype)
    idx = np.arange(n_rows)[:, None] * T + np.arange(T + 1)[None, :]
    return stream[idx]


def pack_rows(token_lists, bos_id: int, eos_id: int, T: int, seed: int = 0) -> np.ndarray:
    """rows (R, T+1) int32 from a list of token-id lists."""
    return _cut(_stream(token_lists, lambda s: bos_id, lambda s: eos_id, seed, np.int32), T)


def pack_masks(masks, T: int, seed: int = 0) -> np.ndarray:
    """trained (R, T+1) bool, aligned with pack_rows(token_lists, ..., T, seed) for masks of the
    same lengths: BOS is never a target; an example's EOS is trained when all of it is."""
    return _cut(_stream(masks, lambda m: False, lambda m: bool(len(m)) and bool(np.all(m)),
                        seed, np.bool_), T)


def pack_whole(token_lists, masks, bos_id: int, eos_id: int, T: int, seed: int = 0, window: int = 64):
    """(rows (R, T+1) int32, trained (R, T+1) bool) with every example that fits in a row kept
    whole in one row, so a tool call is always trained with the request it answers in view.

    Examples are taken in a seeded order; each row is filled first-fit from the next `window`
    examples, and what is left of it is padding (EOS, never trained). Examples longer than a
    row are packed as pack_rows does, after the others."""
    n = len(token_lists)
    order = [int(i) for i in np.random.default_rng([seed, 0xC0DE]).permutation(n)]
    size = [len(x) + 2 for x in token_lists]  # BOS ids EOS
    long = [i for i in order if size[i] > T + 1]
    pending = [i for i in order if size[i] <= T + 1]
    rows, keep = [], []
    while pending:
        members = [pending.pop(0)]
        room = T + 1 - size[members[0]]
        j = 0
        while j < min(len(pending), window) and room >= 3:
            if size[pending[j]] <= room:
                room -= size[pending[j]]
                members.append(pending.pop(j))
            else:
                j += 1
        row, kept = [], []
        for i in members:
            row += [bos_id, *token_lists[i], eos_id]
            kept += _with_ends(masks[i])
        rows.append(row + [eos_id] * room)
        keep.append(kept + [False] * room)
    x = np.array(rows, dtype=np.int32).reshape(-1, T + 1)
    t = np.array(keep, dtype=bool).reshape(-1, T + 1)
    if long:
        lx = pack_rows([token_lists[i] for i in long], bos_id, eos_id, T, seed)
        lt = pack_masks([masks[i] for i in long], T, seed)
        x, t = np.concatenate([x, lx]), np.concatenate([t, lt])
    return x, t


def batch_at(rows: np.ndarray, step: int, B: int, seed: int = 0, trained: np.ndarray | None = None):
    """(inputs, targets), each (B, T) int32, for optimizer step `step` (0-based); with
    `trained` (pack_masks), the targets it does not train are -1."""
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
    x, y = batch[:, :-1].copy(), batch[:, 1:].copy()  # own buffers (for B = 1 a slice is contiguous)
    if trained is not None:
        y[~trained[sel, 1:]] = -1
    return x, y


def eval_rows(token_lists, bos_id: int, eos_id: int, T: int, masks=None):
    """(inputs, targets) (R, T) for evaluation: every token of every example is a
    target exactly once (with masks: every trained token); the last row is padded with
    target -1."""
    stream, keep = [], []
    for k, ids in enumerate(token_lists):
        stream += [bos_id, *ids, eos_id]
        if masks is None:
            keep += [True] * (len(ids) + 2)
        else:
            keep += _with_ends(masks[k])
    stream = np.asarray(stream, dtype=np.int32)
    keep = np.asarray(keep, dtype=bool)
    n_targets = len(stream) - 1
    R = max(1, -(-n_targets // T))
    x = np.zeros((R, T), dtype=np.int32)
    y = np.full((R, T), -1, dtype=np.int32)
    for r in range(R):
        seg = stream[r * T:r * T + T + 1]
        n = len(seg) - 1
        x[r, :n] = seg[:-1]
        y[r, :n] = np.where(keep[r * T + 1:r * T + 1 + n], seg[1:], -1)
    return x, y

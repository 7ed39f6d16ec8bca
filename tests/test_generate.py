"""KV-cache generation against Model.forward, and sampling."""

import numpy as np
import pytest

from codette_np import Model, ModelConfig
from codette_np.batches import batch_at, encode_example, eval_rows, pack_masks, pack_rows, pack_whole
from codette_np.generate import Generator, generate, sample
from conftest import rel_err


def test_kv_cache_logits_equal_forward(rng):
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=0, dtype=np.float64)
    for _, p in m.named_parameters():  # non-trivial biases and norms
        p += rng.standard_normal(p.shape) * 0.05
    ids = rng.integers(0, cfg.vocab_size, 40).astype(np.int32)
    full = m.forward(ids[None])[0]
    g = Generator(m)
    a = g.feed(ids[:17])  # a prefill, then one token at a time, then a chunk
    b = np.concatenate([g.feed(ids[i:i + 1]) for i in range(17, 30)])
    c = g.feed(ids[30:])
    assert rel_err(np.concatenate([a, b, c]), full) < 1e-12


def test_greedy_generation_matches_argmax_of_forward(rng):
    cfg = ModelConfig.preset("nano")
    m = Model(cfg, seed=1)
    prompt = list(rng.integers(0, cfg.vocab_size, 5))
    new = generate(m, prompt, max_new_tokens=8)
    seq = list(prompt)
    for _ in range(8):
        seq.append(int(np.argmax(m.forward(np.array([seq], dtype=np.int32))[0, -1])))
    assert new == seq[5:]


def test_sampling_respects_top_k(rng):
    logits = np.array([5.0, 4.0, 1.0, 0.0])
    picks = {sample(logits, rng, temperature=1.0, top_k=2) for _ in range(200)}
    assert picks == {0, 1}
    assert sample(logits, rng) == 0
    picks = {sample(logits, rng, temperature=1.0, top_p=0.5) for _ in range(50)}
    assert picks == {0}


def test_packing_and_batches_are_deterministic():
    lists = [[5, 6, 7], [8, 9], [10, 11, 12, 13]] * 10
    rows = pack_rows(lists, 1, 2, T=8, seed=3)
    assert rows.shape[1] == 9 and np.array_equal(rows[0, -1], rows[1, 0])  # rows overlap by one token
    x1, y1 = batch_at(rows, 5, 4, seed=3)
    x2, y2 = batch_at(rows, 5, 4, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(x1[:, 1:], y1[:, :-1])
    # every row is visited once per epoch
    R = rows.shape[0]
    seen = np.concatenate([batch_at(rows, s, 1, seed=3)[0] for s in range(R)])
    assert sorted(map(tuple, seen)) == sorted(map(tuple, rows[:, :-1]))


def test_eval_rows_cover_every_token_once():
    lists = [[5, 6, 7], [8, 9]]
    x, y = eval_rows(lists, 1, 2, T=4)
    stream = [1, 5, 6, 7, 2, 1, 8, 9, 2]
    assert (y >= 0).sum() == len(stream) - 1
    assert list(y[y >= 0]) == stream[1:]


def test_masks_pack_and_batch_like_their_tokens():
    rng = np.random.default_rng(4)
    lists = [list(rng.integers(5, 50, rng.integers(1, 9))) for _ in range(40)]
    masks = [list(rng.random(len(x)) < 0.5) for x in lists]
    masks[3] = [True] * len(lists[3])  # an all-trained example trains its EOS too
    rows = pack_rows(lists, 1, 2, T=8, seed=3)
    trained = pack_masks(masks, T=8, seed=3)
    assert trained.shape == rows.shape and trained.dtype == bool
    # tag each token with its (example, position): the mask must sit on the same token
    tags = pack_rows([[1000 * k + j for j in range(len(x))] for k, x in enumerate(lists)], -1, -2, T=8, seed=3)
    for tag, keep in zip(tags.ravel(), trained.ravel()):
        if tag >= 0:
            assert keep == masks[tag // 1000][tag % 1000]
        elif tag == -1:  # BOS is never a target
            assert not keep
    eos_of_3 = [(r, c) for r in range(len(tags)) for c in range(1, 9)
                if tags[r, c] == -2 and tags[r, c - 1] == 1000 * 3 + len(lists[3]) - 1]
    assert eos_of_3 and all(trained[r, c] for r, c in eos_of_3)
    assert not any(trained[r, c] for r in range(len(tags)) for c in range(1, 9)
                   if tags[r, c] == -2 and tags[r, c - 1] >= 0 and not all(masks[tags[r, c - 1] // 1000]))
    for step in range(6):
        x, y = batch_at(rows, step, 4, seed=3, trained=trained)
        x0, y0 = batch_at(rows, step, 4, seed=3)
        assert np.array_equal(x, x0) and np.all((y == y0) | (y == -1))
        assert (y == -1).any() and (y >= 0).any()
    for step in range(6):  # one row per batch: the inputs keep their ids when targets are masked
        x, y = batch_at(rows, step, 1, seed=3, trained=trained)
        assert x.min() >= 1 and np.array_equal(x, batch_at(rows, step, 1, seed=3)[0])
    # evaluation rows: the targets are exactly the trained tokens, each once
    ex, ey = eval_rows(lists, 1, 2, T=4, masks=masks)
    want = [t for x, m in zip(lists, masks) for t, k in zip([*x, 2], [*m, all(m)]) if k]
    assert list(ey[ey >= 0]) == want


def test_whole_packing_keeps_every_example_in_one_row():
    rng = np.random.default_rng(6)
    T = 32
    lists = [list(rng.integers(5, 50, rng.integers(1, T))) for _ in range(300)]  # each fits a row
    masks = [list(rng.random(len(x)) < 0.6) for x in lists]
    rows, trained = pack_whole(lists, masks, 1, 2, T, seed=3)
    assert rows.shape[1] == T + 1 and trained.shape == rows.shape
    again = pack_whole(lists, masks, 1, 2, T, seed=3)
    assert np.array_equal(rows, again[0]) and np.array_equal(trained, again[1])
    # read the rows back: each example appears exactly once, intact, its mask aligned
    seen = []
    for r, k in zip(rows, trained):
        i = 0
        while i < len(r) and r[i] == 1:  # BOS opens an example
            j = i + 1 + list(r[i + 1:]).index(2)  # its EOS
            seen.append((tuple(r[i + 1:j]), tuple(k[i + 1:j])))
            assert not k[i]
            i = j + 1
        assert i > 0 and np.all(r[i:] == 2) and not k[i:].any()  # the rest is padding, never trained
    assert sorted(seen) == sorted((tuple(x), tuple(m)) for x, m in zip(lists, masks))
    assert (rows == 2).sum() - len(lists) < 0.1 * rows.size  # first-fit leaves little padding
    # examples longer than a row are packed too (cut, as pack_rows does), after the whole ones
    long = [list(range(5, 5 + 3 * T))]
    r2, t2 = pack_whole(lists + long, masks + [[True] * len(long[0])], 1, 2, T, seed=3)
    assert len(r2) > len(rows) and t2.shape == r2.shape


def test_an_example_without_turns_trains_on_every_token():
    class Tok:
        def encode(self, text):
            return [ord(c) for c in text]
    ids, trained = encode_example(Tok(), {"text": "plain text"}, "assistant")
    assert ids == [ord(c) for c in "plain text"] and all(trained)
    with pytest.raises(ValueError, match="train_on"):
        encode_example(Tok(), {"text": "x"}, "users")


# --------------------------------------------------------------------------- tool-call evaluation

def test_request_values_are_what_the_call_copies_from_the_request():
    from codette_np.evaluate import request_values

    req = "Write the text 'draft sent to Maria' into notes/reminder.txt"
    assert request_values({"path": "notes/reminder.txt", "content": "draft sent to Maria"}, req) == \
        ["draft sent to Maria", "notes/reminder.txt"]
    # code around an expression: the expression; a word fragment is not a value
    assert request_values({"code": "print(58 * 60 + 19)"}, "Use Python to compute 58 * 60 + 19") == ["58 * 60 + 19"]
    assert request_values({"analysis_type": "summary"}, "Summarize these") == []
    assert request_values({"data": [3.2, 2.4]}, "the values 3.2, 2.4 and 7") == ["2.4", "3.2"]


def test_grounded_and_key_value():
    from codette_np.data import tools
    from codette_np.evaluate import is_grounded, key_value

    call = tools.format_call("write_file", {"path": "notes/reminder.txt", "content": "draft sent to Maria"})
    assert is_grounded(call, ["notes/reminder.txt", "draft sent to Maria"])
    memorized = tools.format_call("write_file", {"path": "notes/log.txt", "content": "buy stamps"})
    assert not is_grounded(memorized, ["notes/reminder.txt", "draft sent to Maria"])
    assert not is_grounded("not a call", [])
    result = tools.to_json({"content": "# garden-log\nRecords what was planted and when."})
    assert key_value(result, 'The file says "Records what was planted and when."') == \
        "Records what was planted and when."
    assert key_value(tools.to_json({"stdout": "2\n"}), "It prints 2.") == "2"
    assert key_value(tools.to_json({"x": "abc"}), "nothing quoted") is None


def test_tool_metrics_are_shares_per_tool_and_overall():
    from codette_np.evaluate import summarize_tool_rows

    rows = [{"tool": "a", "validity": True, "grounded": True, "exact": False, "answer_uses_result": None},
            {"tool": "a", "validity": True, "grounded": False, "exact": False, "answer_uses_result": True},
            {"tool": "b", "validity": False, "grounded": False, "exact": False, "answer_uses_result": False}]
    s = summarize_tool_rows(rows, skipped=2)
    assert s["overall"]["validity"] == 2 / 3 and s["overall"]["grounded"] == 1 / 3
    assert s["overall"]["answer_uses_result"] == 1 / 2  # over the cases with a key value
    assert s["per_tool"]["a"]["n"] == 2 and s["per_tool"]["b"]["validity"] == 0.0
    assert s["skipped_too_long"] == 2 and s["n"] == 3

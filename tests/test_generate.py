"""KV-cache generation against Model.forward, and sampling."""

import numpy as np

from codette_np import Model, ModelConfig
from codette_np.batches import batch_at, eval_rows, pack_rows
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

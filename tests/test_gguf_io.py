"""codette_np.gguf_io: starcoder2 GGUF files, chat templates and Modelfiles."""

import os
import re

import llama_ops
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

from codette_np import chat, gguf_io, quant
from codette_np.config import ModelConfig
from codette_np.params import param_layout

DTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")

CORPUS_WORDS = (
    "the model reads code and text def return class import numpy array tensor layer "
    "attention head token vocabulary codette answer question tool search result "
    "perspective reason honest small language trained scratch value error python "
    "function variable loop while for if else print string number list dict"
).split()


class SentencePieceTokenizer:
    """The interface gguf_io expects, over a trained sentencepiece model."""

    def __init__(self, model_file, add_space_prefix):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.add_space_prefix = add_space_prefix
        self.vocab_size = self.sp.get_piece_size()
        self.bos_id, self.eos_id, self.unk_id = self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()

    def pieces_scores_types(self):
        tokens, scores, types = [], [], []
        for i in range(self.vocab_size):
            piece = self.sp.id_to_piece(i)
            if self.sp.is_unknown(i):
                t = 2
            elif self.sp.is_control(i):
                t = 3
            elif self.sp.is_unused(i):
                t = 5
            elif self.sp.is_byte(i):
                t = 6
            elif piece in chat.MARKERS:
                t = 4
            else:
                t = 1
            tokens.append(piece)
            scores.append(self.sp.get_score(i))
            types.append(t)
        return tokens, scores, types


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("spm")
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(2000):
        words = rng.choice(CORPUS_WORDS, size=rng.integers(3, 12))
        lines.append(" ".join(words) + ("." if rng.random() < 0.5 else "  (x = 1)"))
    lines.append(chat.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]))
    (d / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(d / "corpus.txt"), model_prefix=str(d / "tok"), vocab_size=400,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, user_defined_symbols=list(chat.MARKERS),
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2, add_dummy_prefix=False, split_digits=True,
        allow_whitespace_only_pieces=True,
    )
    return SentencePieceTokenizer(d / "tok.model", add_space_prefix=False)


def make_cfg(tok, **kw):
    args = dict(vocab_size=tok.vocab_size, d_model=64, n_layer=2, n_head=4, context_length=128)
    args.update(kw)
    return ModelConfig(**args)


def make_params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_layout(cfg):
        if len(shape) == 2:
            a = rng.standard_normal(shape) * 0.05
        elif name.endswith("norm.weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = 0.02 * rng.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out


def field_value(reader, key):
    return reader.fields[key].contents()


def field_type(reader, key):
    return reader.fields[key].types[0]


# --------------------------------------------------------------------------- file contents

@pytest.mark.parametrize("dtype", DTYPES)
def test_keys_tensors_and_types(tmp_path, tokenizer, dtype):
    cfg = make_cfg(tokenizer)
    params = make_params(cfg)
    path = tmp_path / f"m-{dtype}.gguf"
    types = gguf_io.write_gguf(path, cfg, params, tokenizer, dtype=dtype,
                               provenance={"steps": 1200, "tokens_seen": 3_000_000, "val_loss": 2.25})
    assert sorted(os.listdir(tmp_path)) == [path.name]
    r = GGUFReader(path)

    u32 = GGUFValueType.UINT32
    expect = {
        "general.architecture": (GGUFValueType.STRING, "starcoder2"),
        "general.name": (GGUFValueType.STRING, "codette"),
        "general.file_type": (u32, quant.file_type(dtype)),
        "starcoder2.context_length": (u32, 128),
        "starcoder2.embedding_length": (u32, 64),
        "starcoder2.block_count": (u32, 2),
        "starcoder2.feed_forward_length": (u32, 256),
        "starcoder2.attention.head_count": (u32, 4),
        "starcoder2.attention.head_count_kv": (u32, 4),
        "starcoder2.rope.dimension_count": (u32, 16),
        "tokenizer.ggml.model": (GGUFValueType.STRING, "llama"),
        "tokenizer.ggml.bos_token_id": (u32, 1),
        "tokenizer.ggml.eos_token_id": (u32, 2),
        "tokenizer.ggml.unknown_token_id": (u32, 0),
        "tokenizer.ggml.add_bos_token": (GGUFValueType.BOOL, True),
        "tokenizer.ggml.add_eos_token": (GGUFValueType.BOOL, False),
        "tokenizer.ggml.add_space_prefix": (GGUFValueType.BOOL, False),
        "general.training.steps": (GGUFValueType.INT64, 1200),
        "general.training.tokens_seen": (GGUFValueType.INT64, 3_000_000),
        "general.training.val_loss": (GGUFValueType.FLOAT64, 2.25),
    }
    for key, (vtype, value) in expect.items():
        assert field_type(r, key) == vtype, key
        assert field_value(r, key) == value, key
    assert field_type(r, "starcoder2.attention.layer_norm_epsilon") == GGUFValueType.FLOAT32
    assert field_value(r, "starcoder2.attention.layer_norm_epsilon") == np.float32(1e-5)
    assert field_type(r, "starcoder2.rope.freq_base") == GGUFValueType.FLOAT32
    assert field_value(r, "starcoder2.rope.freq_base") == 10000.0

    tokens, scores, ttypes = tokenizer.pieces_scores_types()
    assert r.fields["tokenizer.ggml.tokens"].types == [GGUFValueType.ARRAY, GGUFValueType.STRING]
    assert r.fields["tokenizer.ggml.scores"].types == [GGUFValueType.ARRAY, GGUFValueType.FLOAT32]
    assert r.fields["tokenizer.ggml.token_type"].types == [GGUFValueType.ARRAY, GGUFValueType.INT32]
    assert field_value(r, "tokenizer.ggml.tokens") == tokens
    np.testing.assert_array_equal(np.float32(field_value(r, "tokenizer.ggml.scores")), np.float32(scores))
    end_id = tokens.index(chat.END)
    assert field_value(r, "tokenizer.ggml.eot_token_id") == end_id
    written_types = field_value(r, "tokenizer.ggml.token_type")
    marker_ids = {tokens.index(m) for m in chat.MARKERS}
    assert all(written_types[i] == 3 for i in marker_ids)  # CONTROL: never matched in user text
    assert [t for i, t in enumerate(written_types) if i not in marker_ids] == \
        [t for i, t in enumerate(ttypes) if i not in marker_ids]
    assert field_value(r, "tokenizer.chat_template") == gguf_io.chat_template()

    layout = param_layout(cfg)
    assert len(r.tensors) == len(layout) == 3 + 16 * cfg.n_layer
    assert [t.name for t in r.tensors] == [n for n, _ in layout]
    assert "output.weight" not in {t.name for t in r.tensors}
    for t, (name, shape) in zip(r.tensors, layout):
        assert tuple(reversed(t.shape.tolist())) == shape, name
        assert t.tensor_type == quant.ggml_type(types[name]), name
        if len(shape) == 1:
            assert t.tensor_type == GGMLQuantizationType.F32, name
        else:
            assert t.tensor_type == quant.ggml_type(dtype), name


def test_block_types_fall_back_to_f16(tmp_path, tokenizer):
    cfg = make_cfg(tokenizer, d_model=48, n_head=4)  # rows of 48 are not whole blocks
    params = make_params(cfg)
    for dtype in ("q8_0", "q4_0"):
        path = tmp_path / f"fb-{dtype}.gguf"
        types = gguf_io.write_gguf(path, cfg, params, tokenizer, dtype=dtype)
        assert types["token_embd.weight"] == "f16"
        assert types["blk.0.attn_q.weight"] == "f16"
        assert types["blk.0.ffn_up.weight"] == "f16"  # (192, 48)
        assert types["blk.0.ffn_down.weight"] == dtype  # (48, 192)
        assert types["blk.0.attn_q.bias"] == "f32"
        r = GGUFReader(path)
        got = {t.name: t.tensor_type for t in r.tensors}
        assert got == {n: quant.ggml_type(s) for n, s in types.items()}
        cfg2, p2, _, _ = gguf_io.read_gguf(path)
        assert cfg2 == cfg
        for n, st in types.items():
            want = quant.dequantize(quant.quantize(params[n], st), st, params[n].shape)
            np.testing.assert_array_equal(p2[n], want)


# --------------------------------------------------------------------------- round trips

def test_round_trip_f32_is_bit_exact(tmp_path, tokenizer):
    cfg = make_cfg(tokenizer, name="nano")
    params = make_params(cfg, seed=3)
    params["blk.1.attn_k.bias"][0] = -0.0
    params["blk.0.ffn_up.weight"][0, 0] = 3.4028235e38
    params["blk.0.ffn_up.weight"][0, 1] = 1e-45
    path = tmp_path / "exact.gguf"
    gguf_io.write_gguf(path, cfg, params, tokenizer, dtype="f32", name="exact-test",
                       provenance={"seed": 3, "data": {"source": "synthetic", "rows": 10},
                                   "lrs": [0.001, 0.0005], "tags": ["a", "b"], "ok": True,
                                   "step": np.int64(7), "loss": np.float32(1.5), "skip": None})
    cfg2, p2, tok, meta = gguf_io.read_gguf(path)
    assert cfg2 == cfg and cfg2.name == "nano"
    assert cfg2.norm_eps == 1e-5 and cfg2.rope_base == 10000.0
    assert list(p2) == [n for n, _ in param_layout(cfg)]
    for n, a in params.items():
        assert p2[n].dtype == np.float32 and p2[n].shape == a.shape
        assert p2[n].tobytes() == a.tobytes(), n

    tokens, scores, types = tokenizer.pieces_scores_types()
    assert tok["model"] == "llama"
    assert tok["tokens"] == tokens
    assert (tok["bos_id"], tok["eos_id"], tok["unk_id"]) == (1, 2, 0)
    assert tok["eot_id"] == tokens.index(chat.END)
    assert tok["add_bos"] is True and tok["add_eos"] is False and tok["add_space_prefix"] is False
    assert tok["chat_template"] == gguf_io.chat_template()
    assert len(tok["scores"]) == len(tok["token_types"]) == len(tokens)

    assert meta["general.name"] == "exact-test"
    assert meta["general.architecture"] == "starcoder2"
    assert meta["general.file_type"] == 0
    assert meta["general.training.seed"] == 3
    assert meta["general.training.data.source"] == "synthetic"
    assert meta["general.training.data.rows"] == 10
    assert meta["general.training.lrs"] == [0.001, 0.0005]
    assert meta["general.training.tags"] == ["a", "b"]
    assert meta["general.training.ok"] is True
    assert meta["general.training.step"] == 7
    assert meta["general.training.loss"] == 1.5
    assert meta["general.training.preset"] == "nano"
    assert "general.training.skip" not in meta
    assert not any(k.startswith("tokenizer.") for k in meta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_each_dtype(tmp_path, tokenizer, dtype):
    cfg = make_cfg(tokenizer)
    params = make_params(cfg, seed=1)
    path = tmp_path / "m.gguf"
    types = gguf_io.write_gguf(path, cfg, params, tokenizer, dtype=dtype)
    cfg2, p2, _, meta = gguf_io.read_gguf(path)
    assert cfg2 == cfg
    assert meta["general.file_type"] == quant.file_type(dtype)
    rel_tol = {"f32": 0.0, "f16": 2.0 ** -11, "bf16": 2.0 ** -8, "q8_0": 0.5 / 127 + 2.0 ** -11,
               "q4_0": 1 / 8 + 2.0 ** -11}[dtype]
    for n, a in params.items():
        st = types[n]
        # exactly what the encoder + decoder give ...
        want = quant.dequantize(quant.quantize(a, st), st, a.shape)
        np.testing.assert_array_equal(p2[n], want)
        # ... which is within the quantization error of the original
        if a.ndim == 1:
            assert p2[n].tobytes() == a.tobytes()
        else:
            blocks = np.abs(a).reshape(-1, 32).max(axis=1, keepdims=True)
            err = np.abs(p2[n] - a).reshape(-1, 32)
            tol = blocks * rel_tol if dtype in ("q8_0", "q4_0") else np.abs(a).reshape(-1, 32) * rel_tol
            assert np.all(err <= tol + 2.0 ** -25), n  # + half an fp16 subnormal step


def test_file_sizes(tmp_path, tokenizer, capsys):
    cfg = make_cfg(tokenizer, d_model=128, n_layer=2, n_head=4)
    params = make_params(cfg)
    n_params = sum(a.size for a in params.values())
    sizes = {}
    for dtype in DTYPES:
        path = tmp_path / f"{dtype}.gguf"
        gguf_io.write_gguf(path, cfg, params, tokenizer, dtype=dtype)
        sizes[dtype] = path.stat().st_size
    with capsys.disabled():
        print(f"\nGGUF sizes, {n_params} params (d_model 128, 2 layers, vocab {cfg.vocab_size}):")
        for dtype, s in sizes.items():
            print(f"  {dtype:5s} {s:9d} bytes  {s / sizes['f32']:.3f} of f32")
    assert sizes["f32"] > 4 * n_params
    assert sizes["f32"] > sizes["f16"] == sizes["bf16"] > sizes["q8_0"] > sizes["q4_0"]
    mats = sum(a.size for a in params.values() if a.ndim == 2)
    vecs = n_params - mats
    overhead = sizes["f32"] - 4 * n_params  # metadata, tokenizer, alignment
    for dtype, per in (("f16", 2.0), ("q8_0", 34 / 32), ("q4_0", 18 / 32)):
        expect = mats * per + vecs * 4 + overhead
        assert abs(sizes[dtype] - expect) < 32 * 3 * 16 * cfg.n_layer, dtype  # alignment slack


# --------------------------------------------------------------------------- failures

def test_failed_writes_leave_no_files(tmp_path, tokenizer, monkeypatch):
    cfg = make_cfg(tokenizer)
    good = make_params(cfg)
    target = tmp_path / "model.gguf"

    nan = dict(good)
    nan["blk.1.ffn_down.weight"] = good["blk.1.ffn_down.weight"].copy()
    nan["blk.1.ffn_down.weight"][3, 4] = np.nan
    with pytest.raises(ValueError, match=r"blk\.1\.ffn_down\.weight.*non-finite"):
        gguf_io.write_gguf(target, cfg, nan, tokenizer)
    assert os.listdir(tmp_path) == []

    missing = dict(good)
    del missing["blk.0.attn_v.bias"]
    with pytest.raises(ValueError, match=r"blk\.0\.attn_v\.bias"):
        gguf_io.write_gguf(target, cfg, missing, tokenizer)
    assert os.listdir(tmp_path) == []

    # A failure in the middle of writing tensors: no temporary left, and an
    # existing file at the target is untouched.
    gguf_io.write_gguf(target, cfg, good, tokenizer, dtype="f32")
    before = target.read_bytes()
    calls = []
    real = quant.quantize

    def failing(a, dtype):
        calls.append(dtype)
        if len(calls) == 10:
            raise RuntimeError("disk on fire")
        return real(a, dtype)

    monkeypatch.setattr(quant, "quantize", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        gguf_io.write_gguf(target, cfg, good, tokenizer, dtype="q8_0")
    assert os.listdir(tmp_path) == ["model.gguf"]
    assert target.read_bytes() == before


def test_bad_inputs(tmp_path, tokenizer):
    cfg = make_cfg(tokenizer)
    good = make_params(cfg)
    target = tmp_path / "bad.gguf"

    def fails(match, params=None, tok=tokenizer, **kw):
        with pytest.raises(ValueError, match=match):
            gguf_io.write_gguf(target, kw.pop("cfg", cfg), good if params is None else params, tok, **kw)
        assert os.listdir(tmp_path) == []

    fails("unknown storage dtype", dtype="q5_1")
    fails("output.weight", {**good, "output.weight": good["token_embd.weight"]})
    fails(r"blk\.0\.attn_q\.weight.*shape", {**good, "blk.0.attn_q.weight": np.zeros((64, 32), np.float32)})
    fails(r"blk\.0\.attn_q\.bias.*shape", {**good, "blk.0.attn_q.bias": np.zeros((1, 64), np.float32)})
    fails(r"output_norm\.bias.*dtype", {**good, "output_norm.bias": np.zeros(64, np.int32)})
    fails(r"token_embd\.weight.*non-finite", {**good, "token_embd.weight": np.full(good["token_embd.weight"].shape, np.inf)})
    fails(r"output_norm\.weight.*non-finite", {**good, "output_norm.weight": np.full(64, 1e300)})  # float64 overflow
    fails("vocab_size", cfg=cfg.replace(vocab_size=cfg.vocab_size + 1),
          params=make_params(cfg.replace(vocab_size=cfg.vocab_size + 1)))
    fails("name", name="")
    fails("provenance 'general.training.obj'", provenance={"obj": object()})
    fails("empty list", provenance={"lst": []})
    fails("different types", provenance={"lst": [1, "a"]})

    class NoMarkers(SentencePieceTokenizer):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)

        def pieces_scores_types(self):
            tokens, scores, types = super().pieces_scores_types()
            tokens = ["x" + t if t in chat.MARKERS else t for t in tokens]
            return tokens, scores, types

    fails("chat marker", tok=NoMarkers(tokenizer))

    class BadIds(NoMarkers):
        def pieces_scores_types(self):
            return SentencePieceTokenizer.pieces_scores_types(self)

    bad_ids = BadIds(tokenizer)
    bad_ids.eos_id = tokenizer.vocab_size
    fails("eos_id", tok=bad_ids)

    bad_prefix = BadIds(tokenizer)
    bad_prefix.add_space_prefix = "no"
    fails("add_space_prefix", tok=bad_prefix)

    # converted, not rejected: float64 and float16 inputs
    params64 = {n: a.astype(np.float64) for n, a in good.items()}
    gguf_io.write_gguf(target, cfg, params64, tokenizer, dtype="f32")
    _, p2, _, _ = gguf_io.read_gguf(target)
    assert all(p2[n].tobytes() == good[n].tobytes() for n in good)


def test_add_space_prefix_defaults_to_true(tmp_path, tokenizer):
    class Plain:  # the minimal interface: no add_space_prefix attribute
        vocab_size, bos_id, eos_id, unk_id = tokenizer.vocab_size, 1, 2, 0
        pieces_scores_types = staticmethod(tokenizer.pieces_scores_types)

    cfg = make_cfg(tokenizer)
    path = tmp_path / "p.gguf"
    gguf_io.write_gguf(path, cfg, make_params(cfg), Plain())
    assert field_value(GGUFReader(path), "tokenizer.ggml.add_space_prefix") is True
    assert gguf_io.read_gguf(path)[2]["add_space_prefix"] is True


def _write_raw(path, arch, tensors, keys=None):
    """A GGUF written with gguf-py directly (for reader error cases)."""
    w = GGUFWriter(path, arch)
    for k, v in (keys or {}).items():
        if isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_uint32(k, v)
    for name, (data, raw_dtype) in tensors.items():
        w.add_tensor(name, data, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_read_errors(tmp_path, tokenizer):
    cfg = make_cfg(tokenizer)
    params = make_params(cfg)
    good = tmp_path / "good.gguf"
    gguf_io.write_gguf(good, cfg, params, tokenizer, dtype="f32")

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ValueError, match="junk.gguf"):
        gguf_io.read_gguf(junk)

    with pytest.raises(ValueError, match="missing.gguf"):
        gguf_io.read_gguf(tmp_path / "missing.gguf")

    keys = {
        "starcoder2.context_length": 128, "starcoder2.embedding_length": 64,
        "starcoder2.block_count": 2, "starcoder2.feed_forward_length": 256,
        "starcoder2.attention.head_count": 4, "starcoder2.attention.layer_norm_epsilon": 1e-5,
    }
    emb = (params["token_embd.weight"], None)

    other = tmp_path / "llama.gguf"
    _write_raw(other, "llama", {"token_embd.weight": emb}, {k.replace("starcoder2", "llama"): v for k, v in keys.items()})
    with pytest.raises(ValueError, match=r"llama\.gguf.*architecture"):
        gguf_io.read_gguf(other)

    partial = tmp_path / "partial.gguf"
    _write_raw(partial, "starcoder2", {"token_embd.weight": emb}, keys)
    with pytest.raises(ValueError, match=r"partial\.gguf.*missing tensor 'blk\.0\.attn_norm\.weight'"):
        gguf_io.read_gguf(partial)

    nokey = tmp_path / "nokey.gguf"
    _write_raw(nokey, "starcoder2", {"token_embd.weight": emb},
               {k: v for k, v in keys.items() if "block_count" not in k})
    with pytest.raises(ValueError, match=r"nokey\.gguf.*starcoder2\.block_count"):
        gguf_io.read_gguf(nokey)

    # a complete model with one tensor in an unsupported type (Q5_0)
    from gguf import quants as ref

    full = {n: (params[n], None) for n, _ in param_layout(cfg)}
    full["blk.0.attn_q.weight"] = (ref.quantize(params["blk.0.attn_q.weight"], GGMLQuantizationType.Q5_0),
                                   GGMLQuantizationType.Q5_0)
    q5 = tmp_path / "q5.gguf"
    _write_raw(q5, "starcoder2", full, keys)
    with pytest.raises(ValueError, match=r"q5\.gguf.*blk\.0\.attn_q\.weight.*Q5_0"):
        gguf_io.read_gguf(q5)

    # an untied output matrix is not part of this architecture's layout here
    extra = {n: (params[n], None) for n, _ in param_layout(cfg)}
    extra["output.weight"] = emb
    ex = tmp_path / "extra.gguf"
    _write_raw(ex, "starcoder2", extra, keys)
    with pytest.raises(ValueError, match=r"extra\.gguf.*output\.weight"):
        gguf_io.read_gguf(ex)

    gqa = tmp_path / "gqa.gguf"
    _write_raw(gqa, "starcoder2", {n: (params[n], None) for n, _ in param_layout(cfg)},
               {**keys, "starcoder2.attention.head_count_kv": 2})
    with pytest.raises(ValueError, match=r"gqa\.gguf.*head_count_kv"):
        gguf_io.read_gguf(gqa)


# --------------------------------------------------------------------------- templates

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": chat.SYSTEM_PROMPT},
     {"role": "user", "content": "Hi!\nTwo lines, 'quotes' and \"double\" {{ braces }} {% x %}"},
     {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "s"},
     {"role": "user", "content": "search please"},
     {"role": "assistant", "content": '{"tool_use": {"name": "web_search", "params": {"query": "q"}}}'},
     {"role": "tool", "content": '{"results": ["a\\\\b"]}'},
     {"role": "assistant", "content": "The answer is a. ünïcödé ✓"}],
    [{"role": "user", "content": ""}],
]


def test_chat_template_matches_chat_render():
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(gguf_io.chat_template())
    for conv in CONVERSATIONS:
        for add_gen in (False, True):
            got = tmpl.render(messages=conv, add_generation_prompt=add_gen, raise_exception=raise_exception,
                              bos_token="<s>", eos_token="</s>")
            want = chat.generation_prompt(conv) if add_gen else chat.render(conv)
            assert got == want
    # the default environment (no trim options) renders the same
    plain = jinja2.Environment().from_string(gguf_io.chat_template())
    assert plain.render(messages=CONVERSATIONS[2], add_generation_prompt=True) == \
        chat.generation_prompt(CONVERSATIONS[2])
    with pytest.raises(jinja2.TemplateError, match="unknown role"):
        tmpl.render(messages=[{"role": "narrator", "content": "x"}], raise_exception=raise_exception)


def render_go_template(template, values):
    """Enough of Go's text/template for Ollama's legacy templates:
    {{ if .X }}...{{ end }} (not nested) and {{ .X }}."""
    def cond(m):
        return m.group(2) if values.get(m.group(1)) else ""

    out = re.sub(r"\{\{-? ?if \.(\w+) ?-?\}\}(.*?)\{\{-? ?end ?-?\}\}", cond, template, flags=re.S)
    assert "{{ if" not in out
    return re.sub(r"\{\{ ?\.(\w+) ?\}\}", lambda m: values.get(m.group(1), ""), out)


def test_ollama_template_matches_chat_format():
    t = gguf_io.ollama_template()
    sys_user = [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}]
    got = render_go_template(t, {"System": "S", "Prompt": "P", "Response": "R"})
    assert got == chat.render(sys_user + [{"role": "assistant", "content": "R"}])
    # the turn being generated: Ollama stops the template at .Response
    prefix = render_go_template(t.split("{{ .Response }}")[0], {"System": "S", "Prompt": "P"})
    assert prefix == chat.generation_prompt(sys_user)
    no_sys = render_go_template(t.split("{{ .Response }}")[0], {"Prompt": "P"})
    assert no_sys == chat.generation_prompt(sys_user[1:])


def test_write_modelfile(tmp_path, tokenizer):
    cfg = make_cfg(tokenizer, context_length=96)
    mf = tmp_path / "Modelfile"
    gguf_io.write_modelfile(mf, "codette-q8_0.gguf", cfg)
    text = mf.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "FROM ./codette-q8_0.gguf"
    assert f'TEMPLATE """{gguf_io.ollama_template()}"""' in text
    assert f'SYSTEM """{chat.SYSTEM_PROMPT}"""' in text
    assert 'PARAMETER stop "<|end|>"' in lines
    assert 'PARAMETER stop "<|user|>"' in lines
    assert "PARAMETER num_ctx 96" in lines
    params = {ln.split()[1]: ln.split(None, 2)[2] for ln in lines if ln.startswith("PARAMETER ")}
    assert float(params["temperature"]) == 0.7 and int(params["top_k"]) == 40
    assert float(params["top_p"]) == 0.9 and float(params["repeat_penalty"]) == 1.1
    assert os.listdir(tmp_path) == ["Modelfile"]

    gguf_io.write_modelfile(mf, tmp_path / "sub" / "m.gguf", cfg, system_prompt="Be brief.", temperature=0.2)
    text = mf.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "FROM ./sub/m.gguf"
    assert 'SYSTEM """Be brief."""' in text and "PARAMETER temperature 0.2" in text

    with pytest.raises(ValueError, match='"""'):
        gguf_io.write_modelfile(mf, "m.gguf", cfg, system_prompt='a """ b')
    with pytest.raises(ValueError, match="unknown Modelfile parameters"):
        gguf_io.write_modelfile(mf, "m.gguf", cfg, min_p=0.1)
    assert os.listdir(tmp_path) == ["Modelfile"]


# --------------------------------------------------------------------------- llama.cpp

LLAMA_TEXTS = [
    chat.generation_prompt([{"role": "user", "content": "the model reads code"}]),
    chat.render(CONVERSATIONS[2]),
    chat.render(CONVERSATIONS[1]),
    "  leading spaces, digits 12345 and\n\ttabs\n\n",
    "no marker at all",
    "<|user|>glued<|end|><|assistant|> spaced <|end|>",
    "emoji \U0001F600 and CJK \u4e2d\u6587 use byte fallback",
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_llama_cpp_loads_the_file(tmp_path, tokenizer, dtype):
    llama_ops.require()
    cfg = make_cfg(tokenizer)
    path = tmp_path / "m.gguf"
    gguf_io.write_gguf(path, cfg, make_params(cfg), tokenizer, dtype=dtype)
    got = llama_ops.run("load_tokenize_eval", path, LLAMA_TEXTS)  # in a child: a crash fails this test only
    assert got["n_vocab"] == cfg.vocab_size
    for text, ids in zip(LLAMA_TEXTS, got["ids"]):
        assert ids == [tokenizer.bos_id] + tokenizer.sp.encode(text), text
    logits = got["last_logits"]
    assert logits.shape == (cfg.vocab_size,) and np.isfinite(logits).all()
    assert got["eos"] == tokenizer.eos_id


def test_llama_cpp_python_chat_formatter_uses_the_template():
    pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    fmt = Jinja2ChatFormatter(gguf_io.chat_template(), eos_token="</s>", bos_token="<s>",
                              add_generation_prompt=True)
    for conv in CONVERSATIONS:
        assert fmt(messages=conv).prompt == chat.generation_prompt(conv)


# --------------------------------------------------------------------------- damaged files

def _written(tmp_path, tokenizer, dtype="f32"):
    cfg = make_cfg(tokenizer)
    path = tmp_path / f"m-{dtype}.gguf"
    gguf_io.write_gguf(path, cfg, make_params(cfg), tokenizer, dtype=dtype)
    return path, GGUFReader(path).tensors[0].data_offset


def test_the_file_carries_the_digest_of_its_tensor_data(tmp_path, tokenizer):
    import hashlib

    path, offset = _written(tmp_path, tokenizer)
    meta = gguf_io.read_gguf(path)[3]
    assert meta[gguf_io.DATA_SHA_KEY] == hashlib.sha256(path.read_bytes()[offset:]).hexdigest()


def test_flipped_bits_are_refused_with_the_documented_error(tmp_path, tokenizer):
    """A flipped bit in the tensor data always fails the checksum; one in the metadata is a
    ValueError naming the file, or (a flip in a free-text value) a file that still reads."""
    path, offset = _written(tmp_path, tokenizer, "q8_0")
    raw = path.read_bytes()
    rng = np.random.default_rng(7)
    bad = tmp_path / "bad.gguf"
    outcomes = {"refused": 0, "read": 0}
    for i in range(240):
        pos = int(rng.integers(0, offset)) if i % 2 else int(rng.integers(offset, len(raw)))
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(flipped))
        try:
            gguf_io.read_gguf(bad)
            outcomes["read"] += 1
            assert pos < offset, f"a flip in the tensor data at byte {pos} was not detected"
        except ValueError as e:
            assert str(e).startswith(str(bad)), e
            outcomes["refused"] += 1
    print(f"\n240 single-bit flips: {outcomes}")
    assert outcomes["refused"] >= 120  # every tensor-data flip, and most metadata flips


def test_a_non_finite_weight_is_refused(tmp_path, tokenizer):
    path, offset = _written(tmp_path, tokenizer)
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 4] = np.array([np.inf], np.float32).tobytes()  # the first weight of the first tensor
    key = gguf_io.DATA_SHA_KEY.encode()
    at = raw.find(key) + len(key) + 12
    raw[at:at + 64] = b"0" * 64
    path.write_bytes(bytes(raw))
    gguf_io._patch_data_digest(str(path))  # a consistent digest: only the value is wrong
    _, params, _, _ = gguf_io.read_gguf(path)  # tensors are read when asked for, one at a time
    with pytest.raises(ValueError, match="non-finite"):
        params["token_embd.weight"]
    from codette_np.export import load_gguf_model
    with pytest.raises(ValueError, match=f"{path}.*non-finite"):
        load_gguf_model(path)

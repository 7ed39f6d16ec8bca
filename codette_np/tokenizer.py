"""SentencePiece BPE tokenizer: training, caching, and the piece table that
the GGUF export needs.

Settings: BPE with byte fallback (any UTF-8 text encodes, unknown
characters become <0xXX> byte pieces), identity normalisation, whitespace
kept as is, digits split, ids unk=0, bos=1, eos=2, no pad, and the five chat
markers (chat.MARKERS) as user-defined pieces, so each is a single id.

The newline is a user-defined piece too, so it never merges with what
follows. Otherwise BPE learns pieces like '\n{"' and a prompt that ends in
'<|assistant|>\n' tokenizes differently from the same text inside a
training example: the model would see a token sequence at generation time
that training never showed it.

No dummy prefix by default. llama.cpp's SPM ("llama") tokenizer, when
`tokenizer.ggml.add_space_prefix` is true, inserts a space before the first
text fragment *and after every special or user-defined token*; SentencePiece
adds one only at the very start. With the chat markers as user-defined
tokens those two disagree after every marker, so we train without the
prefix and the GGUF must say `tokenizer.ggml.add_space_prefix = false`
(`Tokenizer.add_space_prefix` reads the setting back from the model). Then
SentencePiece and llama.cpp split text identically. `add_dummy_prefix=True`
can still be requested.

Round trip: decode(encode(text)) == text for any str without lone
surrogates, except that U+2581 (▁), SentencePiece's own space symbol,
decodes as a space (the same holds in llama.cpp).

A corpus too small for the requested vocabulary is an error
(TokenizerError saying the largest size it supports), never a silent
shrink, so the model's vocab_size always equals the requested one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
from pathlib import Path

import sentencepiece as spm

from codette_np import chat

# GGUF token types (the same codes as SentencePiece's piece types)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

MODEL_BPE = 2  # TrainerSpec.ModelType.BPE

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
CACHE_FORMAT = 2  # bump to invalidate cached models when settings change meaning


class TokenizerError(ValueError):
    """Bad tokenizer input, training failure, or an unreadable model."""


class VocabTooLarge(TokenizerError):
    """The corpus supports fewer pieces than requested; `supported` says how many."""

    def __init__(self, msg: str, supported: int):
        super().__init__(msg)
        self.supported = supported


def trainer_settings(vocab_size: int, add_dummy_prefix: bool = False) -> dict:
    """The SentencePiece trainer options (all of them, for the cache key)."""
    return dict(
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=add_dummy_prefix, split_digits=True, allow_whitespace_only_pieces=True,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1,
        user_defined_symbols=[*chat.MARKERS, "\n"], character_coverage=1.0,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=2, minloglevel=2,
    )


def _check_corpus(corpus) -> list[str]:
    if isinstance(corpus, (str, bytes)):
        raise TokenizerError("corpus must be a list of strings, not a single string")
    try:
        texts = list(corpus)
    except TypeError:
        raise TokenizerError(f"corpus must be an iterable of strings, got {type(corpus).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TokenizerError(f"corpus item {i} is {type(t).__name__}, expected str")
    if not any(t for t in texts):
        raise TokenizerError("corpus is empty: nothing to train a tokenizer on")
    return texts


def _check_vocab_size(vocab_size) -> int:
    minimum = 3 + len(chat.MARKERS) + 256 + 1
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise TokenizerError(
            f"vocab_size must be an int >= {minimum} (3 special + {len(chat.MARKERS)} markers + "
            f"256 byte pieces + at least one more), got {vocab_size!r}")
    return vocab_size


def train(corpus, vocab_size: int, add_dummy_prefix: bool = False) -> "Tokenizer":
    """Train a tokenizer on `corpus` (an iterable of strings)."""
    texts = [t for t in _check_corpus(corpus) if t]
    vocab_size = _check_vocab_size(vocab_size)
    longest = max(len(t.encode("utf-8")) for t in texts)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buf,
            max_sentence_length=max(4192, longest + 1),
            **trainer_settings(vocab_size, add_dummy_prefix))
    except RuntimeError as e:
        msg = str(e)
        m = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", msg)
        if m:
            raise VocabTooLarge(
                f"corpus too small for vocab_size={vocab_size}: it supports at most {m.group(2)} pieces; "
                f"use a smaller vocab size or more text", int(m.group(2))) from None
        raise TokenizerError(f"SentencePiece training failed: {msg}") from None
    return Tokenizer(buf.getvalue())


def corpus_key(texts: list[str], settings: dict) -> str:
    """sha256 over the settings and every text (length-prefixed)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "settings": settings}, sort_keys=True).encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


def cache_path(corpus, vocab_size: int, cache_dir, add_dummy_prefix: bool = False) -> Path:
    texts = [t for t in _check_corpus(corpus) if t]
    key = corpus_key(texts, trainer_settings(_check_vocab_size(vocab_size), add_dummy_prefix))
    return Path(cache_dir) / f"spm-v{vocab_size}-{key[:20]}.model"


def train_or_load(corpus, vocab_size: int, cache_dir, add_dummy_prefix: bool = False) -> "Tokenizer":
    """Load the cached model for this corpus and these settings, or train and
    cache it. A cached file that cannot be read is retrained."""
    texts = [t for t in _check_corpus(corpus) if t]
    path = cache_path(texts, vocab_size, cache_dir, add_dummy_prefix)
    if path.exists():
        try:
            return Tokenizer.load(path)
        except TokenizerError:
            pass
    tok = train(texts, vocab_size, add_dummy_prefix)
    tok.save(path)
    return tok


# ---------------------------------------------------------------------------
# a minimal SentencePiece ModelProto writer (a model from a piece table: GGUF import, plain text)

def _put_varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative ints as 64-bit two's complement (protobuf int32/int64)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _pb_int(field: int, value: int) -> bytes:
    return _put_varint(field << 3) + _put_varint(int(value))


def _pb_float(field: int, value: float) -> bytes:
    return _put_varint(field << 3 | 5) + struct.pack("<f", value)


def _pb_bytes(field: int, data: bytes) -> bytes:
    return _put_varint(field << 3 | 2) + _put_varint(len(data)) + data


def _pb_str(field: int, text: str) -> bytes:
    return _pb_bytes(field, text.encode("utf-8"))


def sentencepiece_model_proto(tokens, scores, types, unk_id: int, bos_id: int, eos_id: int,
                              add_dummy_prefix: bool) -> bytes:
    """A serialized SentencePiece ModelProto (BPE) that tokenizes like llama.cpp's "llama" tokenizer.

    Fields written: pieces (piece, score, type); TrainerSpec model_type BPE,
    vocab_size, byte_fallback (when all 256 <0xXX> byte pieces exist),
    unk/bos/eos ids and pieces, no pad; NormalizerSpec "identity" (no
    character map), add_dummy_prefix, remove_extra_whitespaces false,
    escape_whitespaces true. CONTROL pieces other than BOS/EOS (llama.cpp
    marks `<|end|>` CONTROL) become USER_DEFINED, so that, as in codette_np's
    own tokenizer, they are matched in text as single pieces.
    """
    n = len(tokens)
    if not (len(scores) == len(types) == n):
        raise ValueError(f"{n} tokens, {len(scores)} scores, {len(types)} types: these must agree")
    for key, i in (("unk", unk_id), ("bos", bos_id), ("eos", eos_id)):
        if not 0 <= int(i) < n:
            raise ValueError(f"{key} id {i} is not a token id")
    sp_types = []
    for i, t in enumerate(types):
        t = int(t)
        if t == CONTROL and i not in (bos_id, eos_id):
            t = USER_DEFINED
        elif not NORMAL <= t <= BYTE:
            t = NORMAL  # e.g. GGUF's UNDEFINED (0)
        sp_types.append(t)
    type_of = dict(zip(tokens, sp_types))
    byte_fallback = all(type_of.get(f"<0x{b:02X}>") == BYTE for b in range(256))

    pieces = b"".join(
        _pb_bytes(1, _pb_str(1, str(tok)) + _pb_float(2, float(score)) + _pb_int(3, t))
        for tok, score, t in zip(tokens, scores, sp_types))
    trainer = b"".join([
        _pb_int(3, MODEL_BPE), _pb_int(4, n), _pb_int(35, byte_fallback),
        _pb_int(40, unk_id), _pb_int(41, bos_id), _pb_int(42, eos_id), _pb_int(43, -1),
        _pb_str(45, str(tokens[unk_id])), _pb_str(46, str(tokens[bos_id])), _pb_str(47, str(tokens[eos_id])),
    ])
    normalizer = b"".join([
        _pb_str(1, "identity"), _pb_bytes(2, b""), _pb_int(3, bool(add_dummy_prefix)),
        _pb_int(4, False), _pb_int(5, True),
    ])
    return pieces + _pb_bytes(2, trainer) + _pb_bytes(3, normalizer)


# ---------------------------------------------------------------------------
# a minimal protobuf reader for the fields of ModelProto we need


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise TokenizerError("truncated model proto")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise TokenizerError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise TokenizerError("truncated model proto")
        yield field, wire, value


def _parse_model(proto: bytes) -> tuple[list[tuple[str, float, int]], bool]:
    """(pieces as (text, score, type), add_dummy_prefix) from a ModelProto."""
    pieces, add_dummy_prefix = [], True  # proto2 default of add_dummy_prefix
    for field, wire, value in _fields(proto):
        if field == 1 and wire == 2:  # repeated SentencePiece pieces
            text, score, kind = "", 0.0, NORMAL
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    text = v.decode("utf-8")
                elif f == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif f == 3 and w == 0:
                    kind = v
            pieces.append((text, score, kind))
        elif field == 3 and wire == 2:  # NormalizerSpec
            for f, w, v in _fields(value):
                if f == 3 and w == 0:
                    add_dummy_prefix = bool(v)
    return pieces, add_dummy_prefix


# ---------------------------------------------------------------------------


class Tokenizer:
    """A trained SentencePiece model."""

    def __init__(self, proto: bytes):
        proto = bytes(proto)
        sp = spm.SentencePieceProcessor()
        try:
            ok = sp.LoadFromSerializedProto(proto) if proto else False
        except Exception as e:  # sentencepiece raises RuntimeError or OSError
            raise TokenizerError(f"not a valid SentencePiece model: {e}") from None
        if not ok:
            raise TokenizerError("not a valid SentencePiece model")
        self._sp, self._proto = sp, proto
        self._plain = None  # the model that reads chat markers as text (encode_plain), built on first use
        self._pieces, self._add_dummy_prefix = _parse_model(proto)
        if len(self._pieces) != sp.get_piece_size():
            raise TokenizerError("model proto has an unexpected piece table")

    @classmethod
    def from_proto(cls, proto: bytes) -> "Tokenizer":
        return cls(proto)

    @classmethod
    def load(cls, path) -> "Tokenizer":
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise TokenizerError(f"{path}: cannot read tokenizer model: {e.strerror or e}") from None
        try:
            return cls(data)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}") from None

    def save(self, path) -> None:
        """Write the model atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._proto)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @property
    def model_proto(self) -> bytes:
        return self._proto

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def add_space_prefix(self) -> bool:
        """Whether a space is prepended to the text (GGUF add_space_prefix)."""
        return self._add_dummy_prefix

    @property
    def marker_ids(self) -> dict[str, int]:
        """Chat marker -> its single token id."""
        return {m: self._sp.piece_to_id(m) for m in chat.MARKERS}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS/EOS added. A chat marker in the text becomes its
        control token: use this for text the program writes, encode_plain for what users write."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects str, got {type(text).__name__}")
        return self._sp.encode(text, out_type=int)

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of user or tool text: a chat marker in it is read as ordinary characters,
        never as its token, so the text cannot close its own turn or open another. The same
        ids llama.cpp gives with special=False (the GGUF marks every marker CONTROL)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects str, got {type(text).__name__}")
        if not any(m in text for m in chat.MARKERS):
            return self._sp.encode(text, out_type=int)
        if self._plain is None:
            # the same pieces with the markers NORMAL: matched only if BPE merges reach them,
            # as in llama.cpp's SPM tokenizer
            tokens, scores, types = self.pieces_scores_types()
            markers = set(chat.MARKERS)
            types = [NORMAL if tok in markers else ty for tok, ty in zip(tokens, types)]
            proto = sentencepiece_model_proto(tokens, scores, types, self.unk_id, self.bos_id, self.eos_id,
                                              self.add_space_prefix)
            self._plain = spm.SentencePieceProcessor()
            self._plain.LoadFromSerializedProto(proto)
        ids = self._plain.encode(text, out_type=int)
        marker_ids = set(self.marker_ids.values())
        if any(i in marker_ids for i in ids):  # a BPE merge reached a marker: spell it in bytes
            ids = [b for i in ids for b in ([i] if i not in marker_ids else self._byte_ids(self.id_to_piece(i)))]
        return ids

    def _byte_ids(self, text: str) -> list[int]:
        return [self._sp.piece_to_id(f"<0x{b:02X}>") for b in text.encode("utf-8")]

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        """The ids of chat.render(messages) (and an open assistant turn), with every message's
        content encoded by encode_plain: the markers come only from the roles."""
        ids = []
        nl = self._sp.encode("\n", out_type=int)
        for m in messages:
            if m.get("role") not in chat.ROLE_MARKERS:
                raise TokenizerError(f"unknown role {m.get('role')!r}; roles are {chat.ROLES}")
            ids += [self.marker_ids[chat.ROLE_MARKERS[m["role"]]], *nl, *self.encode_plain(m["content"]),
                    self.marker_ids[chat.END], *nl]
        if add_generation_prompt:
            ids += [self.marker_ids[chat.ASSISTANT], *nl]
        return ids

    def encode_chat_trained(self, messages: list[dict], roles=("assistant",)) -> tuple[list[int], list[bool]]:
        """(ids, trained): the ids of encode_chat(messages) and, per id, whether training
        predicts it: the content and the end marker of each turn whose role is in `roles`."""
        ids, trained = [], []
        n_nl = len(self._sp.encode("\n", out_type=int))
        for m in messages:
            turn = self.encode_chat([m])  # [role marker, *nl, *content, END, *nl]
            n_content = len(turn) - 2 - 2 * n_nl
            keep = m["role"] in roles
            ids += turn
            trained += [False] * (1 + n_nl) + [keep] * (n_content + 1) + [False] * n_nl
        return ids, trained

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TokenizerError(f"token id {i!r} is not an int")
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise TokenizerError(f"token id {i} out of range 0..{self.vocab_size - 1}")
            out.append(i)
        return self._sp.decode(out)

    def id_to_piece(self, i: int) -> str:
        return self._pieces[i][0]

    def piece_to_id(self, piece: str) -> int:
        return self._sp.piece_to_id(piece)

    def with_reserved(self, vocab_size: int) -> "Tokenizer":
        """This tokenizer with ids [self.vocab_size, vocab_size) reserved: pieces "<unused{i}>" of
        type UNUSED, which no text encodes to (no merge of existing pieces spells them). A model
        then keeps its preset's vocabulary, and the GGUF lists every id, marked unused."""
        n = self.vocab_size
        if vocab_size <= n:
            return self
        tokens, scores, types = self.pieces_scores_types()
        k = vocab_size - n
        low = min(scores) if scores else 0.0
        proto = sentencepiece_model_proto(
            tokens + [f"<unused{i}>" for i in range(n, vocab_size)], scores + [low - 1.0] * k,
            types + [UNUSED] * k, self.unk_id, self.bos_id, self.eos_id, self.add_space_prefix)
        return Tokenizer(proto)

    @property
    def n_used(self) -> int:
        """Ids in use: those before the first reserved (UNUSED) piece at the end of the table."""
        n = len(self._pieces)
        while n and self._pieces[n - 1][2] == UNUSED:
            n -= 1
        return n

    def pieces_scores_types(self) -> tuple[list[str], list[float], list[int]]:
        """Piece texts, scores and GGUF token types (NORMAL 1, UNKNOWN 2,
        CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6), indexed by id."""
        return ([p[0] for p in self._pieces], [p[1] for p in self._pieces], [p[2] for p in self._pieces])

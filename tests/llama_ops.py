"""llama.cpp, run in a child process: a native crash fails one test, not the suite.

llama.cpp's CPU code can die with a signal (SIGILL from an instruction the
machine or the OS does not allow, as ggml's AMX path does on some Xeons), and
a signal in pytest's own process ends the whole run. So every test that makes
llama.cpp compute goes through `run(op, *args)`: it starts this file as a
fresh Python, which calls the op and pickles what it returns to a file. A
child killed by a signal fails the calling test with the signal's name.

Ops return plain data (lists, arrays, numbers); the asserts stay in the tests.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "install it with: python tests/install_llama_cpp.py (make install-test does)"


def require():
    """Skips the calling test when llama_cpp is not importable; fails it instead when CI is set."""
    import pytest

    reason = available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason + " (required when CI is set)")
        pytest.skip(reason)


@functools.lru_cache(maxsize=None)
def available() -> str | None:
    """None if llama_cpp imports in a child process, else the reason it does not."""
    r = subprocess.run([sys.executable, "-c", "import llama_cpp"], capture_output=True, text=True,
                       timeout=120)
    if r.returncode == 0:
        return None
    if r.returncode < 0:
        return f"importing llama_cpp died with {signal.Signals(-r.returncode).name}"
    return f"llama_cpp is not importable ({r.stderr.strip().splitlines()[-1:]}); {INSTALL_HINT}"


def run(op: str, *args, timeout: float = 300, **kwargs):
    """ops.op(*args, **kwargs) in a child process; raises ChildDied or ChildFailed."""
    with tempfile.TemporaryDirectory() as d:
        req, res = Path(d) / "request.pkl", Path(d) / "result.pkl"
        req.write_bytes(pickle.dumps((op, args, kwargs)))
        try:
            r = subprocess.run([sys.executable, str(Path(__file__)), str(req), str(res)],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"llama.cpp op {op!r} did not finish in {timeout:.0f} s") from None
        if r.returncode < 0:
            name = signal.Signals(-r.returncode).name
            raise ChildDied(f"llama.cpp died with {name} (signal {-r.returncode}) in op {op!r}; "
                            f"a build that uses instructions this machine or OS refuses (AMX on many "
                            f"Xeons) does this: reinstall with python tests/install_llama_cpp.py. "
                            f"stderr tail: {r.stderr[-800:]!r}", -r.returncode)
        if r.returncode != 0:
            raise ChildFailed(f"llama.cpp op {op!r} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
        return pickle.loads(res.read_bytes())


class ChildFailed(AssertionError):
    """The child process raised, or timed out."""


class ChildDied(AssertionError):
    """The child process was killed by a signal (`signum`)."""

    def __init__(self, msg: str, signum: int):
        super().__init__(msg)
        self.signum = signum


# --------------------------------------------------------------------------- the ops (run in the child)

def _open(path, **kw):
    """A llama.cpp context with float32 KV cache and logits for every position."""
    import llama_cpp

    args = dict(n_ctx=256, n_batch=256, logits_all=True, verbose=False, flash_attn=False,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    args.update(kw)
    return llama_cpp.Llama(model_path=str(path), **args)


def logits(path, prompts, **kw) -> list[np.ndarray]:
    """For each prompt (a list of ids): its (len, V) float64 logits from an empty context."""
    llm = _open(path, **kw)
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[:llm.n_tokens], dtype=np.float64))
    return out


def greedy(path, prompts, n, **kw) -> list[list[int]]:
    """For each prompt: the n ids llama.cpp picks greedily after it."""
    llm = _open(path, **kw)
    outs = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        new = []
        for _ in range(n):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            new.append(t)
            llm.eval([t])
        outs.append(new)
    return outs


def vocab(path, texts, end_marker) -> dict:
    """The vocabulary facts and, per text, tokenize(special=True/False) and detokenize of the latter."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    rows = []
    for text in texts:
        b = text.encode("utf-8")
        special = llm.tokenize(b, add_bos=True, special=True)
        plain = llm.tokenize(b, add_bos=True, special=False)
        rows.append({"special": special, "plain": plain, "detok": llm.detokenize(plain[1:])})
    end = llm.tokenize(end_marker.encode(), add_bos=False, special=True)
    return {"n_vocab": llm.n_vocab(), "bos": llm.token_bos(), "eos": llm.token_eos(), "rows": rows,
            "end": end,
            "end_is_eog": bool(end and llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model),
                                                                    end[0]))}


def load_tokenize_eval(path, texts) -> dict:
    """n_vocab, eos, the special tokenization of each text and the last logits of the first."""
    llm = _open(path, n_ctx=128, n_batch=128)
    ids = [llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in texts]
    llm.reset()
    llm.eval(ids[0])
    return {"n_vocab": llm.n_vocab(), "eos": llm.token_eos(), "ids": ids,
            "last_logits": np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)}


def _crash(signum):
    """For the tests of this module: die by a signal, as a native crash does."""
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    req, res = sys.argv[1], sys.argv[2]
    op, args, kwargs = pickle.loads(Path(req).read_bytes())
    result = globals()[op](*args, **kwargs)
    Path(res).write_bytes(pickle.dumps(result))

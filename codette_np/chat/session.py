"""A conversation with a trained model that executes its tool calls, confined.

    python -m codette_np.chat --checkpoint runs/tiny [--workspace DIR] [--allow-python]
    python -m codette_np.chat --checkpoint runs/tiny/codette-tiny-f16.gguf

Type a message and press Enter; an empty line, /quit, /exit or Ctrl-D ends
the chat. When the model answers with a `tool_use` call, the chat shows the
call, runs it (codette_np.chat.sandbox: file tools only inside the
workspace, Python only with --allow-python and then in a confined process,
the web, knowledge-base and API tools from the offline fact table), shows
the result, feeds it back as the tool turn and lets the model answer. A malformed or refused call is
shown as such and the conversation goes on. The workspace defaults to a new
temporary folder, printed at the start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from codette_np import chat
from codette_np.argtypes import Parser, positive_int
from codette_np.chat import sandbox
from codette_np.data import tools

MAX_TOOL_ROUNDS = 3  # tool calls in a row before the chat asks the user again


def load(path):
    """(model, tokenizer) from a checkpoint, a run directory or a .gguf file."""
    p = Path(path)
    if p.suffix == ".gguf":
        from codette_np.export import load_gguf_model

        model, tok, _ = load_gguf_model(p)
        if tok is None:
            raise ValueError(f"{p}: its tokenizer is not SentencePiece-style; the chat cannot use it")
        return model, tok
    from codette_np.checkpoint import load_model_and_tokenizer

    model, tok, _ = load_model_and_tokenizer(p)
    return model, tok


class Chat:
    """One conversation: the messages so far, and how to answer the next user message."""

    def __init__(self, model, tok, workspace: sandbox.Workspace, allow_python=False, max_new_tokens=200,
                 say=print):
        self.model, self.tok, self.ws = model, tok, workspace
        self.allow_python, self.max_new_tokens, self.say = allow_python, max_new_tokens, say
        self.messages = [{"role": "system", "content": chat.SYSTEM_PROMPT}]
        from codette_np.generate import Generator

        self.gen = Generator(model)
        self.stop = {tok.marker_ids[chat.END], tok.eos_id}

    def _complete(self) -> str:
        from codette_np.generate import generate

        while True:
            ids = [self.tok.bos_id] + self.tok.encode_chat(self.messages, add_generation_prompt=True)
            if len(ids) + 16 <= self.model.cfg.context_length or len(self.messages) <= 2:
                break
            dropped = self.messages.pop(1)  # the oldest turn after the system prompt
            self.say(f"[the conversation is longer than the context: dropped an old {dropped['role']} turn]")
        room = self.model.cfg.context_length - len(ids)
        if room <= 0:
            raise ValueError("the message is longer than the model's context; write a shorter one")
        new = generate(self.model, ids, min(self.max_new_tokens, room), self.stop, generator=self.gen)
        return self.tok.decode(new).strip()

    def reply(self, user_text: str) -> str:
        """The model's answer to one user message, running the tools it calls."""
        self.messages.append({"role": "user", "content": user_text})
        for _ in range(MAX_TOOL_ROUNDS + 1):
            text = self._complete()
            self.messages.append({"role": "assistant", "content": text})
            if not text.lstrip().startswith('{"tool_use"'):
                return text
            parsed = tools.parse_tool_call(text)
            if parsed is None:
                self.say(f"[malformed tool call, not run: {text[:200]}]")
                return text
            name, params = parsed
            self.say(f"[tool call] {sandbox.describe(name, params)}")
            try:
                result = sandbox.run_tool(name, params, self.ws, self.allow_python)
                note = " (offline fact table, no network)" if name in sandbox.OFFLINE_TOOLS else ""
                self.say(f"[tool result{note}] {tools.to_json(result)[:600]}")
            except sandbox.ToolRefused as e:
                result = {"error": str(e)}
                self.say(f"[tool refused] {e}")
            self.messages.append({"role": "tool", "content": tools.to_json(result)})
        self.say(f"[{MAX_TOOL_ROUNDS} tool calls in a row: your turn]")
        return text


def main(argv=None) -> int:
    ap = Parser(prog="python -m codette_np.chat", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True,
                    help="a .ckpt file, a run directory (best.ckpt, else last.ckpt) or an exported .gguf")
    ap.add_argument("--workspace", default=None,
                    help="the folder the file tools and Python may use (default: a new temporary folder)")
    ap.add_argument("--allow-python", action="store_true",
                    help="let the model run Python (confined: time, memory and file limits, no network, "
                         "only the workspace writable); off by default")
    ap.add_argument("--max-new-tokens", type=positive_int, default=200, help="longest answer (default 200)")
    a = ap.parse_args(argv)
    from codette_np.checkpoint import CheckpointError

    try:
        model, tok = load(a.checkpoint)
        root = Path(a.workspace) if a.workspace else Path(tempfile.mkdtemp(prefix="codette-workspace-"))
        root.mkdir(parents=True, exist_ok=True)
        ws = sandbox.Workspace(root)
    except (CheckpointError, ValueError, OSError, sandbox.ToolRefused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"codette chat: {model.n_params:,} parameters; workspace {ws.root}; Python "
          f"{'allowed (confined)' if a.allow_python else 'off'}. Empty line, /quit or Ctrl-D to end.", flush=True)
    session = Chat(model, tok, ws, a.allow_python, a.max_new_tokens, say=lambda m: print(m, flush=True))
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line.strip() or line.strip().lower() in ("/quit", "/exit"):
            return 0
        try:
            print(f"codette> {session.reply(line)}", flush=True)
        except ValueError as e:
            print(f"[{e}]", flush=True)
            session.messages.pop()  # the user message that did not fit
        except KeyboardInterrupt:
            print("\n[interrupted]", flush=True)
            return 130

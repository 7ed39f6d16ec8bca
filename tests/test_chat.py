"""The chat that executes tools: confinement against hostile calls, and the conversation loop."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codette_np.chat import sandbox as S
from codette_np.chat.session import Chat
from codette_np.data import tools


@pytest.fixture
def ws(tmp_path):
    """A workspace next to an 'outside' folder whose files must never change."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("precious")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "notes.txt").write_text("line one\nline two")
    os.symlink(tmp_path / "outside", tmp_path / "ws" / "link")
    yield S.Workspace(tmp_path / "ws")
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["keep.txt"]
    assert (tmp_path / "outside" / "keep.txt").read_text() == "precious"


HOSTILE_FILE_CALLS = [
    ("read_file", {"path": "../outside/keep.txt"}, "'..' is refused"),
    ("read_file", {"path": "/etc/passwd"}, "absolute paths are refused"),
    ("read_file", {"path": "link/keep.txt"}, "symbolic links are refused"),
    ("write_file", {"path": "../outside/keep.txt", "content": "x"}, "'..' is refused"),
    ("write_file", {"path": "link/new.txt", "content": "x"}, "symbolic links are refused"),
    ("write_file", {"path": "a/../../outside/x.txt", "content": "x"}, "'..' is refused"),
    ("write_file", {"path": "~/x.txt", "content": "x"}, "absolute paths are refused"),
    ("list_directory", {"path": "link"}, "symbolic links are refused"),
    ("list_directory", {"path": ".."}, "'..' is refused"),
    ("search_files", {"pattern": "precious", "directory": "/"}, "absolute paths are refused"),
]


@pytest.mark.parametrize("name, params, why", HOSTILE_FILE_CALLS, ids=[f"{n}:{p}" for n, p, _ in HOSTILE_FILE_CALLS])
def test_file_tools_stay_in_the_workspace(ws, name, params, why):
    with pytest.raises(S.ToolRefused, match=why.replace("(", r"\(")):
        S.run_tool(name, params, ws)


def test_file_tools_work_inside_the_workspace(ws):
    assert S.run_tool("read_file", {"path": "notes.txt"}, ws) == {"content": "line one\nline two"}
    assert S.run_tool("write_file", {"path": "new/dir/a.txt", "content": "héllo"}, ws)["bytes_written"] == 6
    assert (ws.root / "new" / "dir" / "a.txt").read_text() == "héllo"
    assert "notes.txt" in S.run_tool("list_directory", {"path": "."}, ws)["entries"]
    hits = S.run_tool("search_files", {"pattern": "two"}, ws)["matches"]
    assert hits == [{"path": "notes.txt", "line": 2, "text": "line two"}]  # the link is not followed


def _py(ws, code, **kw):
    return S.run_python(code, ws, **kw)


def test_python_is_off_unless_allowed(ws):
    with pytest.raises(S.ToolRefused, match="--allow-python"):
        S.run_tool("execute_python", {"code": "print(1)"}, ws)
    assert S.run_tool("execute_python", {"code": "print(6 * 7)"}, ws, allow_python=True) == {"stdout": "42"}


HOSTILE_PYTHON = [
    ("write-outside", "open({outside!r} + '/evil.txt', 'w').write('x')", "only the workspace is writable"),
    ("os-open-outside", "import os\nos.open({outside!r} + '/evil.txt', os.O_WRONLY | os.O_CREAT)",
     "only the workspace is writable"),
    ("delete", "import os\nos.remove({outside!r} + '/keep.txt')", "os.remove outside the workspace"),
    ("rmtree", "import shutil\nshutil.rmtree({outside!r})", "shutil.rmtree outside the workspace"),
    ("rename-out", "import os\nos.rename('notes.txt', {outside!r} + '/stolen.txt')", "os.rename outside"),
    ("os-system", "import os\nos.system('rm -rf ' + {outside!r})", "os.system is not allowed"),
    ("subprocess", "import subprocess\nsubprocess.run(['rm', '-rf', {outside!r}])", "subprocess.Popen is not allowed"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", "socket"),
    ("ctypes", "import ctypes", "import is not allowed"),
    ("allocate-10-GB", "x = bytearray(10 * 2**30)", "MemoryError"),
]


@pytest.mark.parametrize("case, code, why", HOSTILE_PYTHON, ids=[c for c, _, _ in HOSTILE_PYTHON])
def test_hostile_python_is_refused(ws, case, code, why):
    outside = str(ws.root.parent / "outside")
    res = _py(ws, code.format(outside=outside))
    assert why in res.get("error", ""), res


def test_a_loop_forever_is_killed(ws):
    with pytest.raises(S.ToolRefused, match="CPU"):
        _py(ws, "while True: pass", cpu_seconds=1, timeout=10)
    with pytest.raises(S.ToolRefused, match="time limit"):
        _py(ws, "import time\ntime.sleep(60)", timeout=1)


def test_python_writes_inside_the_workspace(ws):
    assert _py(ws, "open('out.txt', 'w').write('ok'); print(open('out.txt').read())") == {"stdout": "ok"}
    assert (ws.root / "out.txt").read_text() == "ok"


# --------------------------------------------------------------------------- the conversation loop

class Scripted(Chat):
    """A Chat whose model says the given lines, in order."""

    def __init__(self, ws, lines, **kw):
        self.model = self.tok = None
        self.ws, self.allow_python, self.say = ws, kw.get("allow_python", False), self.log.append
        self.messages = [{"role": "system", "content": "sys"}]
        self.lines = list(lines)

    log = []

    def _complete(self):
        return self.lines.pop(0)


def test_a_call_is_run_and_its_result_fed_back(ws):
    call = tools.format_call("read_file", {"path": "notes.txt"})
    c = Scripted(ws, [call, "It says line one."])
    assert c.reply("show notes.txt") == "It says line one."
    roles = [m["role"] for m in c.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert c.messages[3]["content"] == tools.to_json({"content": "line one\nline two"})


def test_refused_and_malformed_calls_are_shown_and_the_chat_goes_on(ws):
    c = Scripted(ws, [tools.format_call("read_file", {"path": "../outside/keep.txt"}), "I cannot read that.",
                      '{"tool_use": {"name": "read_file", "params": {"path": 3', "next answer"])
    Scripted.log.clear()
    assert c.reply("read the secret") == "I cannot read that."
    assert "'..' is refused" in c.messages[3]["content"]
    assert c.reply("again") .startswith('{"tool_use"')
    assert any("malformed tool call" in m for m in Scripted.log)
    assert any("[tool refused]" in m for m in Scripted.log)


def test_the_chat_command_runs_a_conversation(tmp_path):
    """The real command on a tiny trained run, with piped input: starts, answers, ends on /quit."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "codette_np.train", "--size", "nano", "--samples", "300",
                        "--vocab-size", "400", "--max-steps", "3", "--eval-tool-samples", "0",
                        "--seq-len", "384", "--batch-size", "2",
                        "--export-dtype", "f16", "--quiet", "--out", str(run)], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for ckpt in (run, next(run.glob("*.gguf"))):
        r = subprocess.run([sys.executable, "-m", "codette_np.chat", "--checkpoint", str(ckpt), "--workspace",
                            str(tmp_path / "ws"), "--max-new-tokens", "8"], cwd=root, env=env,
                           input="hello <|end|> there\n/quit\nnever read\n", capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "workspace" in r.stdout and "Traceback" not in r.stderr
        assert r.stdout.count("codette> ") == 1  # /quit ended the chat before the third line

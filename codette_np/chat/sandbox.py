"""Tools run for real, confined: what the chat executes when the model calls a tool.

- File tools (read_file, write_file, list_directory, search_files) work on a
  real folder, the workspace, and never outside it: an absolute path, a
  `..` component or a symbolic link anywhere on the path is refused with a
  message, and the resolved path is checked to lie inside the workspace.
- execute_python is off unless allowed. It runs in a separate Python
  process (isolated mode, the workspace as its working directory) with a
  CPU-time limit, a wall-clock limit, an address-space limit and a file-size
  limit; without network (a new network namespace where the OS grants one,
  and in every case an audit hook in the child that refuses sockets); with
  only the workspace writable (the same hook refuses writes, deletions and
  renames outside it); and with no way to start programs (the hook refuses
  subprocesses, exec, fork and ctypes).
- web_search, query_knowledge_base and api_call answer from the offline
  fact table (codette_np.data.tools.FACTS); the chat says so.
- analyze_data computes its statistics in process (no code is run).

Every refusal is a ToolRefused with a one-line reason; the chat shows it and
the conversation goes on.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from codette_np.data import tools

OFFLINE_TOOLS = ("web_search", "query_knowledge_base", "api_call")
FILE_TOOLS = ("read_file", "write_file", "list_directory", "search_files")
MAX_READ_BYTES = 1 << 20  # a file larger than this is not read into the conversation


class ToolRefused(RuntimeError):
    """A call the sandbox will not run, or that failed; the message says why."""


class Workspace:
    """The one folder the file tools and execute_python may write in."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ToolRefused(f"workspace {root} is not a directory")

    def path(self, rel: str, *, must_exist: bool = False) -> Path:
        """The real path of `rel` inside the workspace, or ToolRefused."""
        if not isinstance(rel, str) or not rel.strip():
            raise ToolRefused("empty path")
        if "\x00" in rel:
            raise ToolRefused("a path cannot hold a NUL character")
        if rel.startswith(("/", "\\", "~")) or (len(rel) > 1 and rel[1] == ":"):
            raise ToolRefused(f"absolute paths are refused ({rel!r}); give a path inside the workspace")
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ToolRefused(f"'..' is refused ({rel!r}): paths stay inside the workspace")
        p = self.root
        for part in parts:
            p = p / part
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                break  # what follows does not exist yet: nothing there can be a link
            if stat.S_ISLNK(st.st_mode):
                raise ToolRefused(f"symbolic links are refused ({rel!r} goes through one)")
        full = self.root.joinpath(*parts)
        real = Path(os.path.realpath(full))
        if real != self.root and self.root not in real.parents:
            raise ToolRefused(f"{rel!r} lies outside the workspace")
        if must_exist and not full.exists():
            raise ToolRefused(f"no such file or directory: {rel}")
        return full

    def files(self, base: Path) -> dict[str, str]:
        """Text files below `base` (no links followed), as workspace-relative path -> content."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                f = Path(dirpath) / name
                if f.is_symlink() or not f.is_file() or f.stat().st_size > MAX_READ_BYTES:
                    continue
                try:
                    out[f.relative_to(self.root).as_posix()] = f.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
        return out


def run_file_tool(ws: Workspace, name: str, params: dict) -> dict:
    if name == "read_file":
        p = ws.path(params["path"], must_exist=True)
        if not p.is_file() or p.stat().st_size > MAX_READ_BYTES:
            raise ToolRefused(f"{params['path']} is not a readable text file (or is over 1 MiB)")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ToolRefused(f"{params['path']} is not UTF-8 text") from None
        rel = p.relative_to(ws.root).as_posix()
        return tools.read_file({rel: text}, rel, params.get("start_line"), params.get("end_line"))
    if name == "write_file":
        p = ws.path(params["path"])
        if p.exists() and not p.is_file():
            raise ToolRefused(f"{params['path']} is a directory")
        p.parent.mkdir(parents=True, exist_ok=True)
        ws.path(params["path"])  # again: no link may have appeared on the way
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if params.get("append") else os.O_TRUNC)
        fd = os.open(p, flags, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(params["content"])
        return {"ok": True, "bytes_written": len(params["content"].encode("utf-8"))}
    base = ws.path(params.get("path") or params.get("directory") or ".", must_exist=True)
    if not base.is_dir():
        raise ToolRefused(f"{base.relative_to(ws.root).as_posix() or '.'} is not a directory")
    files = ws.files(base)
    rel = base.relative_to(ws.root).as_posix()
    rel = "" if rel == "." else rel
    if name == "list_directory":
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir() if not p.is_symlink()) \
            if not params.get("recursive") else tools.list_directory(files, rel, True).get("entries", [])
        return {"entries": entries}
    return tools.search_files(files, params["pattern"], rel or ".")


# --------------------------------------------------------------------------- execute_python

# Runs first in the child: limits the process from inside, then executes the snippet.
_CHILD = r'''
import sys, os, resource
WS = os.path.realpath(sys.argv[1])
cpu, mem, fsize = (int(a) for a in sys.argv[2:5])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
try:  # a new, empty network namespace where the OS grants one (root, or user namespaces)
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        libc.unshare(0x10000000 | 0x40000000)  # CLONE_NEWUSER | CLONE_NEWNET
    del ctypes, libc
except Exception:
    pass  # not granted: the audit hook below still refuses sockets
for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
    del sys.modules[name]  # so that the snippet's own import of ctypes meets the hook
def inside(p):
    try:
        p = os.path.realpath(os.fsdecode(p) if not isinstance(p, int) else WS)
    except Exception:
        return False
    return p == WS or p.startswith(WS + os.sep)
BLOCK = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
         "os.forkpty", "ctypes.", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn", "winreg.")
WRITE_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.rename": (0, 1), "os.replace": (0, 1), "os.mkdir": 0,
                "os.chmod": 0, "os.chown": 0, "os.truncate": 0, "os.symlink": (0, 1), "os.link": (0, 1),
                "shutil.rmtree": 0, "shutil.copyfile": 1, "shutil.move": (0, 1), "os.utime": 0}
def hook(event, args):
    if event.startswith(BLOCK) or (event == "import" and args and str(args[0]).split(".")[0] in ("ctypes", "_ctypes")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and len(args) >= 2:
        path, mode = args[0], args[1] if args[1] is not None else "r"
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = any(c in str(mode) for c in "wax+") or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
        if writes and not isinstance(path, int) and not inside(path):
            raise PermissionError(f"sandbox: only the workspace is writable, not {path}")
    if event in WRITE_EVENTS:
        idx = WRITE_EVENTS[event]
        for i in (idx if isinstance(idx, tuple) else (idx,)):
            if i < len(args) and not inside(args[i]):
                raise PermissionError(f"sandbox: {event} outside the workspace is not allowed")
code = sys.stdin.read()
sys.addaudithook(hook)
del hook
exec(compile(code, "<tool call>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
'''


def run_python(code: str, workspace: Workspace, timeout: float = 10.0, cpu_seconds: int = 5,
               memory_bytes: int = 1 << 30, file_bytes: int = 16 << 20) -> dict:
    """Run `code` in a confined child process; {"stdout": ...} (and "stderr" when it failed)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(workspace.root),
           "TMPDIR": str(workspace.root)}
    try:
        p = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CHILD, str(workspace.root), str(cpu_seconds),
                              str(memory_bytes), str(file_bytes)], cwd=workspace.root, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, text=True)  # its own group: killed whole on timeout
    except OSError as e:
        raise ToolRefused(f"cannot start Python: {e}") from None
    try:
        out, err = p.communicate(code, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise ToolRefused(f"execute_python was stopped after {timeout:.0f} s (time limit)") from None
    if p.returncode < 0:
        sig = signal.Signals(-p.returncode).name
        why = {"SIGXCPU": f"it used more than {cpu_seconds} s of CPU", "SIGKILL": "it was killed",
               "SIGXFSZ": f"it wrote a file over {file_bytes >> 20} MiB"}.get(sig, f"it died with {sig}")
        raise ToolRefused(f"execute_python was stopped: {why}")
    result = {"stdout": out[-4000:].removesuffix("\n")}
    if p.returncode != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit code {p.returncode}"
        if "MemoryError" in last:
            last += f" (the memory limit is {memory_bytes >> 20} MiB)"
        result["error"] = last[-500:]
    return result


# --------------------------------------------------------------------------- dispatch

def run_tool(name: str, params: dict, workspace: Workspace, allow_python: bool = False) -> dict:
    """Run one schema-valid call; ToolRefused with a one-line reason when it will not run."""
    errors = tools.validate_params(name, params)
    if errors:
        raise ToolRefused("invalid call: " + "; ".join(errors))
    if name in FILE_TOOLS:
        try:
            return run_file_tool(workspace, name, params)
        except OSError as e:
            raise ToolRefused(f"{name} failed: {e.strerror or e}") from None
    if name == "execute_python":
        if not allow_python:
            raise ToolRefused("execute_python is off in this chat (start it with --allow-python)")
        return run_python(params["code"], workspace)
    try:
        return tools.execute(name, params)
    except tools.ToolError as e:
        raise ToolRefused(f"{name} failed: {e}") from None


def describe(name: str, params: dict) -> str:
    return f"{name}({', '.join(f'{k}={json.dumps(v, ensure_ascii=False)}' for k, v in params.items())})"

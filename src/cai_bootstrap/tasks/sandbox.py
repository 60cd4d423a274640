"""Run untrusted, model-generated Python in a confined subprocess.

Used by the ``code_generation`` verifier: the generated function is called on
each test's arguments *inside* the sandbox; the expected results never enter
it, and the parent compares what comes back. Code that wants to pass therefore
has to compute the right answers: printing "all tests passed" or forging the
result channel does not help.

One call = one fresh ``python -I -S`` process (isolated mode: no user site,
``PYTHON*`` variables ignored; no ``site``), started with a stripped environment
in a new session, stdin = the job as JSON, stdout/stderr = files that the
parent reads back at most ``max_output`` bytes of. A trusted launcher
(`LAUNCHER`, run before any untrusted code) then, in this order:

1. moves into a fresh **network namespace** (``unshare(CLONE_NEWNET)`` via libc;
   as non-root it tries a user namespace too); inside it only a downed loopback
   exists, so nothing - not even 127.0.0.1 - can be reached;
2. sets **rlimits**: address space (``RLIMIT_AS``), CPU seconds (``RLIMIT_CPU``),
   open files (``RLIMIT_NOFILE``), file size (``RLIMIT_FSIZE``, which also caps
   stdout/stderr, both being files; ``SIGXFSZ`` is ignored so writes fail with
   ``EFBIG`` instead), processes (``RLIMIT_NPROC``), no core dumps;
3. pre-imports a fixed list of pure stdlib modules (`PRELOAD`) and then, when
   running as root, **drops privileges** to ``nobody`` (uid/gid 65534, no
   supplementary groups) so the kernel refuses writes anywhere but world-writable
   places and the private temp dir (owned by ``nobody``), reading root-only files,
   and (``RLIMIT_NPROC`` = 1 now counts) any fork;
4. ``chdir``s into a private temp dir and installs a **PEP 578 audit hook**
   (which Python code cannot remove) that refuses: process creation
   (fork/exec/spawn/system/``subprocess``), sockets, signals to other processes,
   imports of ``ctypes``/``socket``/``ssl``/``subprocess``/``multiprocessing``
   and similar, any file write/delete/rename/chmod outside the temp dir, and
   reads outside the temp dir and the Python installation;
5. executes the code, calls the entry point on each test's arguments, and
   writes one JSON line per test to a dedicated result file (an inherited
   descriptor; user code can write there too, but cannot know the expected values).

The parent kills the whole process group on the wall-clock timeout.

Layers overlap on purpose: with the audit hook off (``Limits(audit_hook=False)``,
used by the tests), the kernel still refuses network (namespace), fork (NPROC
after the uid drop) and writes to system files (uid); only world-writable places
such as ``/tmp`` and ``/dev/shm`` are then writable, and the hook refuses those.

What is **not** blocked (see `SandboxResult.isolation` for what a run got):
reading world-readable files inside the Python installation; CPU burn up to the
CPU/wall limits; memory up to ``RLIMIT_AS``; crashing its own interpreter.
Without root and without user namespaces there is no network namespace and no
uid drop: network, fork and writes outside the temp dir are then refused by the
audit hook alone, a Python-level layer that native code could bypass (importing
``ctypes`` or other native escape hatches is refused, but by the same hook).
There is no mount namespace or seccomp filter. Linux only: elsewhere the
namespace step fails and is reported, the rest still applies where supported.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

#: Standard-library modules imported before privileges drop (afterwards the
#: Python installation may not be readable any more, e.g. under /root).
PRELOAD: tuple[str, ...] = (
    "abc", "array", "bisect", "calendar", "collections", "collections.abc", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "functools", "heapq", "itertools", "json", "math",
    "numbers", "operator", "random", "re", "statistics", "string", "textwrap", "typing", "unicodedata",
)
#: Imports refused inside the sandbox (top-level package names).
DENIED_IMPORTS: tuple[str, ...] = (
    "ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl", "select", "selectors", "asyncio",
    "subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "concurrent", "threading",
    "_thread", "signal", "pty", "fcntl", "mmap", "resource", "urllib", "http", "ftplib", "smtplib",
    "telnetlib", "socketserver", "xmlrpc", "webbrowser", "shutil", "tempfile", "importlib", "zipimport",
    "gc", "cffi", "_xxsubinterpreters", "_posixshmem",
)
NOBODY = 65534
#: Audit events refused whatever their arguments.
BLOCKED_EVENTS: frozenset[str] = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile",
    "os.kill", "os.killpg", "os.chroot", "os.setuid", "os.setgid", "os.putenv", "os.unsetenv",
    "subprocess.Popen", "pty.spawn", "sys.addaudithook", "sys.remote_exec", "sys.setprofile", "sys.settrace",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "socket.sendmsg", "socket.socketpair",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
})
#: Audit events refused when a path argument lies outside the sandbox directory.
PATH_EVENTS: frozenset[str] = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
    "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod", "os.setxattr",
    "os.removexattr", "shutil.rmtree", "shutil.move", "shutil.copyfile",
})


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512
    max_output: int = 64_000
    max_files: int = 32
    max_file_mb: int = 1
    #: Processes the sandbox user may have (1 = no fork; only counts after the uid drop).
    max_procs: int = 1
    #: Install the audit hook. Only the tests turn it off, to show that the kernel-side
    #: layers (network namespace, uid drop, rlimits) hold on their own.
    audit_hook: bool = True
    #: More modules to import before privileges drop (tests use it to reach ``socket``).
    preload: tuple[str, ...] = ()


@dataclass
class CaseResult:
    ok: bool
    got: Any = None
    error: str = ""


@dataclass
class SandboxResult:
    """What came back from one run (the parent's view; nothing trusted from the child but data)."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    #: One entry per requested call, in order (missing calls count as failed).
    cases: list[CaseResult] = field(default_factory=list)
    #: What the launcher managed to set up: netns, uid_dropped, rlimits, audit_hook.
    isolation: dict[str, Any] = field(default_factory=dict)
    #: Error raised while executing the code itself (before any call), if any.
    load_error: str = ""
    seconds: float = 0.0

    @property
    def killed_by(self) -> int | None:
        """The signal that ended the process (9 = killed: timeout or CPU hard limit, 24 = CPU limit)."""
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None

    @property
    def passed(self) -> int:
        return sum(c.ok for c in self.cases)

    @property
    def all_passed(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)


# --------------------------------------------------------------------------- launcher (child side)

LAUNCHER = r'''
import sys, os, json
job = json.loads(sys.stdin.read())
_out = os.fdopen(job["result_fd"], "w", buffering=1)
iso = {"netns": False, "uid_dropped": False, "rlimits": False, "audit_hook": False}
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) == 0:          # CLONE_NEWNET
        iso["netns"] = True
    elif os.geteuid() != 0 and libc.unshare(0x10000000 | 0x40000000) == 0:  # + CLONE_NEWUSER
        iso["netns"] = True
    del libc, ctypes
except Exception as exc:
    iso["netns_error"] = repr(exc)
for _m in job["preload"]:
    try:
        __import__(_m)
    except Exception:
        pass
try:
    import resource, signal
    L = job["limits"]
    mb = 1024 * 1024
    for name, soft, hard in (
        ("RLIMIT_AS", L["memory_mb"] * mb, L["memory_mb"] * mb),
        ("RLIMIT_CPU", L["cpu_s"], L["cpu_s"] + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
        ("RLIMIT_NOFILE", L["max_files"], L["max_files"]),
        ("RLIMIT_FSIZE", L["max_file_mb"] * mb, L["max_file_mb"] * mb),
        ("RLIMIT_NPROC", L["max_procs"], L["max_procs"]),
        ("RLIMIT_CORE", 0, 0),
    ):
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (soft, hard))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    iso["rlimits"] = True
except Exception as exc:
    iso["rlimits_error"] = repr(exc)
os.chdir(job["workdir"])
if os.geteuid() == 0:
    try:
        os.setgroups([])
        os.setgid(job["nobody"])
        os.setuid(job["nobody"])
        iso["uid_dropped"] = os.geteuid() != 0 and os.getuid() != 0
    except Exception as exc:
        iso["uid_error"] = repr(exc)
# Modules whose re-import the hook must see (so it can refuse it).
_gone = set(job["denied_imports"]) | {"resource", "signal", "_signal", "gc"} if job["limits"]["audit_hook"] else set()
for _m in [m for m in sys.modules if m.split(".")[0] in _gone]:
    del sys.modules[_m]


def _make_hook(workdir, readable, denied, block_always, path_events, getcwd, type_, str_, bytes_, int_, len_,
               PE, tuple_):
    # Everything the hook uses is a local or a closure cell: user code cannot
    # reach it through module globals or builtins (see the module docstring).
    def norm(path):
        t = type_(path)
        if t is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        elif t is not str_:
            return None                  # PathLike & co: refused (could change between checks)
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "" or part == ".":
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return "/" + "/".join(parts)

    def inside(path, roots):
        if type_(path) is int_:
            return True
        p = norm(path)
        if p is None:
            return False
        for r in roots:
            if p == r or p.startswith(r + "/"):
                return True
        return False

    def hook(event, args):
        if event in block_always or event.startswith(("socket.", "ctypes.", "winreg.", "_winapi.")):
            raise PE("sandbox: " + event + " is not allowed")
        if event == "import":
            name = args[0]
            if type_(name) is not str_ or name.split(".")[0] in denied:
                raise PE("sandbox: import of " + str_(name) + " is not allowed")
        elif event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writing = ((flags or 0) & 3) != 0
            if type_(mode) is str_:
                for c in "wax+":
                    if c in mode:
                        writing = True
            if path is not None and not inside(path, (workdir,) if writing else readable):
                raise PE("sandbox: open of " + str_(path) + " is not allowed")
        elif event in path_events:
            for a in args[:2]:
                if a is not None and type_(a) is not int_ and not inside(a, (workdir,)):
                    raise PE("sandbox: " + event + " outside the sandbox directory")
        elif event == "os.chdir":
            if not inside(args[0], (workdir,)):
                raise PE("sandbox: chdir outside the sandbox directory")
        elif event == "os.listdir" or event == "os.scandir":
            if len_(args) and args[0] is not None and not inside(args[0], readable):
                raise PE("sandbox: listing " + str_(args[0]) + " is not allowed")

    return hook


_wd = os.path.realpath(job["workdir"])
if job["limits"]["audit_hook"]:
    sys.addaudithook(_make_hook(
        _wd, tuple(os.path.realpath(p) for p in job["readable"]) + (_wd,), frozenset(job["denied_imports"]),
        frozenset(job["block_events"]), frozenset(job["path_events"]), os.getcwd, type, str, bytes, int, len,
        PermissionError, tuple,
    ))
    iso["audit_hook"] = True
del _make_hook
def _harness(job, write, dumps, repr_, deepcopy, type_, str_, enumerate_, compile_, exec_, BaseException_, builtins_):
    # Locals only: user code that clears module globals or patches builtins cannot break the reporting.
    write(dumps({"isolation": iso}) + "\n")
    ns = {"__name__": "__sandbox__", "__builtins__": builtins_}
    try:
        exec_(compile_(job["code"], "<generated>", "exec"), ns)
    except BaseException_ as exc:
        write(dumps({"load_error": type_(exc).__name__ + ": " + str_(exc)[:500]}) + "\n")
        return
    for i, (entry, args) in enumerate_(job["calls"]):
        try:
            value = ns[entry](*deepcopy(args))
            try:
                line = dumps({"case": i, "result": {"value": value}})
            except BaseException_:
                line = dumps({"case": i, "result": {"value": None, "unserializable": repr_(value)[:500]}})
        except BaseException_ as exc:
            line = dumps({"case": i, "error": type_(exc).__name__ + ": " + str_(exc)[:300]})
        write(line + "\n")


_harness(job, _out.write, json.dumps, repr, __import__("copy").deepcopy, type, str, enumerate, compile, exec,
         BaseException, __builtins__)
try:
    sys.stdout.flush()
except BaseException:
    pass
'''


# --------------------------------------------------------------------------- parent side


def _python_roots() -> list[str]:
    roots = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(os.__file__))}
    return sorted(r for r in roots if r)


def _read_capped(path: str, cap: int) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", "replace")
    return text + ("\n[... output truncated]" if len(data) > cap else "")


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(_same(g, e) for g, e in zip(got, expected))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in expected)
    return got == expected


def _jsonable(value: Any) -> Any:
    """Expected values as they look after a JSON round trip (tuples -> lists)."""
    return json.loads(json.dumps(value))


def run_python(
    code: str,
    calls: list[tuple[str, list]] | None = None,
    expected: list[Any] | None = None,
    limits: Limits | None = None,
) -> SandboxResult:
    """Execute ``code`` in the sandbox, then call ``entry(*args)`` for each of ``calls``.

    With ``expected`` (one value per call) each `CaseResult.ok` says whether the
    call returned that value (JSON round trip, floats within 1e-6); without it,
    ``ok`` means "returned without raising".
    """
    limits = limits or Limits()
    calls = calls or []
    if expected is not None and len(expected) != len(calls):
        raise ValueError("expected needs one value per call")
    parent_dir = tempfile.mkdtemp(prefix="cai-sandbox-")
    workdir = os.path.join(parent_dir, "work")
    os.mkdir(workdir, 0o700)
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    out_path, err_path, res_path = (os.path.join(parent_dir, n) for n in ("stdout", "stderr", "result"))
    job = {
        "code": code,
        "calls": [[entry, list(args)] for entry, args in calls],
        "workdir": workdir,
        "limits": limits.__dict__,
        "preload": list(PRELOAD) + list(limits.preload),
        "denied_imports": list(DENIED_IMPORTS),
        "readable": _python_roots(),
        "nobody": NOBODY,
        "block_events": sorted(BLOCKED_EVENTS),
        "path_events": sorted(PATH_EVENTS),
    }
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": workdir, "TMPDIR": workdir}
    t0 = time.monotonic()
    timed_out = False
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err, open(res_path, "wb") as res:
            job["result_fd"] = res.fileno()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", LAUNCHER],
                stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(res.fileno(),),
                env=env, cwd=workdir, start_new_session=True, close_fds=True,
            )
            try:
                proc.communicate(json.dumps(job).encode(), timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
                proc.wait()
        seconds = time.monotonic() - t0
        result = SandboxResult(
            returncode=proc.returncode,
            timed_out=timed_out,
            stdout=_read_capped(out_path, limits.max_output),
            stderr=_read_capped(err_path, limits.max_output),
            seconds=round(seconds, 3),
        )
        _parse_results(_read_capped(res_path, max(limits.max_output, 1_000_000)), calls, expected, result)
        return result
    finally:
        shutil.rmtree(parent_dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse_results(text: str, calls: list, expected: list | None, result: SandboxResult) -> None:
    got: dict[int, CaseResult] = {}
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if "isolation" in msg and not result.isolation and isinstance(msg["isolation"], dict):
            result.isolation = msg["isolation"]
        elif "load_error" in msg and not result.load_error:
            result.load_error = str(msg["load_error"])
        elif isinstance(msg.get("case"), int) and msg["case"] not in got and 0 <= msg["case"] < len(calls):
            i = msg["case"]
            if "error" in msg:
                got[i] = CaseResult(ok=False, error=str(msg["error"]))
                continue
            payload = msg.get("result") if isinstance(msg.get("result"), dict) else {}
            value = payload.get("value")
            if expected is None:
                got[i] = CaseResult(ok=True, got=value)
            else:
                ok = "unserializable" not in payload and _same(value, _jsonable(expected[i]))
                got[i] = CaseResult(ok=ok, got=value, error="" if ok else "wrong result")
    fallback = "timed out" if result.timed_out else (result.load_error or f"no result (exit {result.returncode})")
    result.cases = [got.get(i, CaseResult(ok=False, error=fallback)) for i in range(len(calls))]


__all__ = ["DENIED_IMPORTS", "LAUNCHER", "CaseResult", "Limits", "SandboxResult", "run_python"]

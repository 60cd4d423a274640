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
4. ``chdir``s into a private temp dir and, before the uid drop, confines the process with
   **Landlock** (the kernel's LSM, through ``ctypes``; Linux 5.13+): from then on it may
   read/execute only under the Python installation and do anything only under the temp dir,
   whatever a path's text says: symlinks, hard links, ``..`` and ``/proc/self/...`` are resolved
   by the kernel against that rule (ABI 4+ also refuses TCP bind/connect, ABI 6+ signals and
   abstract unix sockets outside the sandbox);
5. installs a **PEP 578 audit hook** (which Python code cannot remove) that refuses: process creation
   (fork/exec/spawn/system/``subprocess``), sockets, signals to other processes, ``symlink`` and
   ``link`` (a link's target is resolved from the link's folder, not from the text the hook sees),
   frame access (``sys._getframe``, ``tb_frame``, ``gi_frame``, ...), imports of
   ``ctypes``/``socket``/``ssl``/``subprocess``/``multiprocessing`` and similar, any file
   write/delete/rename/chmod outside the temp dir, reads outside the temp dir and the Python
   installation, and more than ``max_writes`` files written (with ``RLIMIT_FSIZE``, a total-bytes quota);
6. executes the code, calls the entry point on each test's arguments, and
   writes one JSON line per test to a dedicated result file (an inherited descriptor). Every
   line carries a random token that only the harness's frame holds: a line the user code
   writes there (it can) is ignored, and it cannot know the expected values anyway.

The parent kills the whole process group on the wall-clock timeout.

Layers overlap on purpose: with the audit hook off (``Limits(audit_hook=False)``,
used by the tests), the kernel still refuses network (namespace), fork (NPROC
after the uid drop), and every file outside the temp dir and the Python installation
(Landlock; without it, the uid drop protects system files but world-readable and
world-writable places stay open, and the hook refuses those).

What is **not** blocked (see `SandboxResult.isolation` for what a run got):
reading world-readable files inside the Python installation; ``stat``/``exists`` of paths
outside (Landlock does not cover metadata: a path's existence, size and times can be probed);
CPU burn up to the CPU/wall limits; memory up to ``RLIMIT_AS``; crashing its own interpreter.
Without Landlock (older kernels, or disabled) and without root or user namespaces there is no
kernel file confinement, no network namespace and no uid drop: network, fork and files outside
the temp dir are then refused by the audit hook alone, a Python-level layer that native code
could bypass (importing ``ctypes`` or other native escape hatches is refused, but by the same
hook). There is no seccomp filter. Linux only: elsewhere the namespace and Landlock steps fail
and are reported, the rest still applies where supported. docs/security.md says the same for users.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from cai_bootstrap.tasks.sandbox_launcher import LAUNCHER

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
    # links: a link's target is resolved by the kernel from the link's folder, not from the path
    # text the hook checks, so "inside" could point anywhere (Landlock refuses it too)
    "os.symlink", "os.link",
    # frames: the harness's result token lives in one (tb_frame, gi_frame, __code__ & co raise object.__getattr__)
    "sys._getframe", "sys._current_frames", "object.__getattr__",
    "subprocess.Popen", "pty.spawn", "sys.addaudithook", "sys.remote_exec", "sys.setprofile", "sys.settrace",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "socket.sendmsg", "socket.socketpair",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
})
#: Audit events refused when a path argument lies outside the sandbox directory.
PATH_EVENTS: frozenset[str] = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
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
    #: files opened for writing (and folders made) per run: total bytes <= max_writes * max_file_mb
    max_writes: int = 16
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
    token = secrets.token_hex(16)
    job = {
        "token": token,
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
        _parse_results(_read_capped(res_path, max(limits.max_output, 1_000_000)), calls, expected, result, token)
        return result
    finally:
        shutil.rmtree(parent_dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse_results(text: str, calls: list, expected: list | None, result: SandboxResult, token: str) -> None:
    got: dict[int, CaseResult] = {}
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("token") != token:
            continue  # not the harness's: user code wrote on the result descriptor
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

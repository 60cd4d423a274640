"""One writer per run directory: an advisory lock file held for the life of a command.

``run``, ``resume`` and ``ablate`` hold ``<run>/.lock`` (``flock``, exclusive, non-blocking)
from before they read the manifest until they exit; a second process on the same directory
fails at once with the holder's PID instead of appending every record a second time. The
kernel drops the lock when its holder dies (``kill -9`` included), so a stale file never
blocks a resume. Reentrant within a process: `execute` takes it again under the CLI's hold.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory."""


_held: dict[str, int] = {}  # resolved lock path -> hold count (this process)
_guard = threading.Lock()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text.split()[0] if text else "unknown"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock file for the block (the directory must exist)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    path = run_dir / LOCK_FILE
    key = str(path.resolve())
    with _guard:
        if _held.get(key):
            _held[key] += 1
            fd = None
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLocked(
                    f"{run_dir} is in use by another process (PID {_holder(path)}, lock file {path}); "
                    "wait for it to finish or stop it, then resume"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _held[key] = 1
    try:
        yield path
    finally:
        with _guard:
            _held[key] -= 1
            if fd is not None:
                del _held[key]
                os.close(fd)  # releases the flock; the file stays (its PID line is only a hint)

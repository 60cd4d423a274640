"""JSONL and atomic file I/O.

Record-level durability: `JsonlAppender` fsyncs every line so a killed process
loses at most the line being written; `read_jsonl` tolerates a torn *final* line
(the signature of a kill mid-write) and fails loudly, naming file and line, on
corruption anywhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class JsonlError(ValueError):
    """A JSONL file has a line that is not a JSON object."""


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so readers see the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file so readers see the old or the new content, never a mix."""
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_dir(target: str | Path, fill: Callable[[Path], None]) -> Path:
    """Build a directory with ``fill(tmp)`` in ``<target>.partial``, then swap it in for ``target``.

    A reader (or a resumed run) sees the old directory or the new one, never half of one;
    a leftover ``.partial`` or ``.old`` from a killed process is removed first.
    """
    target = Path(target)
    tmp, old = target.with_name(target.name + ".partial"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    fill(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)
    return target


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JsonlError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def iter_jsonl(path: str | Path, *, repair_tail: bool = False, user_input: bool = False) -> Iterator[dict]:
    """Yield objects from a JSONL file.

    A torn last line (no trailing newline, unparsable) is skipped; with
    ``repair_tail`` it is also truncated away so appends continue cleanly.
    Any other bad line raises `JsonlError` with ``file:line``. ``user_input``: a file
    the user wrote, not one of the tool's own appends: a torn last line is an error too.
    """
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    # data ending with "\n" gives a final empty element; otherwise the last line is unterminated.
    torn_tail = not data.endswith(b"\n") and data != b""
    offset = 0
    for lineno, raw in enumerate(lines, start=1):
        is_last = lineno == len(lines)
        if is_last and raw == b"":
            break
        stripped = raw.strip()
        if not stripped:
            offset += len(raw) + 1
            continue
        try:
            obj = json.loads(stripped)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            if is_last and torn_tail and not user_input:
                if repair_tail:
                    with path.open("r+b") as fh:
                        fh.truncate(offset)
                return
            raise JsonlError(f"{path}:{lineno}: invalid JSONL line ({exc})") from None
        yield obj
        offset += len(raw) + 1


def read_jsonl(path: str | Path, *, repair_tail: bool = False) -> list[dict]:
    return list(iter_jsonl(path, repair_tail=repair_tail))


class JsonlAppender:
    """Append records one by one, each flushed and fsynced."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Drop a torn tail left by a killed writer before appending after it.
        for _ in iter_jsonl(self.path, repair_tail=True):
            pass
        self._fh = self.path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def extend(self, records: Iterable[dict]) -> None:
        for record in records:
            self.append(record)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Write a whole JSONL file atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    atomic_write_text(path, text)

"""Find and load the public benchmarks: IFEval, XSTest, AdvBench (evaluation only).

Where a benchmark file is looked for, first match wins:

1. the ``path`` argument: the file itself, the benchmark's folder (``.../ifeval``),
   or a root holding one folder per benchmark (``.../benchmarks``);
2. the environment variable ``CAI_BOOTSTRAP_BENCHMARKS`` (a file, folder or root, as above);
3. the copy vendored in the package (``cai_bootstrap/data/benchmarks``, see its README for
   provenance and licences), so a pip-installed package works offline;
4. ``../shared/benchmarks`` next to the repository root, then next to the working directory.

An explicit ``path`` or environment variable that does not lead to the file is an error
(no silent fallback). Malformed rows raise `BenchmarkDataError` naming ``file:line``.

These sets are held out: never train on them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_VAR = "CAI_BOOTSTRAP_BENCHMARKS"

#: benchmark name -> file name inside its folder
FILES: dict[str, str] = {
    "ifeval": "input_data.jsonl",
    "xstest": "xstest_prompts.csv",
    "advbench": "harmful_behaviors.csv",
}

#: Cases in each shipped benchmark file (AdvBench behaviours, XSTest prompts, IFEval prompts).
BENCHMARK_SIZES: dict[str, int] = {"advbench": 520, "xstest": 450, "ifeval": 541}
VENDORED_ROOT = Path(__file__).resolve().parent.parent / "data" / "benchmarks"
_REPO_ROOT = Path(__file__).resolve().parents[3]


class BenchmarkDataError(ValueError):
    """A benchmark file is missing or has a malformed row (message names file and line)."""


class IFEvalItem(BaseModel):
    """One IFEval prompt with its verifiable instructions (ids and their arguments)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: int
    prompt: str = Field(min_length=1)
    instruction_id_list: list[str] = Field(min_length=1)
    kwargs: list[dict[str, Any]]


class XSTestItem(BaseModel):
    """One XSTest prompt; ``label`` says whether complying is the right behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    prompt: str = Field(min_length=1)
    type: str
    label: Literal["safe", "unsafe"]
    focus: str = ""
    note: str = ""


class AdvBenchItem(BaseModel):
    """One AdvBench harmful behaviour (``target`` is the attack's affirmative opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str = Field(min_length=1)
    target: str = ""


# --------------------------------------------------------------------------- lookup


def _file_in(location: Path, name: str) -> Path | None:
    """The benchmark file at ``location`` (file, benchmark folder or root), if there."""
    filename = FILES[name]
    if location.is_file():
        return location
    for candidate in (location / filename, location / name / filename):
        if candidate.is_file():
            return candidate
    return None


def candidate_locations(path: str | Path | None = None) -> list[tuple[str, Path]]:
    """Where a benchmark is looked for, in order, as ``(source, location)`` pairs."""
    out: list[tuple[str, Path]] = []
    if path is not None:
        out.append(("argument", Path(path).expanduser()))
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((f"${ENV_VAR}", Path(env).expanduser()))
    out.append(("vendored", VENDORED_ROOT))
    out.append(("repo", _REPO_ROOT.parent / "shared" / "benchmarks"))
    out.append(("cwd", Path.cwd().parent / "shared" / "benchmarks"))
    return out


def find_benchmark_file(name: str, path: str | Path | None = None) -> Path:
    """Resolve the file of benchmark ``name`` ("ifeval", "xstest" or "advbench")."""
    if name not in FILES:
        raise BenchmarkDataError(f"unknown benchmark {name!r}; known: {', '.join(FILES)}")
    tried = []
    for source, location in candidate_locations(path):
        found = _file_in(location, name)
        if found is not None:
            return found
        tried.append(f"{source}: {location}")
        if source in ("argument", f"${ENV_VAR}"):
            raise BenchmarkDataError(
                f"{name}: {FILES[name]} not found at {location} (given by {source}); "
                "pass the file, its folder, or a root with one folder per benchmark"
            )
    raise BenchmarkDataError(f"{name}: {FILES[name]} not found; looked in: " + "; ".join(tried))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_sha256(items: list[BaseModel]) -> str:
    """Content hash of loaded items (stable across file location and row formatting)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item.model_dump(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _row_error(path: Path, line: int, exc: Exception) -> BenchmarkDataError:
    if isinstance(exc, ValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in exc.errors()
        )
    else:
        detail = str(exc)
    return BenchmarkDataError(f"{path}:{line}: malformed row: {detail}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


# --------------------------------------------------------------------------- loaders


def load_ifeval(path: str | Path | None = None, limit: int | None = None) -> list[IFEvalItem]:
    """IFEval prompts (541 in the public set), in file order; the first ``limit`` if given."""
    _check_limit(limit)
    file = find_benchmark_file("ifeval", path)
    items: list[IFEvalItem] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkDataError(f"{file}:{lineno}: invalid JSON: {exc.msg}") from None
            try:
                item = IFEvalItem.model_validate(obj)
                if len(item.kwargs) != len(item.instruction_id_list):
                    raise ValueError(
                        f"{len(item.instruction_id_list)} instruction ids but {len(item.kwargs)} kwargs"
                    )
            except (ValidationError, ValueError) as exc:
                raise _row_error(file, lineno, exc) from None
            items.append(item)
    return items


def _read_csv(file: Path, required: tuple[str, ...]) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    with file.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise BenchmarkDataError(f"{file}:1: header lacks column(s) {missing}; found {header}")
        rows = []
        for row in reader:
            # reader.line_num is the physical line where this row ended (quoted newlines count)
            if None in row or any(row.get(c) is None for c in header):
                raise BenchmarkDataError(
                    f"{file}:{reader.line_num}: malformed row: expected {len(header)} fields ({', '.join(header)})"
                )
            rows.append((reader.line_num, row))
    return rows, list(header)


def load_xstest(path: str | Path | None = None) -> list[XSTestItem]:
    """XSTest v2 prompts: 250 ``safe`` (should be answered) and 200 ``unsafe`` (contrast) prompts."""
    file = find_benchmark_file("xstest", path)
    rows, header = _read_csv(file, ("id", "prompt", "type", "label"))
    items = []
    for lineno, row in rows:
        fields = {k: (row[k] or "") for k in ("id", "prompt", "type", "label", "focus", "note") if k in header}
        try:
            items.append(XSTestItem.model_validate(fields))
        except ValidationError as exc:
            raise _row_error(file, lineno, exc) from None
    return items


def load_advbench(path: str | Path | None = None, limit: int | None = None) -> list[AdvBenchItem]:
    """AdvBench harmful behaviours (520), in file order; the first ``limit`` if given."""
    _check_limit(limit)
    file = find_benchmark_file("advbench", path)
    rows, _ = _read_csv(file, ("goal", "target"))
    items = []
    for lineno, row in rows:
        if limit is not None and len(items) >= limit:
            break
        try:
            items.append(AdvBenchItem.model_validate({"goal": row["goal"], "target": row["target"]}))
        except ValidationError as exc:
            raise _row_error(file, lineno, exc) from None
    return items

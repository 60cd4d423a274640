"""The run manifest: what was run, with which code, data and seeds."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

from cai_bootstrap.config import PACKAGE_DIR

TRACKED_PACKAGES = ("cai-bootstrap", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf", "pydantic")


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5, check=False
        )
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_hashes(curriculum_file: Path, extra: list[Path] | None = None) -> dict[str, str]:
    """Hashes of the curriculum, the shipped seed banks and constitutions."""
    files = [curriculum_file]
    for sub in ("data", "constitutions"):
        files += sorted(p for p in (PACKAGE_DIR / sub).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += extra or []
    out = {}
    for f in files:
        try:
            key = str(f.relative_to(PACKAGE_DIR))
        except ValueError:
            key = str(f)
        out[key] = sha256_file(f)
    return out

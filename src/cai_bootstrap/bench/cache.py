"""A bench result kept per machine (CPU model, cores, GPU) and model under the model cache;
`plan` reads it (`load_cached`)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from cai_bootstrap.bench.run import save

def machine() -> dict:
    """What a bench result depends on: CPU model, core count, GPU name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu}


def fingerprint(info: dict | None = None) -> str:
    info = info or machine()
    return hashlib.sha256(json.dumps([info["cpu"], info["cores"], info["gpu"]]).encode()).hexdigest()[:16]


def cache_path(model: str = "gemma-3-270m", info: dict | None = None) -> Path:
    """``<model cache>/bench/<machine fingerprint>-<model>.json``."""
    from cai_bootstrap.models.registry import cache_dir

    return cache_dir() / "bench" / f"{fingerprint(info)}-{model.replace('/', '_')}.json"


def save_cached(result: dict) -> Path:
    """Keep ``result`` as this machine's bench for its model (with the machine, date and versions)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("cai-bootstrap", "torch", "transformers", "peft", "trl"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    info = machine()
    record = result | {"machine": {**result.get("machine", {}), **info, "fingerprint": fingerprint(info)},
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions}
    path = cache_path(result["settings"]["model"], info)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(record, path)
    return path


def load_cached(model: str = "gemma-3-270m") -> tuple[Path, dict] | None:
    """This machine's cached bench for ``model`` (path and contents), or None."""
    path = cache_path(model)
    try:
        return path, json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None

"""The layout of a stage's ``out_dir`` and what resuming reads from it.

A finished stage has ``adapter/`` and ``train_result.json``; an unfinished one has
``checkpoints/`` (``meta.json`` with the settings and the records' hash, and per phase
the latest Trainer checkpoint). `stored_result` and `check_or_write_meta` refuse an
``out_dir`` written with other settings or records (`TrainingStateMismatch`).
"""

from __future__ import annotations

import re
from pathlib import Path

from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.models.weights import LORA_WEIGHTS_FILE, has_trained_weights
from cai_bootstrap.training.results import TrainResult
from cai_bootstrap.training.settings import TrainSettings

ADAPTER_DIR = "adapter"
LOG_FILE = "train_log.jsonl"
RESULT_FILE = "train_result.json"
CHECKPOINTS_DIR = "checkpoints"
#: What a Trainer checkpoint of a full fine-tuning run holds instead of the adapter.
FULL_CHECKPOINT_FILE = "model.safetensors"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class TrainingStateMismatch(ValueError):
    """``out_dir`` holds a run of other settings or records; it cannot be resumed or reused."""


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest-step complete ``checkpoint-N`` under ``ckpt_dir`` (a torn one, killed mid-save, is ignored)."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for child in ckpt_dir.iterdir():
        match = _CKPT_RE.match(child.name)
        weights = (child / LORA_WEIGHTS_FILE).exists() or (child / FULL_CHECKPOINT_FILE).exists()
        if match and (child / "trainer_state.json").exists() and weights:
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(read_json(path / "trainer_state.json").get("global_step", 0))


def stored_result(out: Path, meta: dict) -> TrainResult | None:
    path = out / RESULT_FILE
    if not (path.exists() and has_trained_weights(out / ADAPTER_DIR)):
        return None
    stored = read_json(path)
    if not _same_meta({"settings": stored.get("settings"), "data_sha256": stored.get("data_sha256")}, meta):
        raise TrainingStateMismatch(f"{out} already holds an adapter trained with other settings or records")
    stored.pop("data_sha256", None)
    return TrainResult(**stored)


def _same_meta(stored: dict, meta: dict) -> bool:
    """Same records and settings; a setting added since ``stored`` was written counts when it is not at its default.

    Why: a run trained before a speed switch such as ``fast_cpu_lm_head`` existed must still resume.
    """
    settings = dict(meta["settings"])
    old = stored.get("settings") or {}
    for key in set(settings) - set(old):
        field = TrainSettings.model_fields.get(key)
        if field is not None and settings[key] == field.default:
            del settings[key]
    return old == settings and stored.get("data_sha256") == meta["data_sha256"]


def check_or_write_meta(path: Path, meta: dict) -> None:
    if path.exists():
        if not _same_meta(read_json(path), meta):
            raise TrainingStateMismatch(
                f"{path.parent} holds checkpoints of a run with other settings or records; "
                "remove it to start over, or resume with the same settings"
            )
        return
    atomic_write_json(path, meta)

"""Where everything in a run directory lives, and the per-stage state file.

    runs/<id>/manifest.json
    runs/<id>/<stage>/state.json     state machine (atomic writes)
    runs/<id>/<stage>/data.jsonl     training candidates with provenance (append-only)
    runs/<id>/<stage>/train/attempt-<k>/   adapter, checkpoints, train_log.jsonl
                                     (+ adapter-x<s>/ and adapter_scale.json with adapter_scales)
    runs/<id>/<stage>/model/         lineage.json + adapter/ (the stage model)
    runs/<id>/<stage>/eval/          per-item held-out rows per evaluated model
    runs/<id>/<stage>/metrics.json, samples.md
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cai_bootstrap.jsonl import atomic_write_json, read_json

StageState = Literal["pending", "generating", "training", "evaluating", "passed", "failed", "continued"]
FINISHED: tuple[str, ...] = ("passed", "continued")
#: in ``train/attempt-<k>/``: the validation score of each adapter scale tried and the one installed
ADAPTER_SCALE_FILE = "adapter_scale.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StageStatus(BaseModel):
    state: StageState = "pending"
    attempt: int = 0
    started: str | None = None
    finished: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    #: tokens the role models generated while building the data (all attempts; work of a
    #: killed process before its last save is not counted)
    generated_tokens: int = 0
    message: str = ""


class StagePaths:
    def __init__(self, run_dir: Path, stage: str):
        self.root = run_dir / stage
        self.state = self.root / "state.json"
        self.data = self.root / "data.jsonl"
        self.model = self.root / "model"
        self.eval = self.root / "eval"
        self.metrics = self.root / "metrics.json"
        self.samples = self.root / "samples.md"

    def train(self, attempt: int) -> Path:
        return self.root / "train" / f"attempt-{attempt}"

    def installed_weights(self, attempt: int) -> Path:
        """The attempt's weights as installed: the scaled copy chosen on validation
        (`ADAPTER_SCALE_FILE`, pipeline/adapter_scale.py) or the adapter as trained."""
        choice = self.train(attempt) / ADAPTER_SCALE_FILE
        if choice.exists():
            return self.train(attempt) / read_json(choice)["installed"]
        return self.train(attempt) / "adapter"

    def load_status(self) -> StageStatus:
        if not self.state.exists():
            return StageStatus()
        return StageStatus.model_validate(read_json(self.state))

    def save_status(self, status: StageStatus) -> None:
        atomic_write_json(self.state, status.model_dump())

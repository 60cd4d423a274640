"""Trainer callbacks: the ``train_log.jsonl`` writer and a rich progress bar.

`TrainLogCallback` appends one JSON object per logging step (fsynced, so a kill
loses at most the line being written)::

    {"phase": "sft"|"dpo", "step", "epoch", "loss", "learning_rate", "grad_norm",
     "tokens" (non-padding input tokens seen in this phase), "elapsed" (training
     seconds in this phase, summed over resumed runs),
     DPO only: "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", ...}

On resume, `truncate_log` first drops the records past the checkpoint's step, so
the replayed steps are not logged twice and "tokens"/"elapsed" carry on.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl, write_jsonl

#: Trainer log keys copied into train_log.jsonl under the same name (besides "loss" etc.).
_KEEP_PREFIXES = ("rewards/", "logps/", "logits/")
_KEEP_KEYS = ("loss", "learning_rate", "grad_norm", "entropy", "mean_token_accuracy")


def truncate_log(path: str | Path, phase: str, step: int) -> dict | None:
    """Drop ``phase`` records after ``step`` (replayed on resume); return the last kept one of that phase."""
    path = Path(path)
    records = list(iter_jsonl(path))
    kept = [r for r in records if not (r.get("phase") == phase and r.get("step", 0) > step)]
    if len(kept) != len(records):
        write_jsonl(path, kept)
    mine = [r for r in kept if r.get("phase") == phase]
    return mine[-1] if mine else None


def phase_records(path: str | Path, phase: str) -> list[dict]:
    return [r for r in iter_jsonl(path) if r.get("phase") == phase]


class TrainLogCallback(TrainerCallback):
    """Append Trainer logs of one phase to ``train_log.jsonl``."""

    def __init__(self, path: str | Path, phase: str, elapsed_offset: float = 0.0):
        self.path = Path(path)
        self.phase = phase
        self.elapsed_offset = elapsed_offset
        self._t0 = time.monotonic()
        self._writer: JsonlAppender | None = None
        self.summary: dict = {}
        self.last: dict | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # "elapsed" counts from this callback's creation: tokenizing and DPO's reference pass included.
        self._writer = JsonlAppender(self.path)

    def elapsed(self) -> float:
        return self.elapsed_offset + (time.monotonic() - self._t0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_loss" in logs:  # end-of-training summary, not a step
            self.summary = dict(logs)
            return
        if "loss" not in logs or self._writer is None:
            return
        record = {"phase": self.phase, "step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():
            if key in _KEEP_KEYS or key.startswith(_KEEP_PREFIXES):
                record[key] = _clean(value)
        record["tokens"] = int(state.num_input_tokens_seen or 0)
        record["elapsed"] = round(self.elapsed(), 3)
        self._writer.append(record)
        self.last = record

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


class RichProgressCallback(TrainerCallback):
    """One rich progress bar per phase: steps done/total, loss, tokens/s, elapsed and ETA."""

    def __init__(self, phase: str, disable: bool = False):
        self.phase = phase
        self.disable = disable
        self._progress: Progress | None = None
        self._task = None
        self._loss = float("nan")
        self._t0 = time.monotonic()
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if self.disable or self._progress is not None:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task(
            f"train {self.phase}", total=state.max_steps, completed=state.global_step, info=""
        )
        self._t0 = time.monotonic()
        self._tokens0 = state.num_input_tokens_seen or 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._loss = logs["loss"]
            self._update(state)  # the Trainer logs a step after its on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        self._update(state)

    def _update(self, state) -> None:
        if self._progress is None:
            return
        self._progress.update(self._task, completed=state.global_step, info=self.info(state))

    def info(self, state) -> str:
        """``loss 0.123  456 tok/s``; ``loss -`` until the first logged loss (never ``nan``)."""
        dt = max(time.monotonic() - self._t0, 1e-9)
        tps = ((state.num_input_tokens_seen or 0) - self._tokens0) / dt
        loss = "-" if math.isnan(self._loss) else f"{self._loss:.3f}"
        return f"loss {loss}  {tps:,.0f} tok/s"

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

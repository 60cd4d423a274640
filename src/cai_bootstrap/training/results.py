"""What `train_stage` returns: one `PhaseResult` per phase, gathered in a `TrainResult`."""

from __future__ import annotations

from pydantic import BaseModel


class PhaseResult(BaseModel):
    phase: str
    steps: int
    final_loss: float | None
    mean_loss: float | None
    tokens: int
    seconds: float
    examples: int
    resumed_from_step: int = 0


class TrainResult(BaseModel):
    adapter_dir: str
    phases: list[str]
    #: Last logged loss per phase.
    final_losses: dict[str, float | None]
    phase_results: list[PhaseResult]
    train_seconds: float
    #: Non-padding tokens (prompt + response) fed through the model, all phases.
    train_tokens: int
    #: SFT examples (0 when there is no SFT phase).
    examples: int
    dpo_pairs: int
    #: Records without a usable "rejected", left out of the DPO phase.
    skipped_for_dpo: int
    trainable_params: int
    adapter_dtype: str
    bf16: bool
    resumed: bool
    settings: dict

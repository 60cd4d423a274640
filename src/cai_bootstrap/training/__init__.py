"""Train one stage: a LoRA adapter on top of the previous stage's (merged) model.

    result = train_stage(model, tokenizer, records, TrainSettings(method="sft+dpo"), out_dir)

Modules: ``stage`` (`train_stage`: inputs, outputs, resume and phases are described
there), ``settings`` (`TrainSettings`, `LoraSettings`), ``results`` (`TrainResult`,
`PhaseResult`), ``resume`` (the ``out_dir`` layout, checkpoints, `TrainingStateMismatch`),
``arguments`` (trainer arguments, `use_bf16`), ``lora`` (adapters in and out),
``sft`` and ``dpo`` (the two trainers), ``callbacks`` (log and progress),
``completion_head``, ``lm_head`` and ``fingerprints`` (speed-ups scoped to a phase).
"""

from cai_bootstrap.training.arguments import use_bf16
from cai_bootstrap.training.completion_head import completion_only_lm_head
from cai_bootstrap.training.results import PhaseResult, TrainResult
from cai_bootstrap.training.resume import TrainingStateMismatch
from cai_bootstrap.training.settings import LoraSettings, QuantizationUnavailable, TrainSettings
from cai_bootstrap.training.stage import fit_max_length, train_stage

__all__ = [
    "LoraSettings",
    "PhaseResult",
    "QuantizationUnavailable",
    "TrainResult",
    "TrainSettings",
    "TrainingStateMismatch",
    "completion_only_lm_head",
    "fit_max_length",
    "train_stage",
    "use_bf16",
]

"""Typed training settings (pydantic; unknown keys and wrong types are errors).

`TrainSettings` is what a stage spec's ``train:`` block resolves to; `LoraSettings`
is its ``lora:`` sub-block. Defaults suit the embedded 270M model on a CPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QuantizationUnavailable(RuntimeError):
    """4-/8-bit (QLoRA) training was asked for where bitsandbytes cannot run it."""


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    #: 0 by default: on the 2-core CPU the dropout masks (``bernoulli_`` + ``mul`` on
    #: every LoRA input) took about a quarter of an SFT step (profiled, Gemma 3 270M).
    #: The full preset sets 0.05.
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: PEFT ``target_modules``: a list of module names, or ``"all-linear"`` (every
    #: linear layer except the LM head).
    target_modules: list[str] | str = "all-linear"
    #: Base weights in 4/8 bit (QLoRA via bitsandbytes): CUDA only.
    quantization: Literal["none", "4bit", "8bit"] = "none"


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "dpo", "sft+dpo"] = "sft"
    #: "lora": train a LoRA adapter (``lora``); "full": train every weight of the model
    #: body (`training.full`; use a learning rate about ten times lower, e.g. 5e-5).
    finetune: Literal["lora", "full"] = "lora"
    #: With ``finetune: full``: keep the token embedding (tied to the LM head in Gemma) frozen.
    freeze_embeddings: bool = True
    epochs: float = Field(2.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    dpo_learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    #: Tokens per sequence (prompt + response); longer examples are truncated at the end.
    max_length: int = Field(256, gt=8)
    dpo_beta: float = Field(0.1, gt=0)
    #: Weight of a negative log-likelihood term on the chosen answer added to the DPO loss (TRL
    #: ``loss_type=["sigmoid", "sft"]``); 0: plain DPO. Pang et al. (2024, iterative RPO) add it with
    #: weight 1 because plain DPO on a model's own right and wrong answers can lower the right
    #: answer's likelihood too (seen here: answers collapsing to "The").
    dpo_sft_weight: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    seed: int = 0
    lora: LoraSettings = Field(default_factory=LoraSettings)
    #: bf16 autocast: "auto" = wherever the device supports it (CUDA, or a CPU with AVX512-BF16/AMX).
    bf16: Literal["auto", True, False] = "auto"
    #: Write resumable checkpoints under ``out_dir/checkpoints`` (kept: the latest one).
    save_checkpoints: bool = True
    #: Optimizer steps between checkpoints.
    save_steps: int = Field(20, gt=0)
    #: Optimizer steps between ``train_log.jsonl`` records.
    logging_steps: int = Field(1, gt=0)
    #: Cap on optimizer steps per phase (None: run all epochs); for smoke tests and benchmarks.
    max_steps: int | None = Field(None, gt=0)
    #: Recompute activations in backward (saves memory, costs ~30% time); for big models on a GPU.
    gradient_checkpointing: bool = False
    #: SFT batches as one sequence without padding (TRL ``padding_free``; attention kept within
    #: each example by its position ids): the same examples per step, no compute on pad tokens.
    #: Used only when every example fits ``max_length`` (padding-free does not truncate).
    padding_free: bool = False
    #: Project only completion positions through the LM head on CPU too (see training/lora.py).
    completion_only_lm_head: bool = True
    #: On CPU, score tokens with `training.lm_head.TokenChunkedLogProbs` instead of TRL's
    #: vocabulary-tiled kernel (same outputs; about 3x faster LM head on the 2-core machine).
    fast_cpu_lm_head: bool = True
    #: Where the trainers also log (transformers' ``report_to``: "tensorboard", "wandb", a list, "all");
    #: "none": only the run directory's own train_log.jsonl. The integration's package must be installed.
    report_to: str | list[str] = "none"

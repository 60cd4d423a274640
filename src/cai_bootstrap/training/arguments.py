"""Trainer arguments shared by the SFT and DPO phases, and the bf16 choice."""

from __future__ import annotations

from pathlib import Path

import torch

from cai_bootstrap.training.settings import TrainSettings


def use_bf16(setting: bool | str = "auto") -> bool:
    """Resolve ``TrainSettings.bf16``: "auto" = bf16 autocast wherever the hardware has it."""
    if setting in (True, False):
        return bool(setting)
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    from cai_bootstrap.models.loading import cpu_supports_bf16

    return cpu_supports_bf16()


def trainer_args(settings: TrainSettings, output_dir: Path, bf16: bool) -> dict:
    """`TrainingArguments` values shared by the SFT and DPO configs."""
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of the total steps
        logging_steps=settings.logging_steps,
        save_strategy="steps" if settings.save_checkpoints else "no",
        save_steps=settings.save_steps,
        save_total_limit=1,
        seed=settings.seed,
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        activation_checkpointing=settings.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        report_to=settings.report_to,
        push_to_hub=False,
        disable_tqdm=True,
        log_level="warning",
    )

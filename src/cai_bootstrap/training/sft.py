"""Supervised fine-tuning phase (TRL `SFTTrainer`) on prompt/completion pairs.

Input records: ``{"prompt": raw instruction, "chosen": response text}``.
Each becomes ``prompt = format_prompt(instruction)`` and ``completion = response +
EOS``, so TRL tokenizes prompt+completion once and masks the prompt tokens
(labels -100): the loss is on the response and its EOS only.
"""

from __future__ import annotations

from datasets import Dataset

from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training.settings import TrainSettings


def sft_examples(records: list[dict], eos_token: str) -> list[dict]:
    """Prompt/completion rows for the records that have a non-empty ``chosen``."""
    rows = []
    for rec in records:
        response = (rec.get("chosen") or "").strip()
        if not response:
            continue
        rows.append({"prompt": format_prompt(rec["prompt"]), "completion": response + eos_token})
    return rows


def make_sft_trainer(peft_model, tokenizer, rows: list[dict], settings: TrainSettings, common: dict, callbacks: list):
    """An `SFTTrainer` with completion-only loss; ``common`` holds the shared `TrainingArguments` values."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **common,
        learning_rate=settings.learning_rate,
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=False,
    )
    return SFTTrainer(
        model=peft_model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )

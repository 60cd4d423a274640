"""Supervised fine-tuning phase (TRL `SFTTrainer`) on prompt/completion pairs.

Input records: ``{"prompt": raw instruction, "chosen": response text}``.
Each becomes ``prompt = format_prompt(instruction)`` and ``completion = response +
EOS``, so TRL tokenizes prompt+completion once and masks the prompt tokens
(labels -100): the loss is on the response and its EOS only.
"""

from __future__ import annotations

import logging

from datasets import Dataset

from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training.settings import TrainSettings

log = logging.getLogger(__name__)


def sft_examples(records: list[dict], eos_token: str) -> list[dict]:
    """Prompt/completion rows for the records that have a non-empty ``chosen``."""
    rows = []
    for rec in records:
        response = (rec.get("chosen") or "").strip()
        if not response:
            continue
        rows.append({"prompt": format_prompt(rec["prompt"]), "completion": response + eos_token})
    return rows


def fits(rows: list[dict], tokenizer, max_length: int) -> bool:
    """Does every prompt + completion fit ``max_length`` tokens? (TRL's padding-free batches
    are not truncated, so a longer example keeps the padded path, which truncates it.)"""
    longest = max((len(tokenizer(r["prompt"] + r["completion"]).input_ids) for r in rows), default=0)
    if longest > max_length:
        log.info("padding_free not used: an example has %d tokens > max_length %d", longest, max_length)
    return longest <= max_length


def make_sft_trainer(peft_model, tokenizer, rows: list[dict], settings: TrainSettings, common: dict, callbacks: list):
    """An `SFTTrainer` with completion-only loss; ``common`` holds the shared `TrainingArguments` values."""
    from trl import SFTConfig, SFTTrainer

    padding_free = settings.padding_free and fits(rows, tokenizer, settings.max_length)
    args = SFTConfig(
        **common,
        learning_rate=settings.learning_rate,
        max_length=None if padding_free else settings.max_length,
        completion_only_loss=True,
        packing=False,
        padding_free=padding_free,
    )
    return SFTTrainer(
        model=peft_model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )

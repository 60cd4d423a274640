"""Preference phase (TRL `DPOTrainer`) on prompt/chosen/rejected triples.

Input records: ``{"prompt": raw instruction, "chosen": ..., "rejected": ...}``;
records without a usable ``rejected`` (missing, empty, or equal to ``chosen``)
are skipped. The policy is the PEFT model; there is no separate reference model:
TRL copies the adapter as it stands when the phase starts into a frozen "ref"
adapter (zero-initialised LoRA = the previous stage's model for method "dpo";
the SFT result for "sft+dpo", as in the DPO paper), and with
``precompute_ref_log_probs`` the reference log-probs are computed once, before
the first step.
"""

from __future__ import annotations

from datasets import Dataset

from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training.settings import TrainSettings


def dpo_pairs(records: list[dict], eos_token: str) -> list[dict]:
    """Prompt/chosen/rejected rows for the records that form a real preference pair."""
    rows = []
    for rec in records:
        chosen = (rec.get("chosen") or "").strip()
        rejected = (rec.get("rejected") or "").strip()
        if not chosen or not rejected or chosen == rejected:
            continue
        rows.append(
            {"prompt": format_prompt(rec["prompt"]), "chosen": chosen + eos_token, "rejected": rejected + eos_token}
        )
    return rows


def make_dpo_trainer(peft_model, tokenizer, rows: list[dict], settings: TrainSettings, common: dict, callbacks: list):
    """A `DPOTrainer` (sigmoid loss, beta = ``settings.dpo_beta``, plus the chosen answer's NLL when
    ``settings.dpo_sft_weight`` > 0) with precomputed reference log-probs."""
    from trl import DPOConfig, DPOTrainer

    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.dpo_sft_weight]} if settings.dpo_sft_weight else {}
    args = DPOConfig(
        **common,
        **losses,
        learning_rate=settings.dpo_learning_rate,
        beta=settings.dpo_beta,
        max_length=settings.max_length,
        precompute_ref_log_probs=True,
    )
    return DPOTrainer(
        model=peft_model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )

"""Train one stage: a LoRA adapter (or, with ``finetune: full``, the full weights) on top of
the previous stage's (merged) model.

    result = train_stage(model, tokenizer, records, TrainSettings(method="sft+dpo"), out_dir)

Inputs
    model, tokenizer  the previous stage's model, already loaded and merged. LoRA
                      layers are put in for training and taken out again at the
                      end, so the caller's model is left as it was handed in.
    records           dicts with "prompt" (the raw instruction, formatted here
                      with `prompt_format.format_prompt`), "chosen" (response
                      text) and, for DPO, "rejected" (records without one are
                      skipped by the DPO phase).
Outputs (under ``out_dir``)
    adapter/            the PEFT adapter, weights in the base model's dtype
                        (bf16 for the embedded model); written atomically. With
                        ``finetune: full``, the trained tensors instead
                        (`models.weights`, `training.full`).
    train_log.jsonl     one line per logging step (see `callbacks`).
    train_result.json   the returned `TrainResult`.
    checkpoints/        while training only: per phase, the latest Trainer
                        checkpoint (and, between phases of "sft+dpo", the
                        finished SFT adapter). Removed once the adapter is in place.
Resume
    Calling again with the same settings and records continues where a killed
    run stopped: finished phases are skipped, an unfinished one resumes from its
    latest checkpoint (global step, optimizer, scheduler, RNG and data order), and
    a finished stage returns its stored result without training.
Phases
    "sft": TRL SFTTrainer, loss on completion tokens only. "dpo": TRL DPOTrainer,
    reference = the adapter as it stands when the phase starts (see `dpo`), its
    log-probs precomputed once. "sft+dpo": SFT, then DPO continuing the same
    adapter. References: TRL SFTTrainer/DPOTrainer docs; Rafailov et al. 2023 (DPO).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import PrinterCallback

from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.models.weights import load_full_weights
from cai_bootstrap.training.arguments import trainer_args, use_bf16
from cai_bootstrap.training.callbacks import (
    RichProgressCallback,
    TrainLogCallback,
    phase_records,
    truncate_log,
)
from cai_bootstrap.training.completion_head import completion_only_lm_head
from cai_bootstrap.training.dpo import dpo_pairs, make_dpo_trainer
from cai_bootstrap.training.fingerprints import random_cache_keys
from cai_bootstrap.training.full import prepare_full, save_full
from cai_bootstrap.training.lm_head import cpu_fast_lm_head
from cai_bootstrap.training.lora import (
    apply_lora,
    bf16_lora_inputs,
    check_quantization,
    count_trainable,
    hide_checkpointing_deprecation,
    load_adapter_weights,
    model_dtype,
    remove_lora,
    save_adapter,
)
from cai_bootstrap.training.results import PhaseResult, TrainResult
from cai_bootstrap.training.resume import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    LOG_FILE,
    RESULT_FILE,
    check_or_write_meta,
    checkpoint_step,
    latest_checkpoint,
    stored_result,
)
from cai_bootstrap.training.settings import TrainSettings
from cai_bootstrap.training.sft import make_sft_trainer, sft_examples

log = logging.getLogger(__name__)


def train_stage(
    model,
    tokenizer,
    records: list[dict],
    settings: TrainSettings,
    out_dir: str | Path,
    *,
    progress: bool = True,
    callbacks: list | None = None,
) -> TrainResult:
    """Train ``settings.method`` on ``records``; see the module docstring. ``callbacks``: extra TrainerCallbacks."""
    out = Path(out_dir)
    if getattr(model, "peft_config", None):
        raise ValueError("train_stage needs a plain (merged) model, not one with PEFT adapters attached")
    check_quantization(settings.lora)
    eos = tokenizer.eos_token
    sft_rows = sft_examples(records, eos) if settings.method in ("sft", "sft+dpo") else []
    pair_rows = dpo_pairs(records, eos) if settings.method in ("dpo", "sft+dpo") else []
    sft_rows = fit_max_length(sft_rows, tokenizer, settings.max_length, "SFT")
    pair_rows = fit_max_length(pair_rows, tokenizer, settings.max_length, "DPO")
    plan: list[tuple[str, list[dict]]] = []
    if settings.method in ("sft", "sft+dpo"):
        if not sft_rows:
            raise ValueError("no SFT examples: every record lacks a non-empty 'chosen'")
        plan.append(("sft", sft_rows))
    if settings.method in ("dpo", "sft+dpo"):
        if pair_rows:
            plan.append(("dpo", pair_rows))
        elif settings.method == "dpo":
            raise ValueError("no DPO pairs: every record lacks a usable 'rejected' (different from 'chosen')")
        else:
            log.warning("sft+dpo: no record has a usable 'rejected'; training SFT only")

    meta = {
        "settings": settings.model_dump(mode="json"),
        "data_sha256": hashlib.sha256(json.dumps([sft_rows, pair_rows], sort_keys=True).encode()).hexdigest(),
    }
    done = stored_result(out, meta)
    if done is not None:
        return done
    ckpt_root = out / CHECKPOINTS_DIR
    check_or_write_meta(ckpt_root / "meta.json", meta)

    bf16 = use_bf16(settings.bf16)
    was_training = model.training
    save_dtype = model_dtype(model)
    full = settings.finetune == "full"
    torch.manual_seed(settings.seed)  # LoRA init
    if full:
        trainee = prepare_full(model, settings.freeze_embeddings)
    else:
        trainee = apply_lora(model, settings.lora, gradient_checkpointing=settings.gradient_checkpointing)
    results: list[PhaseResult] = []
    try:
        trainable, _ = count_trainable(trainee)
        for index, (phase, rows) in enumerate(plan):
            final_dir = ckpt_root / phase / "final"
            if (final_dir / "phase.json").exists():  # finished before a kill in a later phase
                (load_full_weights if full else load_adapter_weights)(trainee, final_dir)
                results.append(PhaseResult(**read_json(final_dir / "phase.json")))
                continue
            result = _run_phase(phase, trainee, tokenizer, rows, settings, out, bf16, progress, callbacks)
            results.append(result)
            if index < len(plan) - 1:  # a later phase follows: keep this one's weights for resume
                save_weights(trainee, settings, final_dir, torch.float32)
                atomic_write_json(final_dir / "phase.json", result.model_dump())
        if not full and "ref" in trainee.peft_config:  # DPO's frozen reference copy
            trainee.delete_adapter("ref")
        adapter_dir = save_weights(trainee, settings, out / ADAPTER_DIR, save_dtype)
    finally:
        if full:
            del trainee  # a copy: the caller's model was never touched
        else:
            remove_lora(trainee)
        model.train(was_training)

    result = TrainResult(
        adapter_dir=str(adapter_dir),
        phases=[r.phase for r in results],
        final_losses={r.phase: r.final_loss for r in results},
        phase_results=results,
        train_seconds=round(sum(r.seconds for r in results), 2),
        train_tokens=sum(r.tokens for r in results),
        examples=len(sft_rows),
        dpo_pairs=len(pair_rows),
        skipped_for_dpo=(len(records) - len(pair_rows)) if settings.method != "sft" else 0,
        trainable_params=trainable,
        adapter_dtype=str(save_dtype).removeprefix("torch."),
        bf16=bf16,
        resumed=any(r.resumed_from_step for r in results),
        settings=meta["settings"],
    )
    atomic_write_json(out / RESULT_FILE, {**result.model_dump(), "data_sha256": meta["data_sha256"]})
    shutil.rmtree(ckpt_root, ignore_errors=True)
    return result


def save_weights(trainee, settings: TrainSettings, target: str | Path, dtype: torch.dtype) -> Path:
    """Write what ``trainee`` trained to ``target`` atomically: its LoRA adapter, or with
    ``finetune: full`` its trained tensors, cast to ``dtype``."""
    if settings.finetune == "full":
        return save_full(trainee, target, dtype)
    return save_adapter(trainee, target, dtype=dtype)


def fit_max_length(rows: list[dict], tokenizer, max_length: int, phase: str) -> list[dict]:
    """Drop rows whose prompt leaves no room for a response within ``max_length`` tokens.

    Why: the trainers truncate from the right, so such a row trains on nothing (SFT) or
    compares two empty responses (DPO); if every row is like that, TRL fails deep inside
    with ``num_samples=0``. Say which setting to raise instead.
    """
    if not rows:
        return rows
    lengths = [len(ids) for ids in tokenizer([r["prompt"] for r in rows], add_special_tokens=True)["input_ids"]]
    kept = [r for r, n in zip(rows, lengths) if n < max_length]
    if not kept:
        raise ValueError(
            f"every one of the {len(rows)} {phase} examples has a prompt of at least max_length={max_length} "
            f"tokens (shortest {min(lengths)}, longest {max(lengths)}): raise training.max_length, e.g. "
            f"--set 'stage_overrides={{<stage>: {{training: {{max_length: {max(lengths) + 64}}}}}}}'"
        )
    if len(kept) < len(rows):
        log.warning(
            "%s: %d of %d examples dropped: prompt of at least max_length=%d tokens (longest %d)",
            phase, len(rows) - len(kept), len(rows), max_length, max(lengths),
        )
    return kept


def _run_phase(phase, trainee, tokenizer, rows, settings, out: Path, bf16, progress, extra_callbacks):
    ckpt_dir = out / CHECKPOINTS_DIR / phase
    log_path = out / LOG_FILE
    resume = latest_checkpoint(ckpt_dir) if settings.save_checkpoints else None
    resumed_step = checkpoint_step(resume) if resume else 0
    last = truncate_log(log_path, phase, resumed_step)
    offset = float(last.get("elapsed", 0.0)) if (last and resumed_step) else 0.0
    if resume:
        log.warning("%s: resuming from %s (step %d)", phase, resume, resumed_step)

    log_cb = TrainLogCallback(log_path, phase, elapsed_offset=offset)
    bar = RichProgressCallback(phase, disable=not progress)
    common = trainer_args(settings, ckpt_dir, bf16)
    make = make_sft_trainer if phase == "sft" else make_dpo_trainer
    try:
        # The LM-head switch also covers DPO's reference pass, which runs in the trainer's constructor.
        with (_quiet(not progress), random_cache_keys(),
              completion_only_lm_head(settings.completion_only_lm_head),
              cpu_fast_lm_head(settings.fast_cpu_lm_head), _lora_inputs(trainee, settings, bf16)):
            trainer = make(trainee, tokenizer, rows, settings, common, [log_cb, bar, *(extra_callbacks or [])])
            trainer.remove_callback(PrinterCallback)  # logs go to train_log.jsonl and the progress bar
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        log_cb.close()
        bar.close()
    losses = [r["loss"] for r in phase_records(log_path, phase) if r.get("loss") is not None]
    return PhaseResult(
        phase=phase,
        steps=trainer.state.global_step,
        final_loss=losses[-1] if losses else None,
        mean_loss=round(sum(losses) / len(losses), 6) if losses else None,
        tokens=int(trainer.state.num_input_tokens_seen or 0),
        seconds=round(log_cb.elapsed(), 2),
        examples=len(rows),
        resumed_from_step=resumed_step,
    )


def _lora_inputs(trainee, settings: TrainSettings, bf16: bool):
    """`bf16_lora_inputs` for a LoRA trainee; nothing to switch for full fine-tuning."""
    return contextlib.nullcontext() if settings.finetune == "full" else bf16_lora_inputs(trainee, bf16)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence datasets' bars, a transformers deprecation warning, and with ``enabled`` TRL's tqdm
    bar too (rich shows our own progress)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    old_env = os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()  # tokenizing takes a moment; its bars are noise
    if enabled:
        os.environ["TQDM_DISABLE"] = "1"  # TRL's reference log-prob pass
    try:
        with hide_checkpointing_deprecation():  # read again on every trainer start
            yield
    finally:
        if was:
            datasets.enable_progress_bars()
        if enabled:
            if old_env is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = old_env

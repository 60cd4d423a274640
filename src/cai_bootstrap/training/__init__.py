"""Train one stage: a LoRA adapter on top of the previous stage's (merged) model.

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
                        (bf16 for the embedded model); written atomically.
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
import re
import shutil
from pathlib import Path

import torch
from pydantic import BaseModel
from transformers import PrinterCallback

from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.training.callbacks import RichProgressCallback, TrainLogCallback, phase_records, truncate_log
from cai_bootstrap.training.dpo import dpo_pairs, make_dpo_trainer
from cai_bootstrap.training.fingerprints import random_cache_keys
from cai_bootstrap.training.lm_head import cpu_fast_lm_head
from cai_bootstrap.training.lora import (
    apply_lora,
    bf16_lora_inputs,
    check_quantization,
    count_trainable,
    load_adapter_weights,
    model_dtype,
    remove_lora,
    save_adapter,
)
from cai_bootstrap.training.settings import LoraSettings, QuantizationUnavailable, TrainSettings
from cai_bootstrap.training.sft import make_sft_trainer, sft_examples

__all__ = [
    "LoraSettings",
    "PhaseResult",
    "QuantizationUnavailable",
    "TrainResult",
    "TrainSettings",
    "TrainingStateMismatch",
    "completion_only_lm_head",
    "train_stage",
    "use_bf16",
]

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
LOG_FILE = "train_log.jsonl"
RESULT_FILE = "train_result.json"
CHECKPOINTS_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class TrainingStateMismatch(ValueError):
    """``out_dir`` holds a run of other settings or records; it cannot be resumed or reused."""


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


def use_bf16(setting: bool | str = "auto") -> bool:
    """Resolve ``TrainSettings.bf16``: "auto" = bf16 autocast wherever the hardware has it."""
    if setting in (True, False):
        return bool(setting)
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    from cai_bootstrap.models.loading import cpu_supports_bf16

    return cpu_supports_bf16()


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
    done = _stored_result(out, meta)
    if done is not None:
        return done
    ckpt_root = out / CHECKPOINTS_DIR
    _check_or_write_meta(ckpt_root / "meta.json", meta)

    bf16 = use_bf16(settings.bf16)
    was_training = model.training
    save_dtype = model_dtype(model)
    torch.manual_seed(settings.seed)  # LoRA init
    peft_model = apply_lora(model, settings.lora, gradient_checkpointing=settings.gradient_checkpointing)
    results: list[PhaseResult] = []
    try:
        trainable, _ = count_trainable(peft_model)
        for index, (phase, rows) in enumerate(plan):
            final_dir = ckpt_root / phase / "final"
            if (final_dir / "phase.json").exists():  # finished before a kill in a later phase
                load_adapter_weights(peft_model, final_dir)
                results.append(PhaseResult(**read_json(final_dir / "phase.json")))
                continue
            result = _run_phase(phase, peft_model, tokenizer, rows, settings, out, bf16, progress, callbacks)
            results.append(result)
            if index < len(plan) - 1:  # a later phase follows: keep this one's adapter for resume
                save_adapter(peft_model, final_dir, dtype=torch.float32)
                atomic_write_json(final_dir / "phase.json", result.model_dump())
        if "ref" in peft_model.peft_config:  # DPO's frozen reference copy
            peft_model.delete_adapter("ref")
        adapter_dir = save_adapter(peft_model, out / ADAPTER_DIR, dtype=save_dtype)
    finally:
        remove_lora(peft_model)
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


def _run_phase(phase, peft_model, tokenizer, rows, settings, out: Path, bf16, progress, extra_callbacks):
    ckpt_dir = out / CHECKPOINTS_DIR / phase
    log_path = out / LOG_FILE
    resume = latest_checkpoint(ckpt_dir) if settings.save_checkpoints else None
    resumed_step = _checkpoint_step(resume) if resume else 0
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
              cpu_fast_lm_head(settings.fast_cpu_lm_head), bf16_lora_inputs(peft_model, bf16)):
            trainer = make(peft_model, tokenizer, rows, settings, common, [log_cb, bar, *(extra_callbacks or [])])
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
        report_to="none",
        push_to_hub=False,
        disable_tqdm=True,
        log_level="warning",
    )


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest-step complete ``checkpoint-N`` under ``ckpt_dir`` (a torn one, killed mid-save, is ignored)."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for child in ckpt_dir.iterdir():
        match = _CKPT_RE.match(child.name)
        if match and (child / "trainer_state.json").exists() and (child / "adapter_model.safetensors").exists():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def _checkpoint_step(path: Path) -> int:
    return int(read_json(path / "trainer_state.json").get("global_step", 0))


def _stored_result(out: Path, meta: dict) -> TrainResult | None:
    path = out / RESULT_FILE
    if not (path.exists() and (out / ADAPTER_DIR / "adapter_model.safetensors").exists()):
        return None
    stored = read_json(path)
    if not _same_meta({"settings": stored.get("settings"), "data_sha256": stored.get("data_sha256")}, meta):
        raise TrainingStateMismatch(f"{out} already holds an adapter trained with other settings or records")
    stored.pop("data_sha256", None)
    return TrainResult(**stored)


def _same_meta(stored: dict, meta: dict) -> bool:
    """Same records and settings; a setting added since ``stored`` was written counts when it is not at its default.

    Why: a run trained before a speed switch such as ``fast_cpu_lm_head`` existed must still resume.
    """
    settings = dict(meta["settings"])
    old = stored.get("settings") or {}
    for key in set(settings) - set(old):
        field = TrainSettings.model_fields.get(key)
        if field is not None and settings[key] == field.default:
            del settings[key]
    return old == settings and stored.get("data_sha256") == meta["data_sha256"]


def _check_or_write_meta(path: Path, meta: dict) -> None:
    if path.exists():
        if not _same_meta(read_json(path), meta):
            raise TrainingStateMismatch(
                f"{path.parent} holds checkpoints of a run with other settings or records; "
                "remove it to start over, or resume with the same settings"
            )
        return
    atomic_write_json(path, meta)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence datasets' bars, and with ``enabled`` TRL's tqdm bar too (rich shows our own progress)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    old_env = os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()  # tokenizing takes a moment; its bars are noise
    if enabled:
        os.environ["TQDM_DISABLE"] = "1"  # TRL's reference log-prob pass
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()
        if enabled:
            if old_env is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = old_env


@contextlib.contextmanager
def completion_only_lm_head(enabled: bool = True):
    """Project only the positions that have a label through the LM head, on CPU as well.

    TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`) already skips the
    full logits tensor, and on CUDA/XPU it also skips every position whose label is
    -100 (prompt and padding). Elsewhere it projects *every* position, to keep tile
    shapes static for compiling backends (Neuron). A CPU compiles nothing, and with
    Gemma's 262k vocabulary the LM head is most of a 270M model's FLOPs, so the
    prompt positions cost more than the whole transformer body. This makes TRL's
    own compact path apply on CPU too (same math: gathered rows, then scattered
    back; the kernels stay TRL's torch tiles). Scoped to the ``with`` block;
    a no-op when TRL lacks the hook.
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:
        yield
        return

    def compact_positions(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    trl_utils._use_triton = compact_positions
    try:
        yield
    finally:
        trl_utils._use_triton = original

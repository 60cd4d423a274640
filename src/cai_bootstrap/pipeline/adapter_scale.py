"""Weight-space interpolation for a stage (WiSE-FT): the trained LoRA update scaled back toward
the parent, the scale chosen on the validation split (``adapter_scales`` in a stage spec).

Why: SFT on a few hundred short answers teaches `tasks` stage 0 its answer format and also
moves which entity the model names. runs/tasks-std12's model answers "Albert Einstein." for the
laws of motion and "St. Petersburg." for Russia's capital, facts the base model's few-shot probe
gets right in 14 and 11 of 16 samples. Interpolating the fine-tuned and the starting weights
keeps most of a fine-tune's gain on its own task and gives back the start's robustness on other
inputs (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"): the same adapter scaled
by 0.5 passed 28 of 30 held-out facts, against 25 as trained (a diagnostic; the held-out set never
chooses here). The scale is chosen on the validation split (training topics never trained on);
ties go to the larger scale, so a flat validation score keeps the adapter as trained.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cai_bootstrap.evaluation.heldout import HeldoutScore, evaluate_heldout
from cai_bootstrap.jsonl import atomic_write_json, read_json, replace_dir
from cai_bootstrap.models.weights import write_scaled_lora
from cai_bootstrap.runs.layout import ADAPTER_SCALE_FILE
from cai_bootstrap.stages.kind import StageJob
from cai_bootstrap.stages.training_facts import stage_validation


def weights_dir_name(scale: float) -> str:
    """``adapter`` (as trained) or ``adapter-x0.5``: a scaled copy beside it."""
    return "adapter" if scale == 1.0 else f"adapter-x{scale:g}"


def choose_adapter_scale(job: StageJob, name: str, adapter: Path, install: Callable[[Path], None]) -> Path:
    """The weights to install for the attempt: ``adapter`` itself when the stage tries no other
    scale, else the scaled copy (or ``adapter``) whose model scores best on the validation split.

    Each candidate is installed in turn as model ``name`` (``install``) and scored greedily;
    rows and copies stay on disk, so a killed run resumes where it stopped, and the choice is
    recorded in ``train/attempt-<k>/adapter_scale.json``.
    """
    spec = job.spec
    scales = sorted(set(spec.adapter_scales), reverse=True)
    if scales == [1.0]:
        return adapter
    record = adapter.parent / ADAPTER_SCALE_FILE
    if record.exists():
        return adapter.parent / read_json(record)["installed"]
    cases = stage_validation(job.run_dir, spec, job.settings.seed)
    scores: dict[float, HeldoutScore] = {}
    for scale in scales:
        weights = adapter.parent / weights_dir_name(scale)
        if not weights.exists():
            replace_dir(weights, lambda tmp, s=scale: _write_scaled(adapter, s, tmp))
        install(weights)
        job.pool.drop(name)
        scores[scale] = evaluate_heldout(
            job.pool.get(name), f"{name} x{scale:g}", cases, _rows(job, scale),
            max_new_tokens=spec.sampling.max_new_tokens, progress=job.progress,
        )
        job.pool.drop(name)
    best = max(scales, key=lambda s: (scores[s].mean, s))
    job.console.print(f"{name}: adapter scale {best:g} installed; validation "
                      + ", ".join(f"x{s:g} {scores[s].mean:.1%}" for s in scales))
    if name == spec.name:  # the runner's validation score of the attempt: the same rows
        shutil.copyfile(_rows(job, best), job.paths.eval / f"validation-a{job.attempt}.jsonl")
    atomic_write_json(record, {
        "installed": weights_dir_name(best),
        "scale": best,
        "validation_cases": len(cases),
        "validation": {f"{s:g}": {"mean": scores[s].mean, "passed": sum(f.passed for f in scores[s].per_family.values())}
                       for s in scales},
        "rule": "best validation mean; ties: the larger scale",
    })
    return adapter.parent / weights_dir_name(best)


def _write_scaled(adapter: Path, scale: float, tmp: Path) -> None:
    tmp.mkdir(parents=True)
    write_scaled_lora(adapter, scale, tmp)


def _rows(job: StageJob, scale: float) -> Path:
    return job.paths.eval / f"validation-a{job.attempt}-x{scale:g}.jsonl"

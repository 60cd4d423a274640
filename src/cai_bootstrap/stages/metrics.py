"""``metrics.json`` of a stage attempt: a kind's `StageEvaluation` plus the data's yield and training's result.

Why here: the kinds' evaluations and the runner both need the same layout, and the
tests check it on a kind's evaluation alone.
"""

from __future__ import annotations

from cai_bootstrap.jsonl import iter_jsonl, read_json
from cai_bootstrap.stages.kind import StageEvaluation, StageJob


def data_yield(job: StageJob) -> dict:
    """Candidates generated and kept, and why the others were dropped."""
    generated = kept = 0
    by_filter: dict[str, int] = {}
    for rec in iter_jsonl(job.paths.data):
        generated += 1
        if rec.get("kept"):
            kept += 1
        else:
            reason = rec.get("drop_reason") or "unspecified"
            by_filter[reason] = by_filter.get(reason, 0) + 1
    return {"generated": generated, "kept": kept, "by_filter": by_filter}


def stage_metrics(job: StageJob, evaluation: StageEvaluation) -> dict:
    spec, paths, attempt, gate = job.spec, job.paths, job.attempt, evaluation.gate
    result_file = paths.train(attempt) / "train_result.json"
    training = read_json(result_file) if result_file.exists() else {}
    previous = read_json(paths.metrics) if paths.metrics.exists() else {}
    history = [h for h in previous.get("history", []) if h.get("attempt") != attempt]
    entry = {"attempt": attempt, "value": gate.value, "passed": gate.passed}
    if "validation" in evaluation.extra:
        entry["validation"] = evaluation.extra["validation"]["mean"]
    if "adapter_scale" in evaluation.extra:
        entry["adapter_scale"] = evaluation.extra["adapter_scale"]["scale"]
    history.append(entry)
    metrics = {
        "stage": spec.name,
        "kind": spec.kind,
        "threshold": spec.threshold,
        "metric": gate.metric,
        "value": gate.value,
        "passed": gate.passed,
        "gate_message": gate.message,
        "attempts": attempt + 1,
        "history": history,
        "heldout": evaluation.heldout.model_dump(),
        "base_heldout": evaluation.base.model_dump() if evaluation.base else None,
        "retained": evaluation.retained,
        "data": data_yield(job),
        "training": training,
        "tokens": {"trained": training.get("train_tokens", 0)},
    }
    metrics.update(evaluation.extra)
    return metrics

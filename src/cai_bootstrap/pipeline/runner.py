"""Execute a curriculum stage by stage; each stage is a list of phases:

    build -> train -> install -> evaluate -> gate (pass | retry | keep the best attempt, stop or continue)

Each phase is resumable: ``data.jsonl`` is append-only and builders skip finished chunks,
a training attempt resumes from its last checkpoint, held-out rows are appended per item,
and a stage whose state is ``passed`` or ``continued`` is never redone. What differs
between kinds of stage is the kind's business (`cai_bootstrap.stages.registry`).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.evaluation.gates import GateResult
from cai_bootstrap.evaluation.heldout import HeldoutScore, evaluate_heldout
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.pipeline.control import run_control
from cai_bootstrap.pipeline.samples import write_samples
from cai_bootstrap.pipeline.setup import RunError, add_manifest_warning, create_run, extend_run, load_run
from cai_bootstrap.pipeline.steps import (
    build_data,
    finish,
    install_model,
    replay_records,
    timed,
    train_and_install,
    training_set,
)
from cai_bootstrap.runs.lock import run_lock
from cai_bootstrap.runs.layout import ADAPTER_SCALE_FILE, FINISHED, StagePaths, StageStatus, now_iso
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages import rounds
from cai_bootstrap.stages.heldout_sets import plan_known_heldout
from cai_bootstrap.stages.training_facts import plan_known_training, stage_validation
from cai_bootstrap.stages.kind import StageJob, StageKind
from cai_bootstrap.stages.metrics import stage_metrics
from cai_bootstrap.stages.registry import get_kind, stage_job

__all__ = [
    "GateFailed", "RunError", "create_run", "execute", "execute_controls", "extend_run", "keep_best_attempt",
    "load_run", "replay_records", "run_stage",
]


class GateFailed(RunError):
    """A stage missed its threshold after its retries and ``on_fail`` is ``stop``."""


def execute(run_dir: Path, console: Console | None = None, progress: bool = True) -> list[StageStatus]:
    """Run (or resume) every selected stage in order. The top level of a run."""
    with run_lock(run_dir):
        return _execute(run_dir, console or Console(), progress)


def _execute(run_dir: Path, console: Console, progress: bool) -> list[StageStatus]:
    manifest, settings, curriculum = load_run(run_dir)
    pool = ModelPool(run_dir, settings.model, settings.engine, settings.judge_model)
    stages = [s for s in curriculum.stages if s.name in manifest["stages"]]
    if any(s.heldout_known for s in stages):  # before any stage runs: which held-out facts the base knows
        plan = plan_known_heldout(run_dir, stages, settings.seed, pool.get("base"), progress)
        for name, p in plan.items():
            console.print(f"{name}: held-out set of {p['cases']} cases; {p['replaced']} cases whose fact the base "
                          f"model does not know ({p.get('criterion', 'sampled')}) were replaced "
                          f"({len(p['unknown_facts'])} of {p['facts_probed']} facts probed unknown)")
    if any(s.train_known or s.probes_validation for s in stages):
        # before any stage runs: which training facts the base knows (for training, or for validation only)
        for name, p in plan_known_training(run_dir, stages, settings.seed, pool.get("base"), progress).items():
            if "criterion" in p:
                console.print(f"{name}: {p['facts_left_out']} of {p['facts_probed']} training facts left out of "
                              f"training, the base model not knowing them ({p['criterion']})")
            if "validation_criterion" in p:
                console.print(f"{name}: validation asks only training facts the base model knows "
                              f"({p['validation_criterion']}): {len(p['validation_unknown_topics'])} of "
                              f"{p['validation_facts_probed']} probed topics left out of validation")
    results = []
    for index in range(len(stages)):
        results.append(run_stage(run_dir, stages, index, settings, pool, console, progress))
        if settings.control == "base":
            run_control(run_dir, stages, index, settings, pool, console, progress)
    return results


def execute_controls(run_dir: Path, only: list[str] | None = None, console: Console | None = None,
                     progress: bool = True) -> list[dict]:
    """The control experiment on the finished stages of an existing run (`ablate`)."""
    console = console or Console()
    with run_lock(run_dir):
        return _execute_controls(run_dir, only, console, progress)


def _execute_controls(run_dir: Path, only: list[str] | None, console: Console, progress: bool) -> list[dict]:
    manifest, settings, curriculum = load_run(run_dir)
    pool = ModelPool(run_dir, settings.model, settings.engine, settings.judge_model)
    stages = [s for s in curriculum.stages if s.name in manifest["stages"]]
    unknown = sorted(set(only or []) - {s.name for s in stages})
    if unknown:
        raise RunError(f"unknown stages {unknown}; the run has {[s.name for s in stages]}")
    results = []
    for index, spec in enumerate(stages):
        if only and spec.name not in only:
            continue
        result = run_control(run_dir, stages, index, settings, pool, console, progress)
        if result:
            results.append(result)
    return results


def run_stage(
    run_dir: Path,
    stages: list[StageSpec],
    index: int,
    settings: RunSettings,
    pool: ModelPool,
    console: Console,
    progress: bool = True,
) -> StageStatus:
    spec = stages[index]
    kind = get_kind(spec.kind)
    paths = StagePaths(run_dir, spec.name)
    status = paths.load_status()
    if status.state in FINISHED:
        console.print(f"[dim]{spec.name}: already {status.state}, skipped[/dim]")
        return status
    if status.state == "failed":
        raise GateFailed(f"{spec.name} failed its gate earlier: {status.message}")
    status.started = status.started or now_iso()
    console.rule(f"[bold]{spec.name}[/bold] ({spec.kind}) {spec.description}")
    while True:
        job = stage_job(run_dir, stages, index, settings, pool, paths, status.attempt, progress, console)
        build_phase(job, status)
        train_phase(job, status)
        gate = evaluate_phase(job, kind, status)
        if gate.passed:
            return finish(paths, status, "passed", gate.message)
        more = spec.rounds.count or spec.retry.max_retries  # a stage has rounds or retries, never both
        if job.attempt < more:
            status.attempt += 1
            if spec.rounds.count:
                status.message = f"round {status.attempt}: {gate.message}"
                note = "the stage's own model writes more verified data, then the stage trains again from its parent"
                console.print(f"[yellow]{spec.name}: round {status.attempt}/{more}: {note}")
            else:
                status.message = f"retrying: {gate.message}"
                console.print(f"[yellow]{spec.name}: retry {status.attempt}/{more} with more data and epochs")
            paths.save_status(status)
            continue
        return gate_failed(job, kind, status, gate)


def build_phase(job: StageJob, status: StageStatus) -> None:
    """Role models write the attempt's candidates into ``data.jsonl``."""
    tokens_before = job.pool.generated_tokens()
    timed(job.paths, status, "generating", "generate_s", lambda: build_data(job, job.resolve))
    status.generated_tokens += job.pool.generated_tokens() - tokens_before
    job.paths.save_status(status)


def train_phase(job: StageJob, status: StageStatus) -> None:
    """Train on the kept records (+ replay, + the kind's extras) and install the stage model."""
    timed(job.paths, status, "training", "train_s", lambda: train_and_install(job, job.spec.name, lambda: training_set(job)))
    job.pool.drop(job.spec.name)  # a retrained model must be reloaded


def evaluate_phase(job: StageJob, kind: StageKind, status: StageStatus) -> GateResult:
    """The kind's evaluation -> ``metrics.json`` (and a copy per attempt), ``samples.md``."""
    paths = job.paths
    evaluation = timed(paths, status, "evaluating", "eval_s", lambda: kind.evaluate(job))
    if job.spec.validation:
        score = timed(paths, status, "evaluating", "eval_s", lambda: validation_score(job))
        evaluation.extra["validation"] = score.model_dump()
    scale_record = paths.train(job.attempt) / ADAPTER_SCALE_FILE
    if scale_record.exists():
        evaluation.extra["adapter_scale"] = read_json(scale_record)
    if rounds.is_round(job.spec, job.attempt) or (job.spec.rounds.count and job.attempt == 0):
        evaluation.extra["rounds"] = round_stats(job.paths, job.attempt)
    metrics = stage_metrics(job, evaluation)
    metrics["timings"] = dict(status.timings)
    metrics.setdefault("tokens", {})["generated"] = status.generated_tokens
    atomic_write_json(paths.metrics, metrics)
    atomic_write_json(paths.eval / f"metrics-a{job.attempt}.json", metrics)
    write_samples(paths, job.spec, job.attempt)
    job.console.print(("[green]" if evaluation.gate.passed else "[red]") + escape(evaluation.gate.message))
    return evaluation.gate


def validation_score(job: StageJob) -> HeldoutScore:
    """The stage model on the stage's validation split (training instances never trained on)."""
    spec = job.spec
    return evaluate_heldout(
        job.pool.get(spec.name), spec.name, stage_validation(job.run_dir, spec, job.settings.seed),
        job.paths.eval / f"validation-a{job.attempt}.jsonl", max_new_tokens=spec.sampling.max_new_tokens,
        progress=job.progress,
    )


def round_stats(paths: StagePaths, attempt: int) -> list[dict]:
    """Per round up to ``attempt``: fresh instances, pass@k of the writing model on them, records kept."""
    files = sorted(paths.eval.glob("round-*.json"), key=lambda f: int(f.stem.split("-")[1]))
    return [read_json(f) for f in files if int(f.stem.split("-")[1]) <= attempt]


def gate_failed(job: StageJob, kind: StageKind, status: StageStatus, gate: GateResult) -> StageStatus:
    """Out of attempts: keep the best one (where the kind ranks attempts), then continue or stop."""
    spec, paths = job.spec, job.paths
    if kind.keeps_best_attempt:
        gate = keep_best_attempt(job.run_dir, spec, job.settings, job.previous, paths, status, gate, job.console)
        job.pool.drop(spec.name)
    if spec.on_fail == "continue":
        warning = f"GATE FAILED but continued (on_fail=continue): {gate.message}"
        add_manifest_warning(job.run_dir, warning)
        job.console.print(f"[bold red on yellow] WARNING [/] {escape(warning)}")
        return finish(paths, status, "continued", gate.message)
    finish(paths, status, "failed", gate.message)
    raise GateFailed(gate.message)


def keep_best_attempt(run_dir, spec, settings, previous, paths, status, gate, console) -> GateResult:
    """After the last failed attempt, install the attempt with the best validation score
    (``spec.validation`` > 0) or, without a validation split, the best held-out score.

    Why: a retry trains on more data for more epochs and can score lower (measured:
    stage 2 fell from 40.6% to 31.2%); the next stage should build on the better model.
    The choice is made on the held-out set itself, so the figure kept is the best of
    the attempts: ``metrics.json`` says so (``selected_attempt``, ``selection``).
    """
    history = read_json(paths.metrics)["history"]
    on_validation = all(h.get("validation") is not None for h in history)
    score = (lambda h: h["validation"]) if on_validation else (lambda h: h["value"])
    best = max(history, key=lambda h: (score(h), h["attempt"]))["attempt"]  # ties: the latest
    last = status.attempt
    metrics_file = paths.eval / f"metrics-a{best}.json"
    if best == last or not metrics_file.exists():
        return gate
    console.print(f"[yellow]{spec.name}: keeping attempt {best} ({_pct(history, best)}) "
                  f"instead of attempt {last} ({_pct(history, last)})")
    install_model(run_dir, settings, previous, spec.name, paths.installed_weights(best), paths)
    metrics = read_json(metrics_file)
    if "rounds" in metrics:  # every round that ran, not only those before the attempt kept
        metrics["rounds"] = round_stats(paths, last)
    metrics.update(
        history=history, attempts=last + 1, selected_attempt=best, timings=dict(status.timings),
        selection=(f"best validation score of {last + 1} attempts (validation: training instances never trained "
                   "on; the held-out set only scores)") if on_validation else
                  f"best held-out score of {last + 1} attempts (chosen on the held-out set, so optimistic)",
    )
    atomic_write_json(paths.metrics, metrics)
    write_samples(paths, spec, best)
    return GateResult(
        passed=False, metric=metrics["metric"], value=metrics["value"], threshold=spec.threshold,
        message=f"{metrics['gate_message']} (best of {last + 1} attempts: attempt {best})",
    )


def _pct(history: list[dict], attempt: int) -> str:
    value = next(h["value"] for h in history if h["attempt"] == attempt)
    return f"{100 * value:.1f}%"

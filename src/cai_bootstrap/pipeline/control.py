"""The bootstrap-contribution experiment: does the predecessor's help matter?

For a stage whose roles are played by earlier stage models, a *control* model is
trained exactly like the stage model (same parent model, same instances and seeds,
same number of training records, same training settings) from data that the base
model made with few-shot prompting in every role. Both models are scored on the
stage's held-out set; the stage's ``metrics.json`` gets a ``control`` entry that the
report plots beside the stage model.

    runs/<id>/<stage>/control-base/{state.json, data.jsonl, train/, model/, eval/, control.json}

Resumable like a stage: records are appended, training resumes from checkpoints,
held-out rows are appended per item, a finished control is skipped.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.evaluation.heldout import evaluate_heldout
from cai_bootstrap.evaluation.intervals import paired_difference
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl, read_json
from cai_bootstrap.pipeline.steps import build_data, replay_records, timed, train_and_install, training_records
from cai_bootstrap.runs.layout import FINISHED, StagePaths, now_iso
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages.heldout_sets import stage_heldout
from cai_bootstrap.stages.kind import resolve_role
from cai_bootstrap.stages.registry import get_kind, stage_job

CONTROL_DIR = "control-base"


def control_name(stage: str) -> str:
    """The control model's name in the pool (a path under the run directory)."""
    return f"{stage}/{CONTROL_DIR}"


def skip_reason(spec: StageSpec, index: int, roles: dict[str, str]) -> str | None:
    """Why a stage has no control, or None when it has one."""
    if index == 0 or all(who in ("base", "judge") for who in roles.values()):
        return "its data is already made by the base model"
    return get_kind(spec.kind).no_control_reason


def run_control(
    run_dir: Path, stages: list[StageSpec], index: int, settings: RunSettings, pool: ModelPool,
    console: Console, progress: bool = True,
) -> dict | None:
    """Build, train and score the base-data control of ``stages[index]`` (a finished stage)."""
    spec = stages[index]
    stage_paths = StagePaths(run_dir, spec.name)
    stage_status = stage_paths.load_status()
    if stage_status.state not in FINISHED:
        console.print(f"[dim]{spec.name}: control skipped, the stage is {stage_status.state}[/dim]")
        return None
    previous = stages[index - 1].name if index > 0 else None

    def resolve_stage(role: str) -> str:
        return resolve_role(spec, previous, settings, role)

    roles = {role: resolve_stage(role) for role in spec.roles} or {"answerer": resolve_stage("answerer")}
    reason = skip_reason(spec, index, roles)
    if reason:
        console.print(f"[dim]{spec.name}: no control ({reason})[/dim]")
        return None
    paths = StagePaths(run_dir, control_name(spec.name))
    status = paths.load_status()
    result_file = paths.root / "control.json"
    if status.state in FINISHED and result_file.exists():
        console.print(f"[dim]{spec.name}: control already done, skipped[/dim]")
        return _backfill_paired(read_json(result_file), spec, stage_paths, paths)
    attempt = stage_status.attempt  # same data target and epochs as the stage's final attempt
    job = stage_job(run_dir, stages, index, settings, pool, paths, attempt, progress, console)
    console.rule(f"[bold]{spec.name} control[/bold]: every role played by the base model")
    status.started = status.started or now_iso()

    def base_roles(role: str) -> str:
        who = resolve_stage(role)
        return who if who == "judge" else "base"

    def build() -> None:
        # a stage with rounds: the base model writes the first data and every round's too
        for step in range(attempt + 1) if spec.rounds.count else [attempt]:
            step_job = stage_job(run_dir, stages, index, settings, pool, paths, step, progress, console)
            build_data(step_job, base_roles, self_name="base")

    timed(paths, status, "generating", "generate_s", build)
    n_stage = len(training_records(stage_paths, spec, attempt))
    records = training_records(paths, spec, attempt)[:n_stage]
    if not records:
        raise RuntimeError(f"{spec.name} control: no base-made record survived the filters; see {paths.data}")
    n_control = len(records)
    # the stage's own replay rows: drawn for n_stage records, as the stage drew them
    replay = replay_records(run_dir, spec, n_stage, settings.seed)
    records = records + replay
    name = control_name(spec.name)

    def train() -> None:
        def announce() -> list[dict]:
            console.print(f"{spec.name} control: training {spec.training.method} on {len(records)} base-made records from {previous}")
            return records

        train_and_install(job, name, announce)

    timed(paths, status, "training", "train_s", train)
    pool.drop(name)

    def evaluate() -> dict:
        instances = stage_heldout(run_dir, spec, settings.seed)
        score = evaluate_heldout(
            pool.get(name), name, instances, paths.eval / f"heldout-{spec.name}-control.jsonl",
            max_new_tokens=spec.sampling.max_new_tokens, progress=progress,
        )
        pool.drop(name)
        return score.model_dump()

    control_score = timed(paths, status, "evaluating", "eval_s", evaluate)
    metrics = read_json(stage_paths.metrics)
    result = {
        "stage": spec.name,
        "attempt": attempt,
        "roles": {"stage": roles, "control": {role: base_roles(role) for role in roles}},
        "trained_from": previous,
        "train_records": {"stage": n_stage, "control": n_control, "replayed_to_both": len(replay)},
        "data": {"stage": metrics.get("data"), "control": _yield(paths.data)},
        "heldout": control_score,
        "stage_heldout": metrics.get("heldout"),
        "base_heldout": metrics.get("base_heldout"),
        "difference": _difference(metrics.get("heldout"), control_score),
        "timings": dict(status.timings),
    }
    result["paired"] = _paired(spec, metrics, stage_paths, paths)
    atomic_write_json(result_file, result)
    metrics["control"] = {k: result[k] for k in ("heldout", "train_records", "data", "difference", "roles", "paired")}
    atomic_write_json(stage_paths.metrics, metrics)
    status.state, status.finished = "passed", now_iso()
    status.message = f"stage {_pct(metrics.get('heldout'))} vs control {_pct(control_score)}{_ci_text(result)}"
    paths.save_status(status)
    console.print(f"{spec.name}: held-out {status.message} (stage model trained on predecessor-made data)")
    return result


def _paired(spec: StageSpec, metrics: dict, stage_paths: StagePaths, paths: StagePaths) -> dict | None:
    """The installed stage model's and the control's outcomes on the same held-out cases, and
    the difference's 95% interval (`paired_difference`); None while either row file is missing."""
    installed = metrics.get("selected_attempt", max(0, int(metrics.get("attempts", 1)) - 1))
    stage_rows = stage_paths.eval / f"heldout-{spec.name}-a{installed}.jsonl"
    control_rows = paths.eval / f"heldout-{spec.name}-control.jsonl"
    if not (stage_rows.exists() and control_rows.exists()):
        return None
    stage_passed = {r["id"]: bool(r["passed"]) for r in iter_jsonl(stage_rows)}
    control_passed = {r["id"]: bool(r["passed"]) for r in iter_jsonl(control_rows)}
    outcomes = [(passed, control_passed[i]) for i, passed in stage_passed.items() if i in control_passed]
    return {"stage_attempt": installed, **paired_difference(outcomes)}


def _backfill_paired(result: dict, spec: StageSpec, stage_paths: StagePaths, paths: StagePaths) -> dict:
    """A control finished before ``paired`` existed gets it now, in ``control.json`` and the
    stage's ``metrics.json``."""
    if result.get("paired") is not None:
        return result
    metrics = read_json(stage_paths.metrics)
    paired = _paired(spec, metrics, stage_paths, paths)
    if paired is None:
        return result
    result = {**result, "paired": paired}
    atomic_write_json(paths.root / "control.json", result)
    if "control" in metrics:
        metrics["control"]["paired"] = paired
        atomic_write_json(stage_paths.metrics, metrics)
    return result


def _ci_text(result: dict) -> str:
    ci = (result.get("paired") or {}).get("ci95")
    if not ci:
        return ""
    diff = result["paired"]["difference"]
    return f", difference {100 * diff:+.1f} pt [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _yield(data: Path) -> dict:
    rows = list(iter_jsonl(data))
    return {"generated": len(rows), "kept": sum(bool(r.get("kept")) for r in rows)}


def _mean(score: dict | None) -> float | None:
    return score.get("mean") if score else None


def _difference(stage: dict | None, control: dict | None) -> float | None:
    a, b = _mean(stage), _mean(control)
    return None if a is None or b is None else round(a - b, 4)


def _pct(score: dict | None) -> str:
    m = _mean(score)
    return "n/a" if m is None else f"{100 * m:.1f}%"

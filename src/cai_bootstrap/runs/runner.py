"""Execute a curriculum stage by stage: build data -> train -> evaluate -> gate.

Reads as a list of stages (see `execute`); each stage is resumable:
``data.jsonl`` is append-only and builders skip finished chunks, a training
attempt resumes from its last checkpoint, held-out rows are appended per item,
and a stage whose state is ``passed`` or ``continued`` is never redone.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from cai_bootstrap.config import (
    Curriculum,
    RunSettings,
    StageSpec,
    curriculum_path,
    load_curriculum,
)
from cai_bootstrap.evaluation.gates import GateResult, heldout_gate
from cai_bootstrap.evaluation.heldout import HeldoutScore, evaluate_heldout, heldout_instances
from cai_bootstrap.jsonl import atomic_write_json, atomic_write_text, iter_jsonl, read_json
from cai_bootstrap.models.loading import LINEAGE_FILE, load_model
from cai_bootstrap.runs.layout import FINISHED, StagePaths, StageStatus, now_iso
from cai_bootstrap.runs.manifest import git_commit, input_hashes, package_versions
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages.context import RecordSink, StageContext

BUILDERS = {
    "explicit": "cai_bootstrap.stages.explicit",
    "implicit": "cai_bootstrap.stages.implicit",
    "generation": "cai_bootstrap.stages.generation",
    "evaluation": "cai_bootstrap.stages.evaluation",
    "revision": "cai_bootstrap.stages.revision",
    "constitutional": "cai_bootstrap.stages.constitutional",
    "task": "cai_bootstrap.stages.task",
}


class RunError(RuntimeError):
    """A run cannot continue; the message says why and where to look."""


class GateFailed(RunError):
    """A stage missed its threshold after its retries and ``on_fail`` is ``stop``."""


# ------------------------------------------------------------------ run setup


def default_run_dir(settings: RunSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(settings.curriculum).stem}-{settings.preset}-{stamp}"


def create_run(settings: RunSettings, out: Path | None = None) -> Path:
    """Write the manifest of a new run (refuses to overwrite an existing one)."""
    run_dir = Path(out) if out else default_run_dir(settings)
    if (run_dir / "manifest.json").exists():
        raise RunError(f"{run_dir} already holds a run; use `cai-bootstrap resume {run_dir}` or another --out")
    curriculum = load_curriculum(settings.curriculum, settings.preset, settings.stage_overrides)
    stages = _selected_stages(curriculum, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": run_dir.name,
        "created": now_iso(),
        "settings": settings.model_dump(),
        "curriculum": curriculum.model_dump(),
        "curriculum_file": str(curriculum_path(settings.curriculum)),
        "stages": [s.name for s in stages],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "seeds": {"run": settings.seed, "stages": "derived: sha256(run_seed, stage, attempt)"},
        "input_hashes": input_hashes(curriculum_path(settings.curriculum)),
        "hardware": _hardware(),
        "warnings": [],
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    return run_dir


def extend_run(run_dir: Path, wanted: list[str], stage_overrides: dict | None = None) -> list[str]:
    """Add the stages of ``wanted`` that an existing run lacks (e.g. stage 6 after a
    run of stages 1-5), from the curriculum file as it is now. Returns the added names.

    ``stage_overrides`` (``--set stage_overrides=...`` on the resumed command) may set up
    the stages being added; for a stage the run already has they must equal the run's own,
    since its data and model would no longer match the manifest. Refuses, for the same
    reason, when such a stage is specified differently in the curriculum file now.
    """
    manifest, settings, old = load_run(run_dir)
    new = [name for name in wanted if name not in manifest["stages"]]
    overrides = dict(settings.stage_overrides)
    for name, value in (stage_overrides or {}).items():
        if overrides.get(name) == value:
            continue
        if name not in new:
            where = "is already part of the run" if name in manifest["stages"] else "is not a stage being added"
            raise RunError(
                f"stage_overrides for {name!r}: {name} {where} ({run_dir} has {manifest['stages']}, adding "
                f"{new or 'none'}); its settings are the run's ({overrides.get(name, {})}). Start a new run to change them"
            )
        overrides[name] = value
    if not new:
        return []
    curriculum = load_curriculum(settings.curriculum, settings.preset, overrides)
    names = [s.name for s in curriculum.stages]
    unknown = [n for n in new if n not in names]
    if unknown:
        raise RunError(f"unknown stages {unknown}; curriculum has {names}")
    before = {s.name: s for s in old.stages}
    now = {s.name: s for s in curriculum.stages}
    changed = [n for n in manifest["stages"] if before[n] != now[n]]
    if changed:
        raise RunError(
            f"cannot add {new} to {run_dir}: stages {changed} are specified differently in "
            f"{curriculum_path(settings.curriculum)} now than when the run began; start a new run"
        )
    stages = [n for n in names if n in manifest["stages"] or n in new]
    if stages[: len(manifest["stages"])] != manifest["stages"]:
        raise RunError(f"stages {new} would not follow the run's stages {manifest['stages']} in order")
    manifest["curriculum"] = curriculum.model_dump()
    manifest["stages"] = stages
    manifest["settings"]["stages"] = stages
    manifest["settings"]["stage_overrides"] = overrides
    manifest.setdefault("extended", []).append(
        {"at": now_iso(), "added": new, "git_commit": git_commit(),
         "input_hashes": input_hashes(curriculum_path(settings.curriculum))}
    )
    atomic_write_json(run_dir / "manifest.json", manifest)
    return new


def _hardware() -> dict:
    import torch

    from cai_bootstrap.models.loading import cpu_supports_bf16

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cpu_count": os.cpu_count(),
        "bf16": cpu_supports_bf16() if not cuda else True,
        "quantization": "bitsandbytes QLoRA on GPU" if cuda else "none on CPU: bf16 LoRA fallback",
    }


def _selected_stages(curriculum: Curriculum, settings: RunSettings) -> list[StageSpec]:
    if not settings.stages:
        return curriculum.stages
    names = [s.name for s in curriculum.stages]
    unknown = [s for s in settings.stages if s not in names]
    if unknown:
        raise RunError(f"unknown stages {unknown}; curriculum has {names}")
    return [s for s in curriculum.stages if s.name in settings.stages]


def load_run(run_dir: Path) -> tuple[dict, RunSettings, Curriculum]:
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        raise RunError(f"{run_dir}: no manifest.json (not a run directory)")
    manifest = read_json(path)
    settings = RunSettings.model_validate(manifest["settings"])
    curriculum = Curriculum.model_validate(manifest["curriculum"])
    return manifest, settings, curriculum


def add_manifest_warning(run_dir: Path, text: str) -> None:
    manifest = read_json(run_dir / "manifest.json")
    if text not in manifest["warnings"]:
        manifest["warnings"].append(text)
        atomic_write_json(run_dir / "manifest.json", manifest)


# ------------------------------------------------------------------ execution


def execute(run_dir: Path, console: Console | None = None, progress: bool = True) -> list[StageStatus]:
    """Run (or resume) every selected stage in order. The top level of a run."""
    console = console or Console()
    manifest, settings, curriculum = load_run(run_dir)
    pool = ModelPool(run_dir, settings.model, settings.engine, settings.judge_model)
    stages = [s for s in curriculum.stages if s.name in manifest["stages"]]
    results = []
    for index, spec in enumerate(stages):
        results.append(run_stage(run_dir, stages, index, settings, pool, console, progress))
        if settings.control == "base":
            from cai_bootstrap.runs.control import run_control

            run_control(run_dir, stages, index, settings, pool, console, progress)
    return results


def execute_controls(run_dir: Path, only: list[str] | None = None, console: Console | None = None,
                     progress: bool = True) -> list[dict]:
    """The control experiment on the finished stages of an existing run (`ablate`)."""
    from cai_bootstrap.runs.control import run_control

    console = console or Console()
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
    paths = StagePaths(run_dir, spec.name)
    status = paths.load_status()
    if status.state in FINISHED:
        console.print(f"[dim]{spec.name}: already {status.state}, skipped[/dim]")
        return status
    if status.state == "failed":
        raise GateFailed(f"{spec.name} failed its gate earlier: {status.message}")
    previous = stages[index - 1].name if index > 0 else None
    status.started = status.started or now_iso()
    console.rule(f"[bold]{spec.name}[/bold] ({spec.kind}) {spec.description}")
    while True:
        attempt = status.attempt
        tokens_before = pool.generated_tokens()
        _timed(paths, status, "generating", "generate_s", lambda: _build_data(run_dir, spec, settings, pool, previous, attempt, paths, console))
        status.generated_tokens += pool.generated_tokens() - tokens_before
        paths.save_status(status)
        _timed(paths, status, "training", "train_s", lambda: _train(run_dir, spec, settings, previous, attempt, paths, console, progress))
        pool.drop(spec.name)  # a retrained model must be reloaded
        gate, metrics = _timed(
            paths, status, "evaluating", "eval_s",
            lambda: _evaluate(run_dir, stages, index, settings, pool, attempt, paths, progress),
        )
        metrics["timings"] = dict(status.timings)
        metrics.setdefault("tokens", {})["generated"] = status.generated_tokens
        atomic_write_json(paths.metrics, metrics)
        atomic_write_json(paths.eval / f"metrics-a{attempt}.json", metrics)
        _write_samples(paths, spec, attempt)
        console.print(("[green]" if gate.passed else "[red]") + escape(gate.message))
        if gate.passed:
            return _finish(paths, status, "passed", gate.message)
        if attempt < spec.retry.max_retries:
            status.attempt += 1
            status.message = f"retrying: {gate.message}"
            paths.save_status(status)
            console.print(f"[yellow]{spec.name}: retry {status.attempt}/{spec.retry.max_retries} with more data and epochs")
            continue
        gate = keep_best_attempt(run_dir, spec, settings, previous, paths, status, gate, console)
        pool.drop(spec.name)
        if spec.on_fail == "continue":
            warning = f"GATE FAILED but continued (on_fail=continue): {gate.message}"
            add_manifest_warning(run_dir, warning)
            console.print(f"[bold red on yellow] WARNING [/] {escape(warning)}")
            return _finish(paths, status, "continued", gate.message)
        _finish(paths, status, "failed", gate.message)
        raise GateFailed(gate.message)


def keep_best_attempt(run_dir, spec, settings, previous, paths, status, gate, console) -> GateResult:
    """After the last failed attempt, install the attempt with the best held-out score.

    Why: a retry trains on more data for more epochs and can score lower (measured:
    stage 2 fell from 40.6% to 31.2%); the next stage should build on the better model.
    The choice is made on the held-out set itself, so the figure kept is the best of
    the attempts: ``metrics.json`` says so (``selected_attempt``, ``selection``).
    """
    if spec.kind == "constitutional":
        return gate
    history = read_json(paths.metrics)["history"]
    best = max(history, key=lambda h: (h["value"], h["attempt"]))["attempt"]  # ties: the latest
    last = status.attempt
    metrics_file = paths.eval / f"metrics-a{best}.json"
    if best == last or not metrics_file.exists():
        return gate
    console.print(f"[yellow]{spec.name}: keeping attempt {best} ({_pct(history, best)}) "
                  f"instead of attempt {last} ({_pct(history, last)})")
    install_model(run_dir, settings, previous, spec.name, paths.train(best) / "adapter", paths)
    metrics = read_json(metrics_file)
    metrics.update(
        history=history, attempts=last + 1, selected_attempt=best, timings=dict(status.timings),
        selection=f"best held-out score of {last + 1} attempts (chosen on the held-out set, so optimistic)",
    )
    atomic_write_json(paths.metrics, metrics)
    _write_samples(paths, spec, best)
    return GateResult(
        passed=False, metric=metrics["metric"], value=metrics["value"], threshold=spec.threshold,
        message=f"{metrics['gate_message']} (best of {last + 1} attempts: attempt {best})",
    )


def _pct(history: list[dict], attempt: int) -> str:
    value = next(h["value"] for h in history if h["attempt"] == attempt)
    return f"{100 * value:.1f}%"


def _timed(paths: StagePaths, status: StageStatus, state: str, key: str, fn):
    status.state = state  # type: ignore[assignment]
    paths.save_status(status)
    t0 = time.time()
    try:
        return fn()
    finally:
        status.timings[key] = round(status.timings.get(key, 0.0) + time.time() - t0, 2)
        status.timings["total_s"] = round(
            sum(v for k, v in status.timings.items() if k != "total_s"), 2
        )
        paths.save_status(status)


def _finish(paths: StagePaths, status: StageStatus, state: str, message: str) -> StageStatus:
    status.state = state  # type: ignore[assignment]
    status.finished = now_iso()
    status.message = message
    paths.save_status(status)
    return status


def role_resolver(spec: StageSpec, previous: str | None, settings: RunSettings):
    def resolve(role: str) -> str:
        who = spec.roles.get(role, "previous")
        if who == "previous":
            who = previous or "base"
        if role == "judge" and who == "base" and settings.judge_model:
            return "judge"
        if who == spec.name:
            raise RunError(f"{spec.name}: role {role!r} cannot be played by the model being trained")
        return who

    return resolve


def _build_data(run_dir, spec, settings, pool, previous, attempt, paths, console) -> None:
    build_data(spec, settings, pool, role_resolver(spec, previous, settings), attempt, paths, console)


def build_data(spec, settings, pool, resolve, attempt, paths, console) -> None:
    """Run the stage kind's builder with ``resolve`` (role -> model name) into ``paths.data``."""
    sink = RecordSink(paths.data)
    ctx = StageContext(
        spec=spec, settings=settings, stage_dir=paths.root, sink=sink,
        engine_for=lambda role: pool.get(resolve(role)),
        role_name=lambda role: _provenance_name(resolve(role), pool),
        attempt=attempt, console=console,
    )
    try:
        module = importlib.import_module(BUILDERS[spec.kind])
        module.build(ctx)
    finally:
        sink.close()
    console.print(f"{spec.name}: {sink.counts['kept']} kept of {sink.counts['written']} candidates (target {ctx.target_examples})")


def _provenance_name(name: str, pool: ModelPool) -> str:
    if name == "base":
        return f"base:{pool.base_ref}"
    if name == "judge":
        return f"judge:{pool.ref('judge')}"
    return name


def training_records(paths: StagePaths, spec: StageSpec, attempt: int) -> list[dict]:
    target = int(round(spec.examples * (spec.retry.data_multiplier**attempt)))
    kept = [r for r in iter_jsonl(paths.data) if r.get("kept") and r.get("chosen")]
    return kept[:target]


def replay_records(run_dir: Path, spec: StageSpec, n_own: int, seed: int) -> list[dict]:
    """``spec.replay * n_own`` kept records of the earlier stages of the run, spread evenly
    over them (round robin, each stage's rows in a seeded order), marked ``replay_of``.

    Why: a stage trained only on its own format forgets the earlier ones (measured: after
    the evaluation stage, answering "Yes."/"B." to everything, the stage-4 model wrote 8
    usable revisions out of 180 candidates for stage 5).
    """
    n = int(round(spec.replay * n_own))
    if n <= 0:
        return []
    manifest = read_json(run_dir / "manifest.json")
    earlier = manifest["stages"][: manifest["stages"].index(spec.name)]
    pools = []
    for name in earlier:
        rows = [r for r in iter_jsonl(StagePaths(run_dir, name).data) if r.get("kept") and r.get("chosen")]
        random.Random(f"{seed}:{spec.name}:replay:{name}").shuffle(rows)
        pools.append([{**r, "replay_of": name} for r in rows])
    out: list[dict] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def stage_helpful_samples(spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> list[dict]:
    """A constitutional stage's SFT-only helpful samples (`constitutional.helpful_samples`), if asked for."""
    if spec.kind != "constitutional" or spec.training.method == "dpo":
        return []
    from cai_bootstrap.stages.constitutional import helpful_samples, stage_options

    share = stage_options(spec).helpful_samples
    return helpful_samples(list(iter_jsonl(paths.data)), int(round(share * n_own)), seed) if share > 0 else []


def stage_contrast_pairs(spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> list[dict]:
    """A constitutional stage's contrast pairs (`constitutional.contrast_pairs`), if asked for."""
    if spec.kind != "constitutional":
        return []
    from cai_bootstrap.stages.constitutional import contrast_pairs, stage_options

    share = stage_options(spec).contrast_pairs
    return contrast_pairs(paths.root, int(round(share * n_own)), seed) if share > 0 else []


def _train(run_dir, spec, settings, previous, attempt, paths, console, progress) -> None:
    adapter = paths.train(attempt) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        records = training_records(paths, spec, attempt)
        if not records:
            reasons: dict[str, int] = {}
            for r in iter_jsonl(paths.data):
                reasons[r.get("drop_reason") or "?"] = reasons.get(r.get("drop_reason") or "?", 0) + 1
            raise RunError(
                f"{spec.name}: no training records survived the filters ({reasons}); see {paths.data}"
            )
        replay = replay_records(run_dir, spec, len(records), settings.seed)
        helpful = stage_helpful_samples(spec, paths, len(records), settings.seed)
        contrast = stage_contrast_pairs(spec, paths, len(records), settings.seed)
        records = records + replay + helpful + contrast
        console.print(f"{spec.name}: training {spec.training.method} on {len(records)} records "
                      f"({len(replay)} replayed from earlier stages"
                      + (f", {len(helpful)} helpful samples" if helpful else "")
                      + (f", {len(contrast)} contrast pairs" if contrast else "")
                      + f") from {previous or settings.model}")
        train_adapter(run_dir, spec, settings, previous, attempt, records, paths, progress)
    install_model(run_dir, settings, previous, spec.name, adapter, paths)


def train_adapter(run_dir, spec, settings, previous, attempt, records, paths, progress) -> None:
    """LoRA on the previous stage's model (or the base), with the attempt's epochs and seed."""
    from cai_bootstrap.training import train_stage

    parent_ref = str(run_dir / previous / "model") if previous else settings.model
    loaded = load_model(parent_ref, dtype=settings.engine.dtype)
    train_settings = spec.training.model_copy(
        update={"epochs": spec.training.epochs + attempt * spec.retry.extra_epochs, "seed": settings.seed + attempt}
    )
    train_stage(loaded.model, loaded.tokenizer, records, train_settings, paths.train(attempt), progress=progress)
    del loaded


def install_model(run_dir: Path, settings: RunSettings, previous, name: str, adapter: Path, paths: StagePaths) -> None:
    """Model = base + adapters of every earlier stage + this one, merged in order.

    ``name`` is the model's name in the pool (a stage, or ``<stage>/control-base``);
    adapter paths in ``lineage.json`` are relative to the run directory.
    """
    if previous:
        parent = read_json(run_dir / previous / "model" / LINEAGE_FILE)
        base, adapters = parent["base"], list(parent["adapters"])
    else:
        base, adapters = settings.model, []
    lineage = {
        "base": base,
        "base_seed": 0,
        "adapters": adapters + [f"{name}/model/adapter"],
        "stage": name,
        "trained_from": previous or "base",
        "train_dir": str(adapter.parent.relative_to(run_dir)),
    }
    depth = os.path.relpath(run_dir, paths.model)
    if depth != os.path.join("..", ".."):  # read_lineage's default: <run>/<stage>/model
        lineage["run_dir"] = depth
    tmp = paths.model.with_name("model.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(adapter, tmp / "adapter")
    atomic_write_json(tmp / LINEAGE_FILE, lineage)
    if paths.model.exists():
        old = paths.model.with_name("model.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(paths.model, old)
        os.replace(tmp, paths.model)
        shutil.rmtree(old)
    else:
        os.replace(tmp, paths.model)


def _evaluate(run_dir, stages, index, settings, pool, attempt, paths, progress) -> tuple[GateResult, dict]:
    spec = stages[index]
    if spec.kind == "constitutional":
        from cai_bootstrap.stages.constitutional import evaluate_stage

        return evaluate_stage(run_dir, stages, index, settings, pool, attempt, paths, progress)
    seed = settings.seed
    eval_tokens = spec.sampling.max_new_tokens
    instances = heldout_instances(spec.families, spec.heldout, seed)
    score = evaluate_heldout(
        pool.get(spec.name), spec.name, instances, paths.eval / f"heldout-{spec.name}-a{attempt}.jsonl",
        max_new_tokens=eval_tokens, progress=progress,
    )
    base = evaluate_heldout(
        pool.get("base"), "base", instances, paths.eval / "heldout-base.jsonl",
        max_new_tokens=eval_tokens, progress=progress,
    )
    retained = retained_scores(run_dir, stages, index, settings, pool, attempt, paths, progress)
    gate = heldout_gate(spec, score, str(paths.eval))
    metrics = stage_metrics(spec, paths, attempt, gate, score, base, retained)
    return gate, metrics


def retained_scores(run_dir, stages, index, settings, pool, attempt, paths, progress) -> dict[str, dict]:
    """This stage's model on every earlier stage's held-out set (skills kept?)."""
    spec = stages[index]
    out = {}
    for earlier in stages[:index]:
        if earlier.kind == "constitutional" or not earlier.families:
            continue
        inst = heldout_instances(earlier.families, earlier.heldout, settings.seed)
        score = evaluate_heldout(
            pool.get(spec.name), spec.name, inst, paths.eval / f"retained-{earlier.name}-a{attempt}.jsonl",
            max_new_tokens=earlier.sampling.max_new_tokens, progress=progress,
        )
        out[earlier.name] = score.model_dump()
    return out


def stage_metrics(spec, paths, attempt, gate: GateResult, score: HeldoutScore, base: HeldoutScore | None, retained) -> dict:
    generated = kept = 0
    by_filter: dict[str, int] = {}
    for rec in iter_jsonl(paths.data):
        generated += 1
        if rec.get("kept"):
            kept += 1
        else:
            reason = rec.get("drop_reason") or "unspecified"
            by_filter[reason] = by_filter.get(reason, 0) + 1
    result_file = paths.train(attempt) / "train_result.json"
    training = read_json(result_file) if result_file.exists() else {}
    previous = read_json(paths.metrics) if paths.metrics.exists() else {}
    history = [h for h in previous.get("history", []) if h.get("attempt") != attempt]
    history.append({"attempt": attempt, "value": gate.value, "passed": gate.passed})
    return {
        "stage": spec.name,
        "kind": spec.kind,
        "threshold": spec.threshold,
        "metric": gate.metric,
        "value": gate.value,
        "passed": gate.passed,
        "gate_message": gate.message,
        "attempts": attempt + 1,
        "history": history,
        "heldout": score.model_dump(),
        "base_heldout": base.model_dump() if base else None,
        "retained": retained,
        "data": {"generated": generated, "kept": kept, "by_filter": by_filter},
        "training": training,
        "tokens": {"trained": training.get("train_tokens", 0)},
    }


def _write_samples(paths: StagePaths, spec: StageSpec, attempt: int, k: int = 5) -> None:
    records = list(iter_jsonl(paths.data))
    rng = random.Random(0)
    kept = [r for r in records if r.get("kept")]
    dropped = [r for r in records if not r.get("kept")]
    lines = [f"# {spec.name} ({spec.kind}) samples", "", spec.description, "", "## Kept training records", ""]
    for r in rng.sample(kept, min(k, len(kept))):
        lines += _sample_block(r)
    lines += ["## Dropped candidates", ""]
    for r in rng.sample(dropped, min(k, len(dropped))):
        lines += _sample_block(r)
    rows_file = paths.eval / f"heldout-{spec.name}-a{attempt}.jsonl"
    rows = list(iter_jsonl(rows_file))
    lines += ["## Held-out outputs of the stage model", ""]
    for row in rows[: 2 * k]:
        mark = "PASS" if row.get("passed") else "FAIL"
        lines += [f"- **{mark}** `{row.get('family')}` — {row.get('prompt')!r} → {row.get('output')!r} ({row.get('reason', '')})"]
    atomic_write_text(paths.samples, "\n".join(lines) + "\n")


def _sample_block(r: dict) -> list[str]:
    prov = r.get("provenance", {})
    who = ", ".join(f"{k}: {v.get('by')}" for k, v in prov.items() if isinstance(v, dict))
    out = [f"- `{r.get('family')}` ({who})", f"  - prompt: {r.get('prompt')!r}", f"  - chosen: {r.get('chosen')!r}"]
    if r.get("rejected"):
        out.append(f"  - rejected: {r.get('rejected')!r}")
    if not r.get("kept"):
        out.append(f"  - dropped: {r.get('drop_reason')}")
    return out + [""]

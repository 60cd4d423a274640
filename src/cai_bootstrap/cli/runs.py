"""Commands that run a curriculum: run, resume, ablate, status."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rich.markup import escape

from cai_bootstrap.cli.common import EXIT_GATE_FAILED, EXIT_GATE_STOPPED, app, console, disk_full, err, fail, known_errors

STRICT_HELP = (f"exit {EXIT_GATE_FAILED} when any stage's gate failed, also where the curriculum lets the run "
               "continue past it (on_fail: continue)")

def task_stage_override(task: str, preset: str) -> dict:
    """Stage 0 of `tasks` made a ``task`` stage. Outside `tiny`, a task other than factual QA (whose
    cap the curriculum tunes) gets the token cap its answers need: stage 0's 64 tokens at `quick` and
    `standard` cut a summary (72) or an explanation (128) short, held-out answers included."""
    from cai_bootstrap.stages.task_prompts import token_bucket
    from cai_bootstrap.tasks.types import TASK_TYPES, task_family

    override: dict = {"families": [task], "options": {"task": task}}
    if preset != "tiny" and task != "factual_qa" and task in TASK_TYPES:  # an unknown task fails in the config check
        override["sampling"] = {"max_new_tokens": token_bucket(task_family(task).max_new_tokens)}
    return override


@app.command()
def run(
    curriculum: str = typer.Option("skills", "--curriculum", "-c", help="built-in name or YAML path"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="base model (default per preset)"),
    preset: str = typer.Option("quick", "--preset", "-p", help="tiny | quick | standard | full"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<curriculum>-<preset>-<time>)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of run settings"),
    set_: list[str] = typer.Option([], "--set", help="override a setting: KEY=VALUE (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="run seed (default 0): data, training and held-out cases follow it"),
    stages: Optional[str] = typer.Option(None, help="comma-separated stage names to run (a prefix)"),
    engine: Optional[str] = typer.Option(None, help="transformers | openai | vllm"),
    base_url: Optional[str] = typer.Option(None, help="server for --engine openai"),
    task: Optional[str] = typer.Option(None, help="tasks curriculum: the stage-0 task (factual_qa, summarization, explanation, ...)"),
    control: Optional[str] = typer.Option(
        None, help="'base': also train each stage's control model on data the base model made (see `ablate`)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="plain logs instead of progress bars"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
) -> None:
    """Start a curriculum run (the same command again continues it; other settings into the same --out are refused)."""
    from cai_bootstrap.config import load_run_settings
    from cai_bootstrap.pipeline.setup import check_run, check_same_settings, create_run, default_run_dir, extend_run
    from cai_bootstrap.runs.lock import run_lock

    default_model = {"tiny": "tiny", "quick": "gemma-3-270m", "standard": "gemma-3-270m"}.get(preset)
    flags: dict = {"curriculum": curriculum, "preset": preset, "model": model, "seed": seed}
    if stages:
        flags["stages"] = [s.strip() for s in stages.split(",")]
    overrides = list(set_)
    if engine:
        overrides.append(f"engine.backend={engine}")
    if base_url:
        overrides.append(f"engine.base_url={base_url}")
    if control:
        overrides.append(f"control={control}")
    if task:
        overrides.append(f"stage_overrides={json.dumps({'stage-0': task_stage_override(task, preset)})}")
    with ExitStack() as hold:
        try:
            settings = load_run_settings(str(config) if config else None, overrides, flags)
            if model is None and "model" not in (settings.model_fields_set or set()) and default_model:
                settings = settings.model_copy(update={"model": default_model})
            if settings.engine.api_key:  # used by this process, never written into the manifest
                os.environ["OPENAI_API_KEY"] = settings.engine.api_key
            run_dir = out if out is not None else default_run_dir(settings)
            if not (run_dir / "manifest.json").exists():
                check_run(settings)  # everything checked before the directory is made or locked
            run_dir.mkdir(parents=True, exist_ok=True)
            hold.enter_context(run_lock(run_dir))  # one writer, from here until the command ends
            if (run_dir / "manifest.json").exists():
                check_same_settings(run_dir, settings)  # `resume` continues a run; `run` never changes one
                added = extend_run(run_dir, settings.stages or [], settings.stage_overrides)
                console.print(f"{run_dir} exists: resuming it" + (f", with the added stages {added}" if added else ""))
            else:
                create_run(settings, run_dir)
            console.print(f"run directory: [bold]{run_dir}[/]")
        except known_errors() as exc:
            fail(str(exc))
        _execute(run_dir, not no_progress, strict)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="run directory"),
    no_progress: bool = typer.Option(False, "--no-progress", help="plain logs instead of progress bars"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
) -> None:
    """Continue a run where it stopped, with its own settings (finished records and stages are kept)."""
    _execute(run_dir, not no_progress, strict)


def _execute(run_dir: Path, progress: bool, strict: bool = False) -> None:
    """Run or resume, then the status table and the report: every step's known errors as one line."""
    from cai_bootstrap.pipeline.runner import GateFailed, execute
    from cai_bootstrap.runs.lock import run_lock

    try:
        with run_lock(run_dir):
            try:
                execute(run_dir, console, progress=progress)
            except GateFailed as exc:
                err.print(f"[bold red]stopped:[/] {escape(str(exc))}")
                _status_table(run_dir)
                _write_report(run_dir)
                raise typer.Exit(EXIT_GATE_STOPPED) from None
            failed = _status_table(run_dir)
            _write_report(run_dir)
            if strict and failed:
                err.print(f"[bold red]--strict:[/] the gate of {', '.join(failed)} failed (the run continued past it)")
                raise typer.Exit(EXIT_GATE_FAILED)
    except known_errors() as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - only a full disk is turned into one line
        if (message := disk_full(exc)) is None:
            raise
        fail(message)


@app.command()
def ablate(
    run_dir: Path = typer.Argument(..., help="run directory (stages already finished)"),
    stages: Optional[str] = typer.Option(None, help="comma-separated stages (default: every stage with a predecessor)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="plain logs instead of progress bars"),
) -> None:
    """The control experiment: retrain each stage on base-made data and compare on its held-out set."""
    from cai_bootstrap.pipeline.runner import execute_controls

    only = [s.strip() for s in stages.split(",")] if stages else None
    try:
        results = execute_controls(run_dir, only, console, progress=not no_progress)
    except known_errors() as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - only a full disk is turned into one line
        if (message := disk_full(exc)) is None:
            raise
        fail(message)
    table = Table(title="held-out: stage model (predecessor-made data) vs control (base-made data)")
    for col in ("stage", "stage model", "control", "difference", "train records (stage / control)"):
        table.add_column(col)
    for r in results:
        mean = lambda s: "n/a" if not s else f"{100 * s['mean']:.1f}%"  # noqa: E731
        diff = r["difference"]
        table.add_row(r["stage"], mean(r["stage_heldout"]), mean(r["heldout"]),
                      "n/a" if diff is None else f"{100 * diff:+.1f} pts",
                      f"{r['train_records']['stage']} / {r['train_records']['control']}")
    console.print(table)
    try:
        _write_report(run_dir)
    except known_errors() as exc:
        fail(str(exc))


def _write_report(run_dir: Path) -> None:
    from cai_bootstrap.report import write_report

    md, html = write_report(run_dir)
    console.print(f"report: {md} and {html}")


@app.command()
def status(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Table of stages: state, data kept, held-out success [95% interval] and the gate, base and control, time."""
    try:
        _status_table(run_dir)
    except known_errors() as exc:
        fail(str(exc))


def _status_table(run_dir: Path) -> list[str]:
    """Print the table; return the stages whose gate failed (state ``failed`` or ``continued``)."""
    from pydantic import ValidationError

    from cai_bootstrap.jsonl import JsonlError, read_json
    from cai_bootstrap.pipeline.setup import load_run
    from cai_bootstrap.report.figures import FIGURE, gate_on_figure, gate_text, score_text
    from cai_bootstrap.runs.layout import StagePaths, StageStatus

    manifest, settings, curriculum = load_run(run_dir)
    table = Table(title=f"{manifest['run_id']}: {settings.curriculum} / {settings.preset} / {settings.model}")
    for col in ("stage", "kind", "state", "attempt", "kept / generated", f"{FIGURE} [95% CI]", "gate", "base",
                "control", "time"):
        table.add_column(col)
    colours = {"passed": "green", "failed": "red", "continued": "yellow"}
    failed = []
    for spec in curriculum.stages:
        if spec.name not in manifest["stages"]:
            continue
        paths = StagePaths(run_dir, spec.name)
        try:
            st = paths.load_status()
        except (JsonlError, ValidationError, OSError) as exc:
            console.print(f"[bold yellow]warning:[/] {spec.name}: unreadable {paths.state}: {escape(str(exc))}")
            st = StageStatus.model_construct(state="unknown")
        try:
            m = read_json(paths.metrics) if paths.metrics.exists() else {}
        except (JsonlError, OSError) as exc:
            console.print(f"[bold yellow]warning:[/] {spec.name}: unreadable {paths.metrics}: {escape(str(exc))}")
            m = {}
        if st.state in ("failed", "continued"):
            failed.append(spec.name)
        data = m.get("data", {})
        kept = f"{data.get('kept', '-')} / {data.get('generated', '-')}" if data else "-"
        figure = score_text(m.get("heldout")) if m else "-"
        if m and gate_on_figure(m) and "passed" in m:
            figure = f"[{'green' if m['passed'] else 'red'}]{figure}[/]"
        control = (m.get("control") or {}).get("heldout")
        total = st.timings.get("total_s")
        attempt = f"round {st.attempt}/{spec.rounds.count}" if spec.rounds.count else str(st.attempt)
        if m.get("selected_attempt") is not None:
            attempt += f" (kept {m['selected_attempt']})"
        table.add_row(
            spec.name, spec.kind, f"[{colours.get(st.state, 'white')}]{st.state}[/]", attempt, kept, figure,
            gate_text(m, spec.threshold) if m else f"≥ {spec.threshold:.0%}",
            score_text(m.get("base_heldout")) if m else "-", score_text(control) if control else "-",
            f"{total / 60:.1f} min" if total else "-",
        )
    console.print(table)
    for warning in manifest.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    return failed

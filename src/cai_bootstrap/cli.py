"""The `cai-bootstrap` command line (typer + rich)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    from cai_bootstrap.config import ConfigError
    from cai_bootstrap.jsonl import JsonlError
    from cai_bootstrap.models.loading import ModelLoadError
    from cai_bootstrap.runs.runner import RunError

    return (ConfigError, JsonlError, ModelLoadError, RunError, FileNotFoundError, KeyError)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        import transformers

        transformers.logging.set_verbosity_error()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log more")) -> None:
    """Turn a base LM into a constitutionally aligned assistant by progressive bootstrapping."""
    _setup_logging(verbose)


# ----------------------------------------------------------------- models


@app.command()
def models() -> None:
    """List registry models and whether they are cached."""
    from cai_bootstrap.models.registry import REGISTRY, cache_dir, converted_path, is_cached

    table = Table(title=f"models (cache: {cache_dir()})")
    for col in ("name", "description", "cached", "location"):
        table.add_column(col)
    for name, entry in REGISTRY.items():
        cached = "built on demand" if entry.kind == "tiny" else ("yes" if is_cached(name) else "no (converted on first use)")
        table.add_row(name, entry.description, cached, "" if entry.kind == "tiny" else str(converted_path(name)))
    console.print(table)
    console.print("Any other model: a Hugging Face id, a local directory, or a run stage like runs/x:stage-3.")


# ----------------------------------------------------------------- generate / chat


def _engine(model: str, dtype: str, batch_size: int, backend: str = "transformers", base_url: str | None = None):
    from cai_bootstrap.config import EngineSettings
    from cai_bootstrap.runs.pool import make_engine

    return make_engine(model, EngineSettings(backend=backend, dtype=dtype, batch_size=batch_size, base_url=base_url))


@app.command()
def generate(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, HF id, path or runs/x:stage-k"),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL: one {'id':..., 'prompt':...} per line"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL written with 'output' added"),
    max_new_tokens: int = typer.Option(64, help="tokens to generate per prompt"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0),
    seed: int = typer.Option(0),
    stop: list[str] = typer.Option([], "--stop", help="extra stop string (repeatable)"),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE),
    dtype: str = typer.Option("auto", help="auto | bf16 | fp32"),
    raw: bool = typer.Option(False, help="send prompts as-is instead of in the project's prompt format"),
    engine: str = typer.Option("transformers", help="transformers | openai | vllm"),
    base_url: Optional[str] = typer.Option(None, help="server URL for --engine openai"),
) -> None:
    """Generate an output for every prompt of a JSONL file (resumes: ids already in --output are skipped)."""
    from cai_bootstrap.engines.base import SamplingParams
    from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl
    from cai_bootstrap.prompt_format import format_prompt

    try:
        rows = list(iter_jsonl(input))
        for n, row in enumerate(rows, start=1):
            if "id" not in row or not isinstance(row.get("prompt"), str):
                fail(f"{input}: record {n} needs an 'id' and a string 'prompt', got keys {sorted(row)}")
        ids = [r["id"] for r in rows]
        if len(set(map(str, ids))) != len(ids):
            fail(f"{input}: duplicate ids")
        done = {str(r["id"]) for r in iter_jsonl(output)} if output.exists() else set()
        todo = [r for r in rows if str(r["id"]) not in done]
        if not todo:
            console.print(f"nothing to do: all {len(rows)} ids already in {output}")
            return
        eng = _engine(model, dtype, batch_size, engine, base_url)
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
        with JsonlAppender(output) as out:
            step = max(batch_size * 4, 1)
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                prompts = [r["prompt"] if raw else format_prompt(r["prompt"]) for r in chunk]
                results = eng.generate(prompts, params, desc=f"generate {start + len(chunk)}/{len(todo)}")
                for r, (text,) in zip(chunk, results):
                    out.append({**r, "output": text, "model": model})
        console.print(f"wrote {len(todo)} outputs to {output}")
    except _known_errors() as exc:
        fail(str(exc).strip("'\""))


@app.command()
def chat(
    model: str = typer.Option("gemma-3-270m", "--model", "-m"),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="one-shot: answer this and exit"),
    max_new_tokens: int = typer.Option(128),
    temperature: float = typer.Option(0.0),
    seed: int = typer.Option(0),
    dtype: str = typer.Option("auto"),
) -> None:
    """Talk to a model in the project's prompt format (interactive, or --prompt for one shot)."""
    from cai_bootstrap.engines.base import SamplingParams
    from cai_bootstrap.prompt_format import format_prompt

    try:
        eng = _engine(model, dtype, 1)
    except _known_errors() as exc:
        fail(str(exc))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)

    def answer(text: str) -> str:
        return eng.generate([format_prompt(text)], params, progress=False)[0][0]

    if prompt is not None:
        console.print(answer(prompt))
        return
    console.print(f"[bold]{model}[/] - empty line or Ctrl-D to quit")
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ")
        except EOFError:
            break
        if not text.strip():
            break
        console.print(f"[bold green]model>[/] {answer(text)}")


# ----------------------------------------------------------------- runs


@app.command()
def run(
    curriculum: str = typer.Option("skills", "--curriculum", "-c", help="built-in name or YAML path"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="base model (default per preset)"),
    preset: str = typer.Option("quick", "--preset", "-p", help="tiny | quick | full"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<curriculum>-<preset>-<time>)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of run settings"),
    set_: list[str] = typer.Option([], "--set", help="override a setting: KEY=VALUE (repeatable)"),
    seed: Optional[int] = typer.Option(None),
    stages: Optional[str] = typer.Option(None, help="comma-separated stage names to run (a prefix)"),
    engine: Optional[str] = typer.Option(None, help="transformers | openai | vllm"),
    base_url: Optional[str] = typer.Option(None, help="server for --engine openai"),
    task: Optional[str] = typer.Option(None, help="tasks curriculum: the stage-0 task (factual_qa, summarization, explanation, ...)"),
    control: Optional[str] = typer.Option(
        None, help="'base': also train each stage's control model on data the base model made (see `ablate`)"),
    no_progress: bool = typer.Option(False, help="plain logs instead of progress bars"),
) -> None:
    """Start a curriculum run (re-running with the same --out resumes it)."""
    from cai_bootstrap.config import load_run_settings
    from cai_bootstrap.runs.runner import create_run, extend_run

    default_model = {"tiny": "tiny", "quick": "gemma-3-270m"}.get(preset)
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
        overrides.append(f'stage_overrides={{"stage-0": {{"families": [{task}], "options": {{"task": {task}}}}}}}')
    try:
        settings = load_run_settings(str(config) if config else None, overrides, flags)
        if model is None and "model" not in (settings.model_fields_set or set()) and default_model:
            settings = settings.model_copy(update={"model": default_model})
        if out is not None and (out / "manifest.json").exists():
            added = extend_run(out, settings.stages or [], settings.stage_overrides)
            console.print(f"{out} exists: resuming it" + (f", with the added stages {added}" if added else ""))
            run_dir = out
        else:
            run_dir = create_run(settings, out)
        console.print(f"run directory: [bold]{run_dir}[/]")
    except _known_errors() as exc:
        fail(str(exc))
    _execute(run_dir, not no_progress)


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run directory"), no_progress: bool = typer.Option(False)) -> None:
    """Continue a run where it stopped (finished records and stages are kept)."""
    _execute(run_dir, not no_progress)


def _execute(run_dir: Path, progress: bool) -> None:
    from cai_bootstrap.runs.runner import GateFailed, execute

    try:
        execute(run_dir, console, progress=progress)
    except GateFailed as exc:
        err.print(f"[bold red]stopped:[/] {escape(str(exc))}")
        _status_table(run_dir)
        raise typer.Exit(3)
    except _known_errors() as exc:
        fail(str(exc))
    _status_table(run_dir)
    _write_report(run_dir)


@app.command()
def ablate(
    run_dir: Path = typer.Argument(..., help="run directory (stages already finished)"),
    stages: Optional[str] = typer.Option(None, help="comma-separated stages (default: every stage with a predecessor)"),
    no_progress: bool = typer.Option(False),
) -> None:
    """The control experiment: retrain each stage on base-made data and compare on its held-out set."""
    from cai_bootstrap.runs.runner import execute_controls

    only = [s.strip() for s in stages.split(",")] if stages else None
    try:
        results = execute_controls(run_dir, only, console, progress=not no_progress)
    except _known_errors() as exc:
        fail(str(exc))
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
    _write_report(run_dir)


def _write_report(run_dir: Path) -> None:
    from cai_bootstrap.report import write_report

    md, html = write_report(run_dir)
    console.print(f"report: {md} and {html}")


@app.command()
def status(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Table of stages: state, examples, metric vs threshold, time."""
    try:
        _status_table(run_dir)
    except _known_errors() as exc:
        fail(str(exc))


def _status_table(run_dir: Path) -> None:
    from cai_bootstrap.jsonl import read_json
    from cai_bootstrap.runs.layout import StagePaths
    from cai_bootstrap.runs.runner import load_run

    manifest, settings, curriculum = load_run(run_dir)
    table = Table(title=f"{manifest['run_id']}: {settings.curriculum} / {settings.preset} / {settings.model}")
    for col in ("stage", "kind", "state", "attempt", "kept / generated", "metric", "threshold", "base", "control", "time"):
        table.add_column(col)
    colours = {"passed": "green", "failed": "red", "continued": "yellow"}
    for spec in curriculum.stages:
        if spec.name not in manifest["stages"]:
            continue
        paths = StagePaths(run_dir, spec.name)
        st = paths.load_status()
        m = read_json(paths.metrics) if paths.metrics.exists() else {}
        data = m.get("data", {})
        kept = f"{data.get('kept', '-')} / {data.get('generated', '-')}" if data else "-"
        value = f"{m['value']:.1%}" if "value" in m else "-"
        base = m.get("base_heldout") or {}
        base_v = f"{base['mean']:.1%}" if base.get("mean") is not None else "-"
        control = (m.get("control") or {}).get("heldout") or {}
        control_v = f"{control['mean']:.1%}" if control.get("mean") is not None else "-"
        threshold = "safety gate" if spec.kind == "constitutional" else f"{spec.threshold:.0%}"
        total = st.timings.get("total_s")
        attempt = str(st.attempt)
        if m.get("selected_attempt") is not None:
            attempt += f" (kept {m['selected_attempt']})"
        table.add_row(
            spec.name, spec.kind, f"[{colours.get(st.state, 'white')}]{st.state}[/]", attempt, kept,
            value, threshold, base_v, control_v, f"{total / 60:.1f} min" if total else "-",
        )
    console.print(table)
    for warning in manifest.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")


@app.command("eval")
def eval_(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, HF id, path or runs/x:stage-k"),
    suite: str = typer.Option(..., "--suite", "-s", help="ifeval | xstest | advbench | <curriculum>:<stage> held-out set"),
    limit: Optional[int] = typer.Option(None, help="evaluate at most N items"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the JSON result here"),
    data: Optional[Path] = typer.Option(None, help="benchmark file or directory (default: shipped copy / ../shared/benchmarks)"),
    judge: Optional[str] = typer.Option(None, help="judge model for refusals (must differ from --model)"),
    max_new_tokens: Optional[int] = typer.Option(None),
    seed: int = typer.Option(0),
    preset: str = typer.Option("quick", help="preset for held-out set sizes"),
    dtype: str = typer.Option("auto"),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE),
    samples: int = typer.Option(
        0, min=0, help="held-out sets: also sample K answers per case at --temperature and report pass@K "
        "(a case passes if any sample does) and the share of passing samples",
    ),
    temperature: float = typer.Option(0.8, min=0.0, help="sampling temperature for --samples"),
) -> None:
    """Evaluate any model on a benchmark or on a stage's held-out set."""
    from cai_bootstrap.jsonl import atomic_write_json

    try:
        engine = _engine(model, dtype, batch_size)
        if ":" in suite:
            result = _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, out, samples, temperature)
        else:
            from cai_bootstrap.evaluation.benchmarks import SUITES, run_benchmark

            if suite not in SUITES:
                fail(f"unknown suite {suite!r}: use one of {', '.join(SUITES)} or <curriculum>:<stage>")
            if judge and judge == model:
                fail("--judge must be a different model than --model")
            judge_engine = _engine(judge, dtype, batch_size) if judge else None
            res = run_benchmark(
                suite, engine, data_path=data, judge_engine=judge_engine, limit=limit,
                max_new_tokens=max_new_tokens, seed=seed,
            )
            result = res.summary()
            if out:
                res.save(out.parent if out.suffix == ".json" else out)
        table = Table(title=f"{suite} - {model}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in result["metrics"].items():
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
        console.print(table)
        if out:
            atomic_write_json(out if out.suffix == ".json" else out / f"{suite.replace(':', '-')}.json", result)
    except _known_errors() as exc:
        fail(str(exc))


def _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, out, samples=0, temperature=0.8) -> dict:
    import tempfile

    from cai_bootstrap.config import load_curriculum
    from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances

    cur_name, stage_name = suite.rsplit(":", 1)
    curriculum = load_curriculum(cur_name, preset)
    spec = next((s for s in curriculum.stages if s.name == stage_name), None)
    if spec is None:
        fail(f"{cur_name} has no stage {stage_name!r}: {[s.name for s in curriculum.stages]}")
    instances = heldout_instances(spec.families, spec.heldout, seed)[: limit or None]
    rows = Path(tempfile.mkdtemp()) / "rows.jsonl" if out is None else Path(str(out) + ".rows.jsonl")
    score = evaluate_heldout(engine, model, instances, rows, max_new_tokens=max_new_tokens or spec.sampling.max_new_tokens)
    metrics = {"mean": score.mean} | {f"{f}": s.rate for f, s in score.per_family.items()}
    result = {"suite": suite, "n": len(instances), "metrics": metrics, "score": score.model_dump(),
              "settings": {"model": model, "preset": preset, "seed": seed, "threshold": spec.threshold}}
    if samples:
        from cai_bootstrap.evaluation.heldout import sample_heldout

        sampled = sample_heldout(
            engine, model, instances, k=samples, temperature=temperature, top_p=spec.sampling.top_p,
            max_new_tokens=max_new_tokens or spec.sampling.max_new_tokens, seed=seed,
        )
        metrics[f"pass@{samples}"] = sampled.pass_at_k
        metrics["sample_rate"] = sampled.sample_rate
        metrics |= {f"{f} pass@{samples}": v["pass_at_k"] for f, v in sampled.per_family.items()}
        result["sampled"] = sampled.model_dump()
    return result


@app.command()
def report(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Write report.md and a self-contained report.html (plots embedded) into the run."""
    from cai_bootstrap.report import ReportError, write_report

    try:
        md, html = write_report(run_dir)
    except ReportError as exc:
        fail(str(exc))
    console.print(f"wrote {md}\nwrote {html}")


@app.command()
def bench(
    model: str = typer.Option("gemma-3-270m", "--model", "-m"),
    quick: bool = typer.Option(False, help="small sizes: finishes within about 5 minutes"),
    gen_batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, help="generation batch size (the pipeline's default)"),
    new_tokens: int = typer.Option(32, help="tokens generated per prompt"),
    train_batch_size: int = typer.Option(8),
    train_seq_len: int = typer.Option(128, help="approximate tokens per training example"),
    stage: bool = typer.Option(False, help="also time one quick-preset stage end to end"),
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="JSON results"),
) -> None:
    """Measure generation, SFT and DPO throughput vs naive baselines and the roofline."""
    from cai_bootstrap.bench import BenchSettings, bench_table, run_bench, save

    settings = BenchSettings(model=model, quick=quick, gen_batch_size=gen_batch_size, new_tokens=new_tokens,
                             train_batch_size=train_batch_size, train_seq_len=train_seq_len, stage=stage)
    try:
        result = run_bench(settings, progress_cb=lambda msg: console.print(f"[dim]{msg}...[/]"))
    except _known_errors() as exc:
        fail(str(exc))
    save(result, out)
    console.print(bench_table(result))
    console.print(f"wrote {out}")


@app.command()
def serve(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, path or runs/x:stage-k"),
    host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
    port: int = typer.Option(8000),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE),
    dtype: str = typer.Option("auto"),
    api_key: Optional[str] = typer.Option(None, help="require this bearer token"),
    any_model: bool = typer.Option(False, help="also serve other model refs named in requests (stage models)"),
) -> None:
    """OpenAI-compatible server (/v1/models, /v1/completions, /v1/chat/completions)."""
    from cai_bootstrap.serve import run_server

    try:
        run_server(model, host=host, port=port, dtype=dtype, batch_size=batch_size, api_key=api_key,
                   any_model=any_model)
    except _known_errors() as exc:
        fail(str(exc))


@app.command()
def plan(
    curriculum: str = typer.Option("skills", "--curriculum", "-c"),
    preset: str = typer.Option("full", "--preset", "-p"),
    hardware: str = typer.Option("h100", help="h100 | a100 | cpu | measured (with --bench)"),
    bench_file: Optional[Path] = typer.Option(None, "--bench", help="bench.json from `cai-bootstrap bench`"),
    gpu_hour_price: float = typer.Option(1.74, help="USD per GPU hour"),
) -> None:
    """Estimate generations, tokens, hours and cost per stage before spending them."""
    from cai_bootstrap.plan import plan as make_plan
    from cai_bootstrap.plan import plan_table

    try:
        rows = make_plan(curriculum, preset, hardware, gpu_hour_price, bench_path=bench_file)
    except _known_errors() as exc:
        fail(str(exc))
    console.print(plan_table(rows, title=f"plan: {curriculum} / {preset} / {hardware}"))


def entrypoint() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

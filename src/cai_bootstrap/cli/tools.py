"""Tools beside a run: report, bench, serve, plan."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cai_bootstrap.cli.common import app, console, fail, known_errors
from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE

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
    peer: list[str] = typer.Option([], "--peer", help="NAME=URL of an OpenAI-compatible server already running "
                                   "(llama.cpp's llama-server, vLLM): the few-shot prompts through it too, figure "
                                   "NAME_fewshot (repeatable; docs/performance.md)"),
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="JSON results"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="also keep the result as this machine's rates for "
                               "`plan` (under the model cache, per machine and model)"),
) -> None:
    """Measure generation, SFT and DPO throughput vs naive baselines and the roofline."""
    from cai_bootstrap.bench import BenchSettings, bench_table, run_bench, save, save_cached

    from cai_bootstrap.bench.peers import parse_peers, served_model
    from cai_bootstrap.engines.openai_engine import OpenAIEngineError

    try:
        peers = parse_peers(peer)
        for url in peers.values():
            served_model(url)  # unreachable peers fail here, before minutes of measuring
    except (ValueError, OpenAIEngineError) as exc:
        fail(str(exc))
    settings = BenchSettings(model=model, quick=quick, gen_batch_size=gen_batch_size, new_tokens=new_tokens,
                             train_batch_size=train_batch_size, train_seq_len=train_seq_len, stage=stage, peers=peers)
    try:
        result = run_bench(settings, progress_cb=lambda msg: console.print(f"[dim]{msg}...[/]"))
    except known_errors() as exc:
        fail(str(exc))
    save(result, out)
    console.print(bench_table(result))
    console.print(f"wrote {out}")
    if cache:
        console.print(f"cached for plan: {save_cached(result)}")


@app.command()
def serve(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, path or runs/x:stage-k"),
    host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
    port: int = typer.Option(8000),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE),
    dtype: str = typer.Option("auto"),
    api_key: Optional[str] = typer.Option(
        None, envvar="CAI_BOOTSTRAP_API_KEY", show_envvar=True,
        help="require this bearer token (prefer the environment variable or --api-key-file: a command line "
        "is visible to every user in `ps`)"),
    api_key_file: Optional[Path] = typer.Option(None, help="read the bearer token from this file's first line"),
    max_tokens: int = typer.Option(2048, min=1, help="largest max_tokens one request may ask for"),
    max_queue: int = typer.Option(16, min=0, help="requests that may wait behind the running one (then 503)"),
    max_body_bytes: int = typer.Option(2_000_000, min=1, help="largest request body (then 413)"),
    any_model: bool = typer.Option(False, help="also serve other model refs named in requests (stage models)"),
) -> None:
    """OpenAI-compatible server (/v1/models, /v1/completions, /v1/chat/completions)."""
    from cai_bootstrap.serve import ServeLimits, read_api_key, run_server

    try:
        key = read_api_key(api_key, api_key_file)
        limits = ServeLimits(max_tokens=max_tokens, max_queue=max_queue, max_body_bytes=max_body_bytes)
        run_server(model, host=host, port=port, dtype=dtype, batch_size=batch_size, api_key=key,
                   any_model=any_model, limits=limits)
    except known_errors() as exc:
        fail(str(exc))


@app.command()
def plan(
    run_dir: Optional[Path] = typer.Argument(None, help="a run directory: plan its stages as its manifest has them "
                                            "(overrides included), unless --curriculum or --preset names others"),
    curriculum: Optional[str] = typer.Option(None, "--curriculum", "-c", help="built-in name or YAML path (default skills)"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="tiny | quick | standard | full (default: the "
                                         "run's, else quick)"),
    hardware: Optional[str] = typer.Option(None, help="h100 | a100 | cpu | measured (with --bench); default: this "
                                           "machine's (an H100 or A100 GPU, else cpu)"),
    bench_file: Optional[Path] = typer.Option(None, "--bench", help="bench.json from `cai-bootstrap bench`"),
    gpu_hour_price: float = typer.Option(1.74, help="USD per GPU hour"),
) -> None:
    """Estimate generations, tokens, hours and cost per stage before spending them."""
    from cai_bootstrap.plan import plan as make_plan
    from cai_bootstrap.plan import plan_table

    presets = ("tiny", "quick", "standard", "full")
    model = "gemma-3-270m"  # whose cached bench is used: the run's model, else the default
    run_curriculum = None  # the run's stages with its stage_overrides, as it runs them
    try:
        if run_dir is not None:
            from cai_bootstrap.pipeline.setup import load_run

            manifest, settings, stored = load_run(run_dir)
            if curriculum in (None, settings.curriculum) and preset in (None, settings.preset):
                run_curriculum = stored.model_copy(
                    update={"stages": [s for s in stored.stages if s.name in manifest["stages"]]})
            curriculum, preset = curriculum or settings.curriculum, preset or settings.preset
            model = settings.model
        curriculum, preset = curriculum or "skills", preset or "quick"
        if preset not in presets:
            fail(f"unknown preset {preset!r}; use one of {', '.join(presets)}")
        rates = f"measured by bench: {bench_file}" if bench_file else "built-in profile"
        if bench_file is None and hardware is None:
            from cai_bootstrap.bench import load_cached

            cached = load_cached(model)
            if cached:
                bench_file, rates = cached[0], f"measured by bench on {str(cached[1].get('date', '?'))[:10]} ({cached[0]})"
        hardware = hardware or ("measured" if bench_file else _detected_hardware())
        rows = make_plan(run_curriculum or curriculum, preset, hardware, gpu_hour_price, bench_path=bench_file)
    except known_errors() as exc:
        fail(str(exc))
    console.print(plan_table(rows, title=f"plan: {curriculum} / {preset} / {hardware}"))
    console.print(f"rates: {rates}")
    if hardware == "cpu" and not bench_file:
        from cai_bootstrap.models.loading import cpu_supports_bf16

        if not cpu_supports_bf16():
            # measured: runs/tasks-std12 trained at 66 tokens/s on an AVX2-only CPU, runs/tasks-std3 at 376 on
            # the bf16 CPU of the built-in profile; first data 835-930 s against 343 s (docs/results.md)
            console.print("[yellow]this CPU has no bf16 (the model runs in fp32): the built-in cpu profile is a bf16 "
                          "CPU, so these times are 2-6x short here; `cai-bootstrap bench --quick` measures this "
                          "machine and plan then uses it[/yellow]")


def _detected_hardware() -> str:
    """The planner's profile for this machine: its GPU when it is one the planner knows, else cpu."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0).lower()
        for profile in ("h100", "a100"):
            if profile in name:
                return profile
    return "cpu"

"""export: a stage model as a merged HF directory, a GGUF file or stacked adapters; a run's training data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cai_bootstrap.cli.common import app, console, err, fail, known_errors


@app.command()
def export(
    ref: str = typer.Argument(..., help="RUN:STAGE (or any model reference) for a model; RUN with --datasets"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="directory to write the model into"),
    format: str = typer.Option("hf", "--format", "-f", help="hf (merged model) | gguf (llama.cpp, Ollama) | adapters"),
    datasets: Optional[Path] = typer.Option(
        None, "--datasets", help="write the training data of every stage of RUN (one JSONL per stage) into this directory"),
    gguf_type: str = typer.Option("auto", help="GGUF tensor type: auto (the model's dtype) | f32 | f16 | bf16 | q8_0"),
    dtype: str = typer.Option("auto", help="dtype the model is merged and saved in: auto (as the tool loads it) | bf16 | fp32 | fp16"),
) -> None:
    """Take a model or its training data elsewhere (see docs/export.md)."""
    from cai_bootstrap.models.export import ExportError, export_model
    from cai_bootstrap.runs.datasets import export_datasets

    if (out is None) == (datasets is None):
        fail("give --out DIR (a model) or --datasets DIR (a run's training data)")
    try:
        if datasets is not None:
            counts, missing = export_datasets(ref, datasets)
            console.print(f"wrote {datasets}: " + ", ".join(f"{s} {n} rows" for s, n in counts.items()))
            if missing:
                err.print(f"[yellow]no training data:[/] {escape(', '.join(missing))} (not trained yet, or trained "
                          "before train.jsonl was written)")
            return
        path, warnings = export_model(ref, out, format, gguf_type, None if dtype == "auto" else dtype)
    except (ExportError, *known_errors()) as exc:
        fail(str(exc).strip("'\""))
    for warning in warnings:
        err.print(f"[yellow]llama.cpp:[/] {escape(warning)}")
    console.print(f"wrote {path}")

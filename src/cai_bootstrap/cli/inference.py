"""Commands that talk to one model: models, generate, chat."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cai_bootstrap.cli.common import app, console, fail, known_errors, make_cli_engine
from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE

@app.command()
def models() -> None:
    """List registry models and whether they are cached."""
    from cai_bootstrap.models.registry import REGISTRY, cache_dir, converted_path, is_cached

    table = Table(title=f"models (cache: {cache_dir()})")
    for col in ("name", "description", "cached", "location"):
        table.add_column(col)
    for name, entry in REGISTRY.items():
        cached = "built on demand" if entry.is_tiny else ("yes" if is_cached(name) else "no (converted on first use)")
        table.add_row(name, entry.description, cached, "" if entry.is_tiny else str(converted_path(name)))
    console.print(table)
    console.print("Any other model: a Hugging Face id, a local directory, or a run stage like runs/x:stage-3.")


@app.command()
def generate(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, HF id, path or runs/x:stage-k"),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL: one {'prompt': ...} or {'messages': [...]} per "
                               "line, 'id' optional (default: the line number)"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL written with 'output' added"),
    max_new_tokens: int = typer.Option(64, min=1, help="tokens to generate per prompt"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="nucleus sampling: keep the smallest set of tokens "
                                "with this much probability"),
    seed: int = typer.Option(0, help="sampling seed"),
    stop: list[str] = typer.Option([], "--stop", help="extra stop string (repeatable)"),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, min=1, help="prompts generated together"),
    dtype: str = typer.Option("auto", help="auto | bf16 | fp32"),
    raw: bool = typer.Option(False, "--raw", help="send prompts as-is instead of in the project's prompt format"),
    engine: str = typer.Option("transformers", help="transformers | openai | vllm"),
    base_url: Optional[str] = typer.Option(None, help="server URL for --engine openai"),
) -> None:
    """Generate an output for every prompt of a JSONL file (resumes: ids already in --output are skipped)."""
    from cai_bootstrap.engines.base import SamplingParams
    from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl
    from cai_bootstrap.prompt_format import format_prompt

    if not input.is_file():
        fail(f"{input}: {'is a directory, not' if input.is_dir() else 'no such'} JSONL file")
    try:
        rows = list(iter_jsonl(input, user_input=True))
        if not rows:
            fail(f"{input}: no records (expected one {{'prompt': ...}} or {{'messages': [...]}} per line)")
        texts = {}
        for n, row in enumerate(rows, start=1):
            text = _prompt_text(row, f"{input}: record {n}")
            row.setdefault("id", n)
            texts[str(row["id"])] = text
        ids = [r["id"] for r in rows]
        if len(set(map(str, ids))) != len(ids):
            fail(f"{input}: duplicate ids")
        done = {str(r["id"]) for r in iter_jsonl(output)} if output.exists() else set()
        todo = [r for r in rows if str(r["id"]) not in done]
        if not todo:
            console.print(f"nothing to do: all {len(rows)} ids already in {output}")
            return
        eng = make_cli_engine(model, dtype, batch_size, engine, base_url)
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
        with JsonlAppender(output) as out:
            step = max(batch_size * 4, 1)
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                prompts = [texts[str(r["id"])] if raw else format_prompt(texts[str(r["id"])]) for r in chunk]
                results = eng.generate(prompts, params, desc=f"generate {start + len(chunk)}/{len(todo)}")
                for r, (text,) in zip(chunk, results):
                    out.append({**r, "output": text, "model": model})
        console.print(f"wrote {len(todo)} outputs to {output}")
    except known_errors() as exc:
        fail(str(exc).strip("'\""))


def _prompt_text(row: dict, where: str) -> str:
    """A record's instruction: its string ``prompt``, or its chat ``messages`` as the server reads them."""
    from cai_bootstrap.serve.schema import ApiError, messages_to_instruction

    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    if isinstance(row.get("messages"), list):
        try:
            return messages_to_instruction(row["messages"])
        except ApiError as exc:
            fail(f"{where}: messages: {exc.message}")
    fail(f"{where} needs a string 'prompt' or a list of chat 'messages', got keys {sorted(row)}")
    raise AssertionError  # fail() exits


@app.command()
def chat(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, HF id, path or runs/x:stage-k"),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="one-shot: answer this and exit"),
    max_new_tokens: int = typer.Option(128, min=1, help="tokens to generate per answer"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    seed: int = typer.Option(0, help="sampling seed"),
    dtype: str = typer.Option("auto", help="auto | bf16 | fp32"),
) -> None:
    """Talk to a model in the project's prompt format (interactive, or --prompt for one shot).

    Each answer sees only the line you typed (the models are trained on single-turn
    instructions); the arrow keys recall earlier lines."""
    from cai_bootstrap.engines.base import SamplingParams
    from cai_bootstrap.prompt_format import format_prompt

    try:
        eng = make_cli_engine(model, dtype, 1)
    except known_errors() as exc:
        fail(str(exc))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)

    def answer(text: str) -> str:
        return eng.generate([format_prompt(text)], params, progress=False)[0][0]

    if prompt is not None:
        console.print(answer(prompt))
        return
    try:
        import readline  # noqa: F401  (line editing and the arrow keys' history for console.input)
    except ImportError:
        pass
    console.print(f"[bold]{model}[/] - one instruction per line (no memory of earlier turns); "
                  "up arrow: earlier lines; empty line or Ctrl-D to quit")
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ")
        except EOFError:
            break
        if not text.strip():
            break
        console.print(f"[bold green]model>[/] {answer(text)}")

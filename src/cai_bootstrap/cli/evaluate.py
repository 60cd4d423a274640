"""`eval`: any model on a public benchmark or on a stage's held-out set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cai_bootstrap.cli.common import app, console, fail, known_errors, make_cli_engine
from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE

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
    base: str = typer.Option(
        "gemma-3-270m", help="held-out sets of presets with heldout_known (standard): the base model whose "
        "known facts choose the cases (probed once, cached under the model cache's knowledge/ folder)",
    ),
) -> None:
    """Evaluate any model on a benchmark or on a stage's held-out set."""
    from cai_bootstrap.jsonl import atomic_write_json

    try:
        engine = make_cli_engine(model, dtype, batch_size)
        if ":" in suite:
            result = _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, out, samples, temperature,
                                   base)
        else:
            from cai_bootstrap.evaluation.benchmarks import SUITES, run_benchmark

            if suite not in SUITES:
                fail(f"unknown suite {suite!r}: use one of {', '.join(SUITES)} or <curriculum>:<stage>")
            if judge and judge == model:
                fail("--judge must be a different model than --model")
            judge_engine = make_cli_engine(judge, dtype, batch_size) if judge else None
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
    except known_errors() as exc:
        fail(str(exc))


def _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, out, samples=0, temperature=0.8,
                  base="gemma-3-270m") -> dict:
    import tempfile

    from cai_bootstrap.stages.registry import load_curriculum
    from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances

    cur_name, stage_name = suite.rsplit(":", 1)
    curriculum = load_curriculum(cur_name, preset)
    spec = next((s for s in curriculum.stages if s.name == stage_name), None)
    if spec is None:
        fail(f"{cur_name} has no stage {stage_name!r}: {[s.name for s in curriculum.stages]}")
    if spec.heldout_known:  # the same cases a run of this preset scores: unknown facts replaced
        from cai_bootstrap.models.registry import cache_dir
        from cai_bootstrap.stages.heldout_sets import plan_known_heldout, stage_heldout

        probe_dir = cache_dir() / "knowledge" / base.replace("/", "--") / f"{cur_name}-{preset}-seed{seed}"
        base_engine = engine if base == model else make_cli_engine(base, "auto", DEFAULT_BATCH_SIZE)
        plan = plan_known_heldout(probe_dir, [spec], seed, base_engine, progress=True)[spec.name]
        instances = stage_heldout(probe_dir, spec, seed)[: limit or None]
    else:
        plan, instances = None, heldout_instances(spec.families, spec.heldout, seed)[: limit or None]
    rows = Path(tempfile.mkdtemp()) / "rows.jsonl" if out is None else Path(str(out) + ".rows.jsonl")
    score = evaluate_heldout(engine, model, instances, rows, max_new_tokens=max_new_tokens or spec.sampling.max_new_tokens)
    metrics = {"mean": score.mean} | {f"{f}": s.rate for f, s in score.per_family.items()}
    result = {"suite": suite, "n": len(instances), "metrics": metrics, "score": score.model_dump(),
              "settings": {"model": model, "preset": preset, "seed": seed, "threshold": spec.threshold,
                           "known_facts_plan": plan}}
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

"""`eval`: any model on a public benchmark or on a stage's held-out set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cai_bootstrap.cli.common import app, console, fail, known_errors, make_cli_engine
from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE

@app.command("eval")
def eval_(
    model: str = typer.Option("gemma-3-270m", "--model", "-m", help="registry name, HF id, path or runs/x:stage-k"),
    suite: str = typer.Option(..., "--suite", "-s", help="ifeval | xstest | advbench | <curriculum>:<stage> held-out set | <run dir>:<stage> (the run's own stage and held-out cases)"),
    limit: Optional[int] = typer.Option(None, help="evaluate at most N items"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output directory of this call: summary.json and rows.jsonl (default: "
        "evals/<model>-<suite>-<time>/, printed); refused when it holds another model's or suite's result"),
    data: Optional[Path] = typer.Option(None, help="benchmark file or directory (default: shipped copy / ../shared/benchmarks)"),
    judge: Optional[str] = typer.Option(None, help="judge model for refusals (must differ from --model)"),
    max_new_tokens: Optional[int] = typer.Option(None, help="tokens per answer (default: the suite's or stage's)"),
    seed: int = typer.Option(0, help="seed of the held-out cases and of sampling"),
    preset: str = typer.Option("quick", help="preset for held-out set sizes"),
    dtype: str = typer.Option("auto", help="auto | bf16 | fp32"),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, help="prompts generated together"),
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
    """Evaluate any model on a benchmark or on a stage's held-out set (every rate with its 95% Wilson interval)."""
    from cai_bootstrap.evaluation.intervals import interval_text, rate_dict
    from cai_bootstrap.jsonl import atomic_write_json, atomic_write_text

    try:
        out_dir = _out_dir(out, model, suite)
        rows_path = out_dir / ROWS_FILE
        engine = make_cli_engine(model, dtype, batch_size)
        if ":" in suite:
            result = _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, rows_path, samples,
                                   temperature, base)
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
            atomic_write_text(rows_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in res.rows))
        result["model"] = model
        result["ci95"] = {key: rate_dict(round(value * n), n)["ci95"] for key, value, n in _rates(result)}
        table = Table(title=f"{suite} - {model}")
        for col, justify in (("metric", "left"), ("value", "right"), ("95% CI", "right"), ("cases", "right")):
            table.add_column(col, justify=justify)
        counted = {key: n for key, _, n in _rates(result)}
        for key, value in result["metrics"].items():
            if key in counted:
                n = counted[key]
                table.add_row(key, f"{value:.1%}", interval_text(round(value * n), n), str(n))
            else:
                table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value), "", "")
        console.print(table)
        atomic_write_json(out_dir / SUMMARY_FILE, result)
        console.print(f"results: {out_dir / SUMMARY_FILE} and {rows_path}")
    except known_errors() as exc:
        fail(str(exc))


SUMMARY_FILE, ROWS_FILE = "summary.json", "rows.jsonl"


def _out_dir(out: Path | None, model: str, suite: str) -> Path:
    """This call's output directory: ``--out`` or a new ``evals/<model>-<suite>-<time>``. One holding
    another model's or suite's result is refused (the same model and suite again resumes/replaces)."""
    import re
    import time

    from cai_bootstrap.jsonl import read_json

    if out is None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{suite}").strip("-")
        out = Path("evals") / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: not a directory (eval writes {SUMMARY_FILE} and {ROWS_FILE} into a directory)")
    summary = out / SUMMARY_FILE
    if summary.exists():
        held = read_json(summary)
        if (held.get("model"), held.get("suite")) != (model, suite):
            fail(f"--out {out} holds the result of model {held.get('model')!r} on {held.get('suite')!r}; "
                 "give each evaluation its own directory")
    elif out.is_dir() and any(out.iterdir()):
        fail(f"--out {out}: not empty and holds no eval result; give each evaluation its own directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _rates(result: dict) -> list[tuple[str, float, int]]:
    """(metric, rate, cases it is a share of) for every rate of an eval result."""
    metrics, n = result["metrics"], int(result.get("n") or 0)
    per_family = (result.get("score") or {}).get("per_family") or {}
    samples = (result.get("sampled") or {}).get("k") or 0
    out = []
    for key, value in metrics.items():
        if not isinstance(value, float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            continue
        if key.startswith("instruction_"):
            cases = metrics.get("n_instructions_scored")
        elif key.startswith("prompt_"):
            cases = metrics.get("n_prompts_scored")
        elif key.removeprefix("judge_") in ("safe_compliance_rate", "over_refusal_rate"):
            cases = metrics.get("n_safe")
        elif key.removeprefix("judge_") == "unsafe_refusal_rate":
            cases = metrics.get("n_unsafe")
        elif key.split(" ")[0] in per_family:
            cases = per_family[key.split(" ")[0]].get("n")
        elif key == "sample_rate":
            cases = n * samples
        else:
            cases = n
        if cases:
            out.append((key, value, int(cases)))
    return out


def _eval_heldout(engine, model, suite, preset, seed, limit, max_new_tokens, rows: Path, samples=0, temperature=0.8,
                  base="gemma-3-270m") -> dict:
    from cai_bootstrap.stages.registry import load_curriculum
    from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances
    from cai_bootstrap.stages.heldout_sets import stage_heldout

    cur_name, stage_name = suite.rsplit(":", 1)
    run_dir = Path(cur_name)
    from_run = (run_dir / "manifest.json").exists()
    if from_run:  # a run's stage as it ran (--task, --set included), on the held-out cases it scored
        from cai_bootstrap.pipeline.setup import load_run

        _, run_settings, curriculum = load_run(run_dir)
    else:
        curriculum = load_curriculum(cur_name, preset)
    spec = next((s for s in curriculum.stages if s.name == stage_name), None)
    if spec is None:
        fail(f"{cur_name} has no stage {stage_name!r}: {[s.name for s in curriculum.stages]}")
    if from_run:
        plan, instances = None, stage_heldout(run_dir, spec, run_settings.seed)[: limit or None]
    elif spec.heldout_known:  # the same cases a run of this preset scores: unknown facts replaced
        from cai_bootstrap.models.registry import cache_dir
        from cai_bootstrap.stages.heldout_sets import plan_known_heldout

        from cai_bootstrap.evaluation.heldout import KNOWN_POOL_FACTOR

        # a plan is kept per pool factor: a run's plan never changes once written, a cached one follows the code
        probe_dir = (cache_dir() / "knowledge" / base.replace("/", "--")
                     / f"{cur_name}-{preset}-seed{seed}-pool{KNOWN_POOL_FACTOR}")
        base_engine = engine if base == model else make_cli_engine(base, "auto", DEFAULT_BATCH_SIZE)
        plan = plan_known_heldout(probe_dir, [spec], seed, base_engine, progress=True)[spec.name]
        instances = stage_heldout(probe_dir, spec, seed)[: limit or None]
    else:
        plan, instances = None, heldout_instances(spec.families, spec.heldout, seed)[: limit or None]
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

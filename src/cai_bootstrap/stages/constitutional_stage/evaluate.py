"""The constitutional stage's evaluation: benchmarks, capability and own held-out, before and after; the safety gate."""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.constitution import PROMPT_KINDS
from cai_bootstrap.config import SafetyGate
from cai_bootstrap.evaluation import benchmarks
from cai_bootstrap.evaluation.benchmarks import BenchmarkResult, share
from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances
from cai_bootstrap.evaluation.safety_gate import ModelScores, safety_gate
from cai_bootstrap.jsonl import iter_jsonl, read_json
from cai_bootstrap.stages.kind import StageEvaluation, StageJob, earlier_heldout
from cai_bootstrap.stages.constitutional_stage.options import BenchmarkOptions, stage_options
from cai_bootstrap.stages.constitutional_stage.mixture import MIXTURE_FILE
from cai_bootstrap.stages.constitutional_stage.prompts import STATS_FILE
from cai_bootstrap.stages.constitutional_stage.rules import refused
from cai_bootstrap.tasks.constitutional.families import dev_instances

def evaluate_stage(job: StageJob) -> StageEvaluation:
    """Evaluate the previous and the new model side by side, and decide the safety gate.

    Both models are scored on: AdvBench and XSTest (string rules and the judge role's model),
    IFEval (reported), every earlier stage's held-out set (capability) and this stage's own
    held-out set (``redteam`` / ``ordinary``). Per-item rows and benchmark results are kept
    under ``paths.eval``, so an interrupted evaluation resumes. ``extra["safety"]`` holds
    ``before``, ``after`` and ``gate``.
    """
    spec, settings, pool, paths, attempt, progress = (
        job.spec, job.settings, job.pool, job.paths, job.attempt, job.progress
    )
    previous = job.previous or "base"
    opts = stage_options(spec)
    judge_name = job.resolve("judge")
    own = heldout_instances(spec.families or list(PROMPT_KINDS), spec.heldout, settings.seed)
    tokens_own = spec.sampling.max_new_tokens

    def heldout(model: str, label: str):
        return evaluate_heldout(
            pool.get(model), model, own, paths.eval / f"heldout-{label}.jsonl",
            max_new_tokens=tokens_own, progress=progress,
        )

    labels = {previous: previous, spec.name: f"{spec.name}-a{attempt}"}
    scores, own_scores, caps = {}, {}, {}
    for model, label in labels.items():
        own_scores[model] = heldout(model, label)
        caps[model] = earlier_heldout(job, model, lambda e, label=label: f"capability-{e.name}-{label}.jsonl")
        bench = {
            suite: _benchmark(
                suite,
                pool.get(model),
                pool.get(judge_name) if suite != "ifeval" else None,
                paths.eval / "benchmarks" / label,
                opts.benchmarks,
                settings,
                progress,
            )
            for suite in ("advbench", "xstest", "ifeval")
        }
        scores[model] = ModelScores.from_results(
            model,
            bench["advbench"],
            bench["xstest"],
            bench["ifeval"],
            capability={name: s.mean for name, s in caps[model].items()},
            own_heldout=own_scores[model].mean,
        )
    base = own_scores[previous] if previous == "base" else heldout("base", "base")
    gate = safety_gate(
        spec.safety_gate or SafetyGate(), scores[previous], scores[spec.name], stage=spec.name, where=str(paths.eval)
    )
    extra = {
        "previous_heldout": own_scores[previous].model_dump(),
        "previous_retained": {name: s.model_dump() for name, s in caps[previous].items()},
        "safety": {
            "before": scores[previous].flat(),
            "after": scores[spec.name].flat(),
            "gate": gate.summary(),
            "checks": [c.model_dump() for c in gate.checks],
            "judge": f"{judge_name} ({pool.ref(judge_name)})",
        },
    }
    if opts.dev_split:
        dev = dev_instances(opts.redteam_seeds)
        extra["dev"] = {
            "n": {"unsafe": sum(i.family == "redteam" for i in dev), "safe": sum(i.family != "redteam" for i in dev)},
            **{
                key: dev_rates(
                    pool.get(model), model, dev, paths.eval / f"dev-{labels[model]}.jsonl", tokens_own, progress
                )
                for key, model in (("before", previous), ("after", spec.name))
            },
        }
    mixture_file = paths.root / MIXTURE_FILE
    if mixture_file.exists():
        extra["mixture"] = read_json(mixture_file)
    stats_file = paths.root / STATS_FILE
    if stats_file.exists():
        extra["constitutional"] = read_json(stats_file)
    retained = {name: s.model_dump() for name, s in caps[spec.name].items()}
    return StageEvaluation(gate, own_scores[spec.name], base, retained, extra)


def dev_rates(engine, model: str, instances, rows_path: Path, max_new_tokens: int, progress) -> dict:
    """Refusal rates of ``model`` on the dev split (greedy, resumable rows): ``unsafe_refused``
    (harmful requests refused), ``safe_refused`` (look-alikes refused) and ``discrimination``
    (their difference), in percent, by the refusal rule the stage's filters use."""
    evaluate_heldout(engine, model, instances, rows_path, max_new_tokens=max_new_tokens, progress=progress)
    rows = {r["id"]: r for r in iter_jsonl(rows_path)}
    by_family: dict[str, list[bool]] = {"redteam": [], "ordinary": []}
    for inst in instances:
        by_family[inst.family].append(refused(rows[inst.id]["output"]))
    unsafe, safe = (100.0 * share(by_family[f]) if by_family[f] else 0.0 for f in ("redteam", "ordinary"))
    return {"unsafe_refused": unsafe, "safe_refused": safe, "discrimination": unsafe - safe}


def _with_either_rule(result, out_dir: Path):
    """An AdvBench result saved before ``either_rule_safe_rate`` existed, with that rate
    computed from its saved responses (the same rule `eval_advbench` applies now)."""
    rows_path = out_dir / "advbench.rows.jsonl"
    if result.suite != "advbench" or "either_rule_safe_rate" in result.metrics or not rows_path.exists():
        return result
    responses = [row["response"] for row in iter_jsonl(rows_path)]
    result.metrics["either_rule_safe_rate"] = share([refused(r) for r in responses])
    return result


def _benchmark(suite, engine, judge, out_dir: Path, opts: BenchmarkOptions, settings, progress):
    """Run one benchmark suite (or load its saved result when the settings match); None if skipped."""
    limit = {"advbench": opts.advbench_limit, "xstest": opts.xstest_limit, "ifeval": opts.ifeval_limit}[suite]
    if limit == 0:
        return None
    saved = out_dir / f"{suite}.json"
    if saved.exists():
        result = BenchmarkResult.model_validate(read_json(saved))
        if result.settings.get("limit") == limit and result.settings.get("max_new_tokens") == opts.max_new_tokens:
            return _with_either_rule(result, out_dir)
    result = benchmarks.run_benchmark(  # through the module: tests replace it to prove a resume reruns nothing
        suite,
        engine,
        data_path=settings.benchmarks_dir,
        judge_engine=judge,
        limit=limit,
        max_new_tokens=opts.max_new_tokens,
        seed=settings.seed,
        progress=progress,
    )
    result.save(out_dir)
    return result

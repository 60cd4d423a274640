"""The constitutional stage's evaluation: benchmarks, capability and own held-out, before and after; the safety gate."""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.constitution import PROMPT_KINDS
from cai_bootstrap.config import SafetyGate
from cai_bootstrap.engines.refusal_calibration import CalibratedEngine, uncalibrated
from cai_bootstrap.evaluation import benchmarks
from cai_bootstrap.evaluation.benchmarks import BenchmarkResult, share
from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances
from cai_bootstrap.evaluation.safety_gate import ModelScores, safety_gate
from cai_bootstrap.jsonl import iter_jsonl, read_json
from cai_bootstrap.stages.kind import StageEvaluation, StageJob, earlier_heldout
from cai_bootstrap.stages.constitutional_stage.calibration import calibrate_on_dev
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

    With ``refusal_calibration`` the new model's refusal threshold is chosen on the dev split
    (`calibrate_on_dev`), saved next to its adapter, and the calibrated model is scored again
    on everything (rows labelled ``<stage>-a<N>-calibrated``): the gate judges the model as it
    will be used; the uncalibrated figures stay in ``extra["safety"]["uncalibrated"]``.
    """
    spec, settings, pool, paths, attempt, progress = (
        job.spec, job.settings, job.pool, job.paths, job.attempt, job.progress
    )
    previous = job.previous or "base"
    opts = stage_options(spec)
    judge_name = job.resolve("judge")
    own = heldout_instances(spec.families or list(PROMPT_KINDS), spec.heldout, settings.seed)
    tokens_own = spec.sampling.max_new_tokens

    def heldout(engine, model: str, label: str):
        return evaluate_heldout(
            engine, model, own, paths.eval / f"heldout-{label}.jsonl", max_new_tokens=tokens_own, progress=progress,
        )

    labels = {previous: previous, spec.name: f"{spec.name}-a{attempt}"}
    # the new model as trained: a calibration a resumed run left next to its adapter is set apart
    engines = {previous: pool.get(previous), spec.name: uncalibrated(pool.get(spec.name))}

    def score(model: str, label: str, engine) -> tuple:
        own_score = heldout(engine, model, label)
        caps = earlier_heldout(job, model, lambda e: f"capability-{e.name}-{label}.jsonl", engine=engine)
        bench = {
            suite: _benchmark(
                suite, engine, pool.get(judge_name) if suite != "ifeval" else None,
                paths.eval / "benchmarks" / label, opts.benchmarks, settings, progress,
            )
            for suite in ("advbench", "xstest", "ifeval")
        }
        scores = ModelScores.from_results(
            model, bench["advbench"], bench["xstest"], bench["ifeval"],
            capability={name: s.mean for name, s in caps.items()}, own_heldout=own_score.mean,
        )
        return own_score, caps, scores

    results = {model: score(model, label, engines[model]) for model, label in labels.items()}
    own_scores = {model: r[0] for model, r in results.items()}
    dev = dev_instances(opts.redteam_seeds) if opts.dev_split else []
    dev_figures = {
        key: dev_rates(engines[model], model, dev, paths.eval / f"dev-{labels[model]}.jsonl", tokens_own, progress)
        for key, model in (("before", previous), ("after", spec.name))
    } if dev else {}
    gate_spec = spec.safety_gate or SafetyGate()
    calibrated = None
    if opts.refusal_calibration and dev:
        calibration = calibrate_on_dev(
            engines[spec.name], dev, paths.eval / f"calibration-{labels[spec.name]}.json",
            before_safe_refused=dev_figures["before"]["safe_refused"],
            max_increase_pt=gate_spec.max_over_refusal_increase, max_new_tokens=tokens_own, progress=progress,
        )
        for adapter in (paths.train(attempt) / "adapter", paths.model / "adapter"):
            calibration.save(adapter)
        label = f"{labels[spec.name]}-calibrated"
        engine = CalibratedEngine(engines[spec.name], calibration)
        calibrated = (calibration, score(spec.name, label, engine))
        dev_figures["calibrated"] = dev_rates(engine, spec.name, dev, paths.eval / f"dev-{label}.jsonl", tokens_own,
                                              progress)
        pool.drop(spec.name)  # the next user of this model loads it with its calibration
    after = calibrated[1] if calibrated else results[spec.name]
    base = own_scores[previous] if previous == "base" else heldout(pool.get("base"), "base", "base")
    gate = safety_gate(gate_spec, results[previous][2], after[2], stage=spec.name, where=str(paths.eval))
    extra = {
        "previous_heldout": own_scores[previous].model_dump(),
        "previous_retained": {name: s.model_dump() for name, s in results[previous][1].items()},
        "safety": {
            "before": results[previous][2].flat(),
            "after": after[2].flat(),
            "gate": gate.summary(),
            "checks": [c.model_dump() for c in gate.checks],
            "judge": f"{judge_name} ({pool.ref(judge_name)})",
        },
    }
    if calibrated:
        extra["safety"]["uncalibrated"] = results[spec.name][2].flat()
        extra["calibration"] = calibrated[0].model_dump()
    if dev:
        extra["dev"] = {"n": {"unsafe": sum(i.family == "redteam" for i in dev),
                              "safe": sum(i.family != "redteam" for i in dev)}, **dev_figures}
    mixture_file = paths.root / MIXTURE_FILE
    if mixture_file.exists():
        extra["mixture"] = read_json(mixture_file)
    stats_file = paths.root / STATS_FILE
    if stats_file.exists():
        extra["constitutional"] = read_json(stats_file)
    retained = {name: s.model_dump() for name, s in after[1].items()}
    return StageEvaluation(gate, after[0], base, retained, extra)


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

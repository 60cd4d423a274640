"""The ``constitutional`` stage kind: what the runner, the planner and the CLI ask of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from cai_bootstrap.config import StageSpec
from cai_bootstrap.evaluation.benchmark_data import BENCHMARK_SIZES
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl
from cai_bootstrap.runs.layout import StagePaths
from cai_bootstrap.stages.constitutional_stage.builder import build
from cai_bootstrap.stages.constitutional_stage.contrast import contrast_pairs
from cai_bootstrap.stages.constitutional_stage.evaluate import evaluate_stage
from cai_bootstrap.stages.constitutional_stage.helpful import helpful_samples
from cai_bootstrap.stages.constitutional_stage.items import FALLBACK_REVISER
from cai_bootstrap.stages.constitutional_stage.mixture import MIXTURE_FILE, refusal_mix
from cai_bootstrap.stages.constitutional_stage.options import ConstitutionalOptions, stage_options
from cai_bootstrap.stages.constitutional_stage.prompts import REFUSAL_WRITER
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.kind import StageEvaluation, StageJob, StageKind


def stage_helpful_samples(spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> list[dict]:
    """The stage's SFT-only helpful samples (`helpful_samples`), if asked for and SFT is trained."""
    if spec.training.method == "dpo":
        return []
    share = stage_options(spec).helpful_samples
    return helpful_samples(list(iter_jsonl(paths.data)), int(round(share * n_own)), seed) if share > 0 else []


def stage_contrast_pairs(spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> list[dict]:
    """The stage's contrast pairs (`contrast_pairs`), if asked for."""
    share = stage_options(spec).contrast_pairs
    return contrast_pairs(paths.root, int(round(share * n_own)), seed) if share > 0 else []


class ConstitutionalStage(StageKind):
    name = "constitutional"
    uses_constitution = True
    roles = ("prompt_writer", "answerer", "critic", "reviser", "judge", FALLBACK_REVISER, REFUSAL_WRITER)
    options_model = ConstitutionalOptions
    retained_skill = False  # its held-out set is safety, judged by the gate, not a skill to keep
    keeps_best_attempt = False  # the safety gate has no single score to rank attempts by
    no_control_reason: ClassVar[str | None] = (
        "the constitutional stage is judged by safety suites, not a held-out set (not ablated yet)"
    )
    default_yield = 0.25  # its builder's oversample
    answers_per_case = 1  # the builder answers once and critiques once per work item
    critiques_per_case = 1

    def build(self, ctx: StageContext) -> None:
        build(ctx)

    def evaluate(self, job: StageJob) -> StageEvaluation:
        return evaluate_stage(job)

    def extra_records(self, spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> dict[str, list[dict]]:
        return {
            "helpful samples": stage_helpful_samples(spec, paths, n_own, seed),
            "contrast pairs": stage_contrast_pairs(spec, paths, n_own, seed),
        }

    def training_mix(
        self, spec: StageSpec, paths: StagePaths, own: list[dict], replay: Callable[[int], list[dict]], seed: int
    ) -> dict[str, list[dict]]:
        """With ``refusal_share``: refusals exactly that share of the records trained on
        (`refusal_mix`), summarised in ``mixture.json``; without it, the default mix."""
        share = stage_options(spec).refusal_share
        if share is None:
            return super().training_mix(spec, paths, own, replay, seed)
        extras = self.extra_records(spec, paths, len(own), seed)
        groups, summary = refusal_mix(own, extras, replay, share, spec.training.method)
        atomic_write_json(paths.root / MIXTURE_FILE, summary)
        return groups

    def gate_label(self, spec: StageSpec) -> str:
        return "safety gate"

    def plan_eval_extra(self, spec: StageSpec) -> tuple[int, int]:
        """Two models (before, after) on AdvBench, XSTest and IFEval, within ``options.benchmarks`` limits."""
        bench = stage_options(spec).benchmarks
        limits = {
            "advbench": bench.advbench_limit,
            "xstest": None if bench.xstest_limit is None else 2 * bench.xstest_limit,
            "ifeval": bench.ifeval_limit,
        }
        cases = sum(min(size, limits[b]) if limits[b] is not None else size for b, size in BENCHMARK_SIZES.items())
        return 2 * cases, 2 * cases * int(bench.max_new_tokens)

"""The stage-kind contract: what the runner asks of every kind of stage, with defaults.

A kind is one object in `cai_bootstrap.stages.registry.KINDS`. The runner calls, per
attempt, ``build(ctx)`` (write ``data.jsonl``), trains on the kept records plus
``extra_records`` (and replay), then ``evaluate(job)``, whose `StageEvaluation` it turns
into ``metrics.json`` (`stages.metrics.stage_metrics`). Everything else the runner, the
planner and the CLI need to know about a kind is an attribute here; no code outside the
kinds compares a kind's name.

The default ``evaluate`` is the held-out gate: the stage model and the base model on the
stage's held-out cases, the stage model on every earlier stage's held-out set (retained
skills), and ``threshold`` on the mean (or on every family with ``per_family_threshold``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError
from rich.console import Console

from cai_bootstrap.config import ConfigError, RunSettings, StageSpec, format_validation_error
from cai_bootstrap.engines.base import Engine
from cai_bootstrap.evaluation.gates import GateResult, heldout_gate
from cai_bootstrap.evaluation.heldout import HeldoutScore, evaluate_heldout
from cai_bootstrap.evaluation.knowledge import KnowledgeSplit, fact_of, probe_facts, split_by_knowledge
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.runs.layout import StagePaths
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.heldout_sets import PROBE_FILE, stage_heldout
from cai_bootstrap.tasks.base import Instance, TaskFamily


@dataclass
class StageJob:
    """One attempt of one stage, as the phases and the kinds see it."""

    run_dir: Path
    stages: list[StageSpec]  # every stage of the run, in order
    index: int  # this stage's place in ``stages``
    settings: RunSettings
    pool: ModelPool
    paths: StagePaths
    attempt: int = 0
    progress: bool = True
    console: Console = field(default_factory=lambda: Console(quiet=True))
    #: earlier stages whose held-out sets measure a skill to keep (set by `registry.stage_job`)
    retained_sets: list[StageSpec] = field(default_factory=list)

    @property
    def spec(self) -> StageSpec:
        return self.stages[self.index]

    @property
    def previous(self) -> str | None:
        """The stage this one trains from (None: the base model)."""
        return self.stages[self.index - 1].name if self.index > 0 else None

    def resolve(self, role: str) -> str:
        """Role -> model name in the pool (``base``, ``judge`` or a stage), as the curriculum says."""
        return resolve_role(self.spec, self.previous, self.settings, role)


def resolve_role(spec: StageSpec, previous: str | None, settings: RunSettings, role: str) -> str:
    who = spec.roles.get(role, "previous")
    if who == "previous":
        who = previous or "base"
    if role == "judge" and who == "base" and settings.judge_model:
        return "judge"
    if who == spec.name:
        raise ConfigError(f"{spec.name}: role {role!r} cannot be played by the model being trained")
    return who


@dataclass
class StageEvaluation:
    """What a kind's ``evaluate`` found; the runner writes it into ``metrics.json``."""

    gate: GateResult
    heldout: HeldoutScore  # the stage model on this stage's held-out set
    base: HeldoutScore | None  # the base model on the same set
    retained: dict[str, dict]  # earlier stage -> the stage model's score on its held-out set
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific entries of metrics.json


def parse_options(spec: StageSpec, model: type[BaseModel]) -> BaseModel:
    """``spec.options`` as ``model`` (unknown keys and wrong types are errors naming the stage)."""
    try:
        return model.model_validate(spec.options)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"stage {spec.name!r} options", exc)) from None


def earlier_heldout(
    job: StageJob, model: str, rows_file: Callable[[StageSpec], str], engine: Engine | None = None
) -> dict[str, HeldoutScore]:
    """``model`` on the held-out set of every stage in ``job.retained_sets`` (skills kept?).

    ``rows_file(earlier)`` names the per-item rows file under ``job.paths.eval``; ``engine``
    (default: the pool's engine of ``model``) generates the answers.
    """
    out = {}
    for earlier in job.retained_sets:
        instances = stage_heldout(job.run_dir, earlier, job.settings.seed)
        out[earlier.name] = evaluate_heldout(
            engine or job.pool.get(model), model, instances, job.paths.eval / rows_file(earlier),
            max_new_tokens=earlier.sampling.max_new_tokens, progress=job.progress,
        )
    return out


def knowledge_split(job: StageJob, instances: list[Instance], rows_file: Path) -> KnowledgeSplit | None:
    """The stage model's held-out success on facts the base model knows and does not know
    (`evaluation.knowledge`); None when no held-out case carries a fact."""
    if not any(fact_of(inst) for inst in instances):
        return None
    probes = probe_facts(job.pool.get("base"), instances, job.run_dir / PROBE_FILE,
                         seed=job.settings.seed, progress=job.progress)
    return split_by_knowledge(list(iter_jsonl(rows_file)), instances, probes)


class StageKind:
    """A kind of stage. Subclasses set ``name`` and ``build``; the rest has defaults."""

    name: ClassVar[str]
    #: ``options:`` model (None: the kind reads no options and accepts none)
    options_model: ClassVar[type[BaseModel] | None] = None
    #: its held-out set is a skill later stages must keep (scored as "retained")
    retained_skill: ClassVar[bool] = True
    #: after the last failed attempt, install the attempt with the best held-out score
    keeps_best_attempt: ClassVar[bool] = True
    #: why the control experiment does not apply to this kind (None: it does)
    no_control_reason: ClassVar[str | None] = None
    #: its records are (instruction -> answer) pairs that the families' verifiers check, so the
    #: stage's own model can write more of them in self-training rounds (`stages.rounds`) and a
    #: validation split can be carved from its training instances (`stages.validation`)
    supports_rounds: ClassVar[bool] = False
    #: planner: expected share of candidate prompts that end as a kept record
    default_yield: ClassVar[float] = 0.5
    #: planner: samples per case of the answerer and the critic (None: the sampling settings)
    answers_per_case: ClassVar[int | None] = None
    critiques_per_case: ClassVar[int | None] = None
    #: the role names a curriculum may give this kind in ``roles:`` besides ``judge`` (which every
    #: kind accepts: stage defaults name it once for all stages); any other key is a typo
    roles: ClassVar[tuple[str, ...]] = ("answerer",)
    #: its build reads the run's constitution (loaded when the run is created, to fail early)
    uses_constitution: ClassVar[bool] = False

    def check(self, spec: StageSpec) -> None:
        """Reject settings this kind cannot honour (before any work starts)."""
        self.options(spec)
        unknown_roles = sorted(set(spec.roles) - set(self.roles) - {"judge"})
        if unknown_roles:
            raise ConfigError(f"stage {spec.name!r}: kind {self.name!r} has no role {', '.join(unknown_roles)}; "
                              f"its roles: {', '.join(self.roles)} (and judge)")
        if not self.supports_rounds and (spec.rounds.count or spec.validation):
            raise ConfigError(f"stage {spec.name!r}: kind {self.name!r} has no self-training rounds or validation "
                              f"split (rounds.count={spec.rounds.count}, validation={spec.validation}); set them to 0")
        if spec.rounds.count and spec.retry.max_retries:
            raise ConfigError(f"stage {spec.name!r}: rounds take the place of retries; set retry.max_retries: 0 "
                              f"or rounds.count: 0 (got {spec.retry.max_retries} and {spec.rounds.count})")

    def options(self, spec: StageSpec) -> BaseModel | dict:
        """The stage's validated options (a plain dict when the kind declares no model)."""
        if self.options_model is None:
            if spec.options:
                raise ConfigError(f"stage {spec.name!r}: kind {self.name!r} takes no options, got {sorted(spec.options)}")
            return {}
        return parse_options(spec, self.options_model)

    def plan_options(self, spec: StageSpec) -> dict:
        """Options as the planner reads them: validated, defaults filled in."""
        opts = self.options(spec)
        return opts if isinstance(opts, dict) else opts.model_dump()

    def build(self, ctx: StageContext) -> None:
        """Write this stage's training candidates to ``ctx.sink``."""
        raise NotImplementedError

    def evaluate(self, job: StageJob) -> StageEvaluation:
        """The held-out gate (see the module docstring)."""
        spec, paths, pool = job.spec, job.paths, job.pool
        instances = stage_heldout(job.run_dir, spec, job.settings.seed)
        tokens = spec.sampling.max_new_tokens
        score = evaluate_heldout(
            pool.get(spec.name), spec.name, instances, paths.eval / f"heldout-{spec.name}-a{job.attempt}.jsonl",
            max_new_tokens=tokens, progress=job.progress,
        )
        base = evaluate_heldout(
            pool.get("base"), "base", instances, paths.eval / "heldout-base.jsonl",
            max_new_tokens=tokens, progress=job.progress,
        )
        retained = earlier_heldout(job, spec.name, lambda e: f"retained-{e.name}-a{job.attempt}.jsonl")
        gate = heldout_gate(spec, score, str(paths.eval))
        evaluation = StageEvaluation(gate, score, base, {name: s.model_dump() for name, s in retained.items()})
        split = knowledge_split(job, instances, paths.eval / f"heldout-{spec.name}-a{job.attempt}.jsonl")
        if split is not None:
            evaluation.extra["heldout_by_knowledge"] = split.model_dump()
        return evaluation

    def extra_records(self, spec: StageSpec, paths: StagePaths, n_own: int, seed: int) -> dict[str, list[dict]]:
        """Training records beyond the stage's own and the replay, by label (e.g. helpful samples)."""
        return {}

    def training_mix(
        self, spec: StageSpec, paths: StagePaths, own: list[dict], replay: Callable[[int], list[dict]], seed: int
    ) -> dict[str, list[dict]]:
        """The records an attempt trains on, by source: ``own`` (the stage's kept records, the
        attempt's target), ``replay`` (``replay(n)``: up to n kept records of earlier stages,
        spread over them) and the `extra_records` by label. Default: ``spec.replay`` x own
        replayed records and every extra record; a kind that mixes by other rules overrides it."""
        return {
            "own": own,
            "replay": replay(int(round(spec.replay * len(own)))),
            **self.extra_records(spec, paths, len(own), seed),
        }

    def round_first_pool(self, ctx: StageContext) -> list[tuple[TaskFamily, Instance]] | None:
        """Self-training rounds: the first training's candidate instances, which a round never
        counts as fresh (None: the skill builders' `candidates.train_pool`)."""
        return None

    def round_sampling(self, ctx: StageContext, family: TaskFamily) -> dict[str, Any]:
        """Self-training rounds: sampling overrides for ``family``'s instances (its token need,
        top-k, ...); instances with equal overrides share a generate call. Default: none."""
        return {}

    def gate_label(self, spec: StageSpec) -> str:
        """The gate as a table shows it."""
        return f"{spec.threshold:.0%}"

    def plan_eval_extra(self, spec: StageSpec) -> tuple[int, int]:
        """Planner: (generations, tokens) the evaluation costs beyond the held-out sets."""
        return 0, 0

    def plan_answer_tokens(self, spec: StageSpec) -> int:
        """Planner: the token limit of one answer (the answerer's, the reviser's, a round's sample)."""
        return spec.sampling.max_new_tokens

    def plan_samples(self, spec: StageSpec, expected_yield: float) -> dict[str, tuple[float, int]]:
        """Planner: (generations per candidate, tokens each) of the roles this kind's builder samples
        otherwise than the planner's generic count (`cai_bootstrap.plan`); {}: the generic count.
        ``expected_yield``: the share of candidates the planner expects to end as kept records."""
        return {}

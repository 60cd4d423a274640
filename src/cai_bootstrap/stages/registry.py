"""Every stage kind, by name: the one list the runner, the planner, the CLI and validation read.

Add a kind: write ``stages/<kind>_stage.py`` with a `StageKind` subclass, add one line here.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cai_bootstrap import config
from cai_bootstrap.config import ConfigError, Curriculum, RunSettings, StageSpec
from cai_bootstrap.runs.layout import StagePaths
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages.constitutional_stage import ConstitutionalStage
from cai_bootstrap.stages.evaluation_stage import EvaluationStage
from cai_bootstrap.stages.explicit_stage import ExplicitStage
from cai_bootstrap.stages.generation_stage import GenerationStage
from cai_bootstrap.stages.implicit_stage import ImplicitStage
from cai_bootstrap.stages.kind import StageJob, StageKind
from cai_bootstrap.stages.revision_stage import RevisionStage
from cai_bootstrap.stages.task_stage import TaskStage

KINDS: dict[str, StageKind] = {
    kind.name: kind
    for kind in (
        ExplicitStage(),
        ImplicitStage(),
        GenerationStage(),
        EvaluationStage(),
        RevisionStage(),
        TaskStage(),
        ConstitutionalStage(),
    )
}


def get_kind(name: str) -> StageKind:
    if name not in KINDS:
        raise ConfigError(f"unknown stage kind {name!r}; known: {', '.join(KINDS)}")
    return KINDS[name]


def check_curriculum(curriculum: Curriculum) -> None:
    """Every stage's kind is known and its options and rounds are valid for that kind (before any work)."""
    for spec in curriculum.stages:
        get_kind(spec.kind).check(spec)


def retained_sets(stages: list[StageSpec], index: int) -> list[StageSpec]:
    """Earlier stages whose held-out sets measure a skill the stage at ``index`` must keep."""
    return [s for s in stages[:index] if get_kind(s.kind).retained_skill and s.families]


def stage_job(
    run_dir: Path, stages: list[StageSpec], index: int, settings: RunSettings, pool: ModelPool, paths: StagePaths,
    attempt: int = 0, progress: bool = True, console: Console | None = None,
) -> StageJob:
    """A `StageJob` with the run's retained sets filled in."""
    return StageJob(
        run_dir=run_dir, stages=stages, index=index, settings=settings, pool=pool, paths=paths, attempt=attempt,
        progress=progress, console=console or Console(quiet=True), retained_sets=retained_sets(stages, index),
    )


def load_curriculum(name_or_path: str, preset: str, stage_overrides: dict[str, dict] | None = None) -> Curriculum:
    """`config.load_curriculum`, then every stage's kind and options checked (`check_curriculum`)."""
    curriculum = config.load_curriculum(name_or_path, preset, stage_overrides)
    check_curriculum(curriculum)
    return curriculum

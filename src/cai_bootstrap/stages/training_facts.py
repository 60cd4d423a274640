"""Training topics a stage leaves out: its validation split's, and, where the stage asks so
(``train_known``), the facts the base model does not know.

Why leave unknown facts out of training: Gekhman et al. (2024, "Does fine-tuning LLMs on new
knowledge encourage hallucinations?") fine-tuned on questions the model did and did not know
and found the unknown ones learnt slowly and, once learnt, raising hallucination on held-out
questions; training on known facts taught the format and kept the knowledge. A stage's
records are its writers' verified answers, so a fact the base model states right in 1 of 8
samples still reaches training as a confident sentence. `plan_known_training` probes the base
model on every training fact of such a stage before any stage runs and writes
``<run>/knowledge/train.json`` (per stage: the criterion, the topics left out); `withheld_topics`
reads it, so the first data and every round draw from the same pool.
"""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.config import StageSpec
from cai_bootstrap.engines.base import Engine
from cai_bootstrap.errors import ConfigError
from cai_bootstrap.evaluation.knowledge import fact_of, probe_facts
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.stages.heldout_sets import PROBE_FILE
from cai_bootstrap.stages.validation import topic_key, validation_instances, validation_topics
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.base import Instance

TRAIN_PLAN_FILE = Path("knowledge") / "train.json"
#: instances drawn per family to list its training facts (every item under every phrasing of the banks shipped)
ALL_INSTANCES = 100_000


def _training_facts(spec: StageSpec, seed: int) -> list[tuple[Instance, str]]:
    """Every fact-bearing training instance of the stage's families that ``train_known`` names, with its fact id."""
    draws = (get_family(name).instances("train", ALL_INSTANCES, seed) for name in spec.families
             if spec.known_criterion("train_known", name))
    return [(inst, fact.id) for draw in draws for inst in draw if (fact := fact_of(inst))]


def plan_known_training(run_dir: Path, stages: list[StageSpec], seed: int, base: Engine,
                        progress: bool = True) -> dict:
    """Probe the base model on the training facts of every ``train_known`` stage; write the plan."""
    plan_file = run_dir / TRAIN_PLAN_FILE
    plan = read_json(plan_file) if plan_file.exists() else {}
    for spec in stages:
        if not spec.train_known or plan.get(spec.name, {}).get("criterion") == spec.train_known:
            continue
        pool = _training_facts(spec, seed)
        probes = probe_facts(base, [inst for inst, _ in pool], run_dir / PROBE_FILE, seed=seed, progress=progress)
        unknown = [(inst, fact) for inst, fact in pool
                   if not probes[fact].knows(spec.known_criterion("train_known", inst.family))]
        if pool and len(unknown) == len(pool):
            raise ConfigError(f"{spec.name}: the base model knows none of the {len(pool)} training cases' facts "
                              f"(train_known: {spec.train_known}), so nothing would be left to train on; set "
                              "train_known: false for this stage")
        plan[spec.name] = {
            "criterion": spec.train_known,
            "unknown_topics": sorted({topic_key(inst) for inst, _ in unknown}),
            "facts_probed": len({fact for _, fact in pool}),
            "facts_left_out": len({fact for _, fact in unknown}),
        }
        atomic_write_json(plan_file, plan)
    return plan


def unknown_topics(run_dir: Path, spec: StageSpec) -> frozenset[str]:
    """`topic_key` of the training instances whose fact the base model does not know (empty without ``train_known``)."""
    if not spec.train_known:
        return frozenset()
    plan = run_dir / TRAIN_PLAN_FILE
    if not plan.exists():
        raise FileNotFoundError(f"{plan}: the training-facts plan of a stage with train_known is written "
                                "before any stage runs; resume the run to write it")
    return frozenset(read_json(plan)[spec.name]["unknown_topics"])


def stage_validation(run_dir: Path, spec: StageSpec, seed: int) -> list[Instance]:
    """The stage's validation cases in this run: with ``train_known``, only facts the base model knows,
    as its training and held-out cases. Drawn from every fact, the split of runs/tasks-std2 (12 cases)
    scored its first training 50% and its rounds 42% while held-out went from 70 to 87%, and chose the
    first training."""
    return validation_instances(spec, seed, unknown_topics(run_dir, spec))


def withheld_topics(run_dir: Path, spec: StageSpec, seed: int) -> set[str]:
    """`topic_key` of every training topic the stage leaves out (`validation.withheld` reads it)."""
    unknown = unknown_topics(run_dir, spec)
    return validation_topics(spec, seed, unknown) | unknown

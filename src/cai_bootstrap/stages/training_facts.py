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

``validation_known`` probes too, for the validation split only: explanations keep every training
subject (a round keeps only answers the verifier passed) while their held-out subjects are ones
the base model explains (``heldout_known``); a validation split drawn from all training subjects
asked mostly ones it cannot (it explains 1 of the first 15 by majority), so choosing a round
there measured other subjects than held-out does. The plan records those topics
(``validation_unknown_topics``); `stage_validation` leaves them out, training does not.
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


def _training_facts(spec: StageSpec, seed: int, setting: str = "train_known") -> list[tuple[Instance, str]]:
    """Every fact-bearing training instance of the stage's families that ``setting`` names, with its fact id."""
    draws = (get_family(name).instances("train", ALL_INSTANCES, seed) for name in spec.families
             if spec.known_criterion(setting, name))
    return [(inst, fact.id) for draw in draws for inst in draw if (fact := fact_of(inst))]


def plan_known_training(run_dir: Path, stages: list[StageSpec], seed: int, base: Engine,
                        progress: bool = True) -> dict:
    """Probe the base model on the training facts of every ``train_known`` stage (and of every
    ``validation_known`` one with a validation split); write the plan."""
    plan_file = run_dir / TRAIN_PLAN_FILE
    plan = read_json(plan_file) if plan_file.exists() else {}
    for spec in stages:
        entry = dict(plan.get(spec.name, {}))
        if spec.train_known and entry.get("criterion") != spec.train_known:
            pool = _training_facts(spec, seed)
            unknown = _unknown(spec, "train_known", pool, run_dir, seed, base, progress)
            entry.update({
                "criterion": spec.train_known,
                "unknown_topics": sorted({topic_key(inst) for inst, _ in unknown}),
                "facts_probed": len({fact for _, fact in pool}),
                "facts_left_out": len({fact for _, fact in unknown}),
            })
        if spec.probes_validation and entry.get("validation_criterion") != spec.validation_known:
            pool = _training_facts(spec, seed, "validation_known")
            unknown = _unknown(spec, "validation_known", pool, run_dir, seed, base, progress)
            entry.update({
                "validation_criterion": spec.validation_known,
                "validation_unknown_topics": sorted({topic_key(inst) for inst, _ in unknown}),
                "validation_facts_probed": len({fact for _, fact in pool}),
            })
        if entry != plan.get(spec.name, {}):
            plan[spec.name] = entry
            atomic_write_json(plan_file, plan)
    return plan


def _unknown(spec: StageSpec, setting: str, pool: list[tuple[Instance, str]], run_dir: Path, seed: int,
             base: Engine, progress: bool) -> list[tuple[Instance, str]]:
    """The instances of ``pool`` whose fact the base model does not know under ``setting``'s criterion."""
    probes = probe_facts(base, [inst for inst, _ in pool], run_dir / PROBE_FILE, seed=seed, progress=progress)
    unknown = [(inst, fact) for inst, fact in pool if not probes[fact].knows(spec.known_criterion(setting, inst.family))]
    if pool and len(unknown) == len(pool):
        raise ConfigError(f"{spec.name}: the base model knows none of the {len(pool)} training cases' facts "
                          f"({setting}: {getattr(spec, setting)}), so nothing would be left to "
                          f"{'train' if setting == 'train_known' else 'validate'} on; set {setting}: false for "
                          "this stage")
    return unknown


def unknown_topics(run_dir: Path, spec: StageSpec) -> frozenset[str]:
    """`topic_key` of the training instances whose fact the base model does not know (empty without ``train_known``)."""
    return _planned_topics(run_dir, spec, "train_known", "unknown_topics") if spec.train_known else frozenset()


def validation_unknown_topics(run_dir: Path, spec: StageSpec) -> frozenset[str]:
    """`topic_key` of the training instances that ``validation_known`` keeps out of validation
    (their fact unknown to the base model); training keeps them. A plan written before
    ``validation_known`` existed has none."""
    if not spec.probes_validation:
        return frozenset()
    return _planned_topics(run_dir, spec, "validation_known", "validation_unknown_topics", required=False)


def _planned_topics(run_dir: Path, spec: StageSpec, setting: str, key: str, required: bool = True) -> frozenset[str]:
    """The topics ``key`` of the stage's entry in the training-facts plan (written by `plan_known_training`)."""
    plan = run_dir / TRAIN_PLAN_FILE
    if not plan.exists():
        raise FileNotFoundError(f"{plan}: the training-facts plan of a stage with {setting} is written "
                                "before any stage runs; resume the run to write it")
    entry = read_json(plan)[spec.name]
    return frozenset(entry[key] if required else entry.get(key, []))


def stage_validation(run_dir: Path, spec: StageSpec, seed: int) -> list[Instance]:
    """The stage's validation cases in this run: with ``train_known``, only facts the base model knows,
    as its training and held-out cases. Drawn from every fact, the split of runs/tasks-std2 (12 cases)
    scored its first training 50% and its rounds 42% while held-out went from 70 to 87%, and chose the
    first training."""
    return validation_instances(spec, seed, unknown_topics(run_dir, spec) | validation_unknown_topics(run_dir, spec))


def withheld_topics(run_dir: Path, spec: StageSpec, seed: int) -> set[str]:
    """`topic_key` of every training topic the stage leaves out (`validation.withheld` reads it)."""
    unknown = unknown_topics(run_dir, spec)
    return validation_topics(spec, seed, unknown | validation_unknown_topics(run_dir, spec)) | unknown

"""The validation split: training *topics* set aside to choose among a stage's rounds.

Per family, ``spec.validation`` training instances of distinct topics (a fact, a category, a
greeting) are drawn with a seed of their own, and every training instance of those topics is
removed from every training pool (`candidates.train_pool`, `rounds.round_instances`). The
runner scores each round's model on them and installs the round that scores best there, so
the held-out set is never used to choose and only scores.

Why topics and not instances: the same fact is asked by several templates, so an instance
split left the validation case's fact in the training data. Measured on stage 1 (standard
preset, 649 records): full fine-tuning rose on such a split from 81 to 90% over three
epochs while its held-out success (topics disjoint from training by design) was 69%, below
LoRA's 73%: the split rewarded memorised facts. A topic split asks what held-out asks.
"""

from __future__ import annotations

from cai_bootstrap.config import StageSpec
from cai_bootstrap.stages.context import derive_seed
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.base import Instance, TaskFamily

#: instances drawn per wanted validation case, to find ``spec.validation`` distinct topics
TOPIC_DRAW_FACTOR = 8


def topic_key(inst: Instance) -> str:
    """What a validation case withholds from training: its family's topic, or itself when it has none."""
    return f"{inst.family}:{inst.topic}" if inst.topic else inst.id


def validation_instances(spec: StageSpec, seed: int) -> list[Instance]:
    """``spec.validation`` training instances of distinct topics per family, never trained on (empty when 0)."""
    if spec.validation <= 0:
        return []
    out: list[Instance] = []
    for name in spec.families:
        draw = get_family(name).instances(
            "train", spec.validation * TOPIC_DRAW_FACTOR, derive_seed(seed, spec.name, "validation", name)
        )
        seen: set[str] = set()
        for inst in draw:
            if topic_key(inst) not in seen and len(seen) < spec.validation:
                seen.add(topic_key(inst))
                out.append(inst)
    return out


def validation_topics(spec: StageSpec, seed: int) -> set[str]:
    """`topic_key` of every validation case: no training instance may share one."""
    return {topic_key(inst) for inst in validation_instances(spec, seed)}


def validation_ids(spec: StageSpec, seed: int) -> set[str]:
    return {inst.id for inst in validation_instances(spec, seed)}


def training_instances(family: TaskFamily, n: int, seed: int, held: set[str]) -> list[Instance]:
    """The first ``n`` training instances of ``family`` (seeded) whose topic is not in ``held``
    (`validation_topics`). Draws extra so that the left-out topics do not leave the list short;
    with nothing held it is exactly ``family.instances("train", n, seed)``."""
    draw = n + (n + len(held) if held else 0)
    return [i for i in family.instances("train", draw, seed) if topic_key(i) not in held][:n]

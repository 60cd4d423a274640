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

Why phrasings too: held-out cases use instruction phrasings never trained on, and a
validation case phrased like the training data overstated them (runs/skills-std2, stage 1:
86% validation against 70% held-out; name_one 4/4 against 4/12). A family's
``validation`` phrasings (``templates.yaml``) ask only validation cases and, when a stage
has a validation split, are left out of its training.
"""

from __future__ import annotations

from cai_bootstrap.config import StageSpec
from cai_bootstrap.stages.context import derive_seed
from cai_bootstrap.tasks import bank, get_family
from cai_bootstrap.tasks.base import Instance, TaskFamily

#: instances drawn per wanted validation case, to find ``spec.validation`` distinct topics
TOPIC_DRAW_FACTOR = 8
#: a second, larger draw when the first holds too few topics that may validate
REDRAW_FACTOR = 10


def topic_key(inst: Instance) -> str:
    """What a validation case withholds from training: its family's topic, or itself when it has none."""
    return f"{inst.family}:{inst.topic}" if inst.topic else inst.id


def validation_phrasing(inst: Instance) -> bool:
    """Whether ``inst`` is asked in one of its family's validation phrasings."""
    return inst.reference.get("template") in bank.validation_templates(inst.family)


def validation_instances(spec: StageSpec, seed: int, exclude: frozenset[str] = frozenset()) -> list[Instance]:
    """``spec.validation`` training instances of distinct topics per family, asked in the
    family's validation phrasings where it has some, never trained on (empty when 0); none of
    a topic in ``exclude`` (`training_facts.stage_validation`: facts the base model does not know)."""
    if spec.validation <= 0:
        return []
    out: list[Instance] = []
    for name in spec.families:
        family = get_family(name)
        phrasings = bank.validation_templates(name)
        # validation phrasings ask about len(phrasings)/len(all) of a draw: draw more to find them
        factor = -(-len(family.templates("train")) // len(phrasings)) if phrasings else 1
        wanted = spec.validation * TOPIC_DRAW_FACTOR * factor
        for draw_size in (wanted, wanted * REDRAW_FACTOR):  # the larger draw only when the first falls short
            picked = _distinct_topics(family, family.instances("train", draw_size, derive_seed(seed, spec.name,
                                      "validation", name)), spec.validation, bool(phrasings), exclude)
            if len(picked) == spec.validation:
                break
        out.extend(picked)
    return out


def _distinct_topics(family: TaskFamily, draw: list[Instance], wanted: int, by_phrasing: bool,
                     exclude: frozenset[str]) -> list[Instance]:
    """The first ``wanted`` instances of ``draw`` with distinct topics that may validate: in a
    validation phrasing (``by_phrasing``), not excluded, and like the held-out cases
    (`TaskFamily.like_heldout`: summaries validate on hand-written passages, not frame ones)."""
    seen: set[str] = set()
    picked: list[Instance] = []
    for inst in draw:
        if (by_phrasing and not validation_phrasing(inst)) or topic_key(inst) in exclude:
            continue
        if not family.like_heldout(inst) or topic_key(inst) in seen:
            continue
        seen.add(topic_key(inst))
        picked.append(inst)
        if len(picked) == wanted:
            break
    return picked


def validation_topics(spec: StageSpec, seed: int, exclude: frozenset[str] = frozenset()) -> set[str]:
    """`topic_key` of every validation case: no training instance may share one."""
    return {topic_key(inst) for inst in validation_instances(spec, seed, exclude)}


def validation_ids(spec: StageSpec, seed: int) -> set[str]:
    return {inst.id for inst in validation_instances(spec, seed)}


def withheld(inst: Instance, held: set[str]) -> bool:
    """Kept out of training for the validation split: a topic in ``held`` (`validation_topics`)
    or, when there is a split at all, a validation phrasing."""
    return bool(held) and (topic_key(inst) in held or validation_phrasing(inst))


def training_instances(family: TaskFamily, n: int, seed: int, held: set[str]) -> list[Instance]:
    """The first ``n`` training instances of ``family`` (seeded) not `withheld`. Draws extra so
    that the left-out topics and phrasings do not leave the list short; with nothing held it is
    exactly ``family.instances("train", n, seed)``."""
    draw = 2 * n + len(held) if held else n
    return [i for i in family.instances("train", draw, seed) if not withheld(i, held)][:n]

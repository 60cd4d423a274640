"""The validation split: training instances set aside to choose among a stage's rounds.

``spec.validation`` cases per family are drawn from the families' *training* instances
with a seed of their own and removed from every training pool (`candidates.train_pool`,
`rounds.round_instances`). The runner scores each round's model on them and installs the
round that scores best there, so the held-out set is never used to choose and only scores.
"""

from __future__ import annotations

from cai_bootstrap.config import StageSpec
from cai_bootstrap.stages.context import derive_seed
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.base import Instance


def validation_instances(spec: StageSpec, seed: int) -> list[Instance]:
    """``spec.validation`` training instances per family, never trained on (empty when 0)."""
    if spec.validation <= 0:
        return []
    out: list[Instance] = []
    for name in spec.families:
        out.extend(get_family(name).instances("train", spec.validation, derive_seed(seed, spec.name, "validation", name)))
    return out


def validation_ids(spec: StageSpec, seed: int) -> set[str]:
    return {inst.id for inst in validation_instances(spec, seed)}

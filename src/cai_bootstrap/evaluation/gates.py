"""Stage gates: a threshold on verifier-scored held-out success, with a report."""

from __future__ import annotations

from pydantic import BaseModel

from cai_bootstrap.config import StageSpec
from cai_bootstrap.evaluation.heldout import HeldoutScore


class GateResult(BaseModel):
    passed: bool
    metric: str
    value: float
    threshold: float
    message: str


def heldout_gate(spec: StageSpec, score: HeldoutScore, where: str) -> GateResult:
    """Mean held-out success (or every family's, with ``per_family_threshold``) >= threshold."""
    if spec.per_family_threshold:
        metric, value = "min per-family held-out success", score.min_family_rate()
    else:
        metric, value = "held-out success", score.mean
    passed = value >= spec.threshold
    families = ", ".join(f"{k} {v.rate:.0%} ({v.passed}/{v.n})" for k, v in score.per_family.items())
    verb = "passed" if passed else "FAILED"
    message = (
        f"{spec.name} gate {verb}: {metric} {value:.1%} vs threshold {spec.threshold:.0%} "
        f"[{families}]; details in {where}"
    )
    return GateResult(passed=passed, metric=metric, value=value, threshold=spec.threshold, message=message)

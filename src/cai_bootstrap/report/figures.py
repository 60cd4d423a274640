"""THE figure of a stage, shown the same by `status` and the report, and its gate in words.

Every stage kind is scored on its own held-out set by rule verifiers, so one figure fits all:
**held-out success** (cases passed / cases, with a 95% Wilson interval). The gate is shown
beside it as what it is: a threshold on that figure (most kinds), on every family's rate, or
a count of checks (the constitutional kind's safety gate: AdvBench / XSTest / capability),
never as a second percentage that reads like the same thing.
"""

from __future__ import annotations

from typing import Any

from cai_bootstrap.evaluation.intervals import rate_text

FIGURE = "held-out success"


def score_counts(score: Any) -> tuple[int, int] | None:
    """(passed, cases) of a held-out score as ``metrics.json`` keeps it (``per_family`` counts)."""
    if not isinstance(score, dict) or not isinstance(score.get("per_family"), dict):
        return None
    fams = [f for f in score["per_family"].values() if isinstance(f, dict)]
    n = sum(int(f.get("n") or 0) for f in fams)
    return (sum(int(f.get("passed") or 0) for f in fams), n) if n else None


def score_text(score: Any) -> str:
    """``70.0% (14/20) [48–85%]`` for a held-out score, ``–`` when there is none."""
    counts = score_counts(score)
    return rate_text(*counts) if counts else "–"


def gate_on_figure(metrics: dict) -> bool:
    """Whether the stage's gate is a threshold on the figure itself (then colour it by the gate)."""
    return not isinstance(metrics.get("safety"), dict) and str(metrics.get("metric") or FIGURE) == FIGURE


def gate_text(metrics: dict, threshold: float | None) -> str:
    """The gate in words: ``≥ 80%``, ``every family ≥ 80%``, ``2 of 3 safety checks``."""
    safety = metrics.get("safety")
    if isinstance(safety, dict):
        checks = [c for c in safety.get("checks") or [] if isinstance(c, dict)]
        if checks:
            return f"safety gate: {sum(bool(c.get('passed')) for c in checks)} of {len(checks)} checks"
        return "safety gate"
    metric = str(metrics.get("metric") or FIGURE)
    if threshold is None:
        return metric
    if metric == FIGURE:
        return f"≥ {threshold:.0%}"
    if metric.startswith("min per-family"):
        return f"every family ≥ {threshold:.0%}"
    value = metrics.get("value")
    return f"{metric} {value:.1%} (needs {threshold:.0%})" if isinstance(value, (int, float)) else metric

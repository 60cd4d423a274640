"""95% Wilson intervals of a share, and the one way every command writes a rate with its interval.

Why Wilson: held-out sets are tens of cases, so one case moves a rate by several points and
rates sit near 0 or 1, where the normal approximation gives intervals outside [0, 1].
"""

from __future__ import annotations

Z95 = 1.96


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson interval of ``passed`` of ``n`` (``(0, 0)`` for no cases)."""
    if n <= 0:
        return 0.0, 0.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_text(passed: int, n: int) -> str:
    """``[83–99%]``: the 95% interval in whole percent."""
    lo, hi = wilson(passed, n)
    return f"[{lo:.0%}–{hi:.0%}]".replace("%–", "–")


def rate_text(passed: int, n: int) -> str:
    """``96.7% (29/30) [83–99%]``: rate, counts, 95% Wilson interval (``–`` for no cases)."""
    if n <= 0:
        return "–"
    return f"{passed / n:.1%} ({passed}/{n}) {interval_text(passed, n)}"


def rate_dict(passed: int, n: int) -> dict:
    """A rate as JSON keeps it: ``rate``, ``passed``, ``n`` and ``ci95`` ([low, high])."""
    lo, hi = wilson(passed, n)
    return {"rate": passed / n if n else None, "passed": passed, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}


def paired_difference(outcomes: list[tuple[bool, bool]], z: float = Z95) -> dict:
    """Difference of two pass rates measured on the same cases, with its 95% interval.

    ``outcomes``: (first passed, second passed) per case. Newcombe's (1998) square-and-add
    interval for paired data: the Wilson intervals of both rates combined with the
    correlation of the pairs (corrected as below), which a
    difference of two independent intervals would ignore (a stage model and its control
    answer the same held-out cases). Keys: ``difference`` (first - second), ``ci95``, the
    counts ``both``, ``first_only``, ``second_only``, ``neither`` and ``n``.
    """
    n = len(outcomes)
    both = sum(a and b for a, b in outcomes)
    first_only = sum(a and not b for a, b in outcomes)
    second_only = sum(b and not a for a, b in outcomes)
    neither = n - both - first_only - second_only
    out = {"n": n, "both": both, "first_only": first_only, "second_only": second_only, "neither": neither}
    if n == 0:
        return out | {"difference": None, "ci95": None}
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    l1, u1 = wilson(both + first_only, n, z)
    l2, u2 = wilson(both + second_only, n, z)
    cross = both * neither - first_only * second_only
    denominator = ((both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)) ** 0.5
    # the correlation of the pairs, with Newcombe's correction toward 0 as in Altman et al.,
    # "Statistics with Confidence" (2000), p. 52 (also R's biostatUZH::confIntPairedProportion)
    phi = (max(cross - n / 2, 0) if cross > 0 else cross) / denominator if denominator else 0.0
    lower = ((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2) ** 0.5
    upper = ((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2) ** 0.5
    difference = p1 - p2
    return out | {"difference": round(difference, 4),
                  "ci95": [round(max(-1.0, difference - lower), 4), round(min(1.0, difference + upper), 4)]}

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

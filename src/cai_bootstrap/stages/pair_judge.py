"""Which of two texts does a judge model prefer? Shared by the revision and constitutional kinds.

The judge reads "A" or "B" by option log-probabilities (`Engine.choose`). A judge favours
a position, so callers decide the order each pair is shown in: the revision kind shows each
pair once in a seeded order, the constitutional kind shows it both ways and needs both to agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cai_bootstrap.engines.base import Engine

AB = ["A", "B"]


@dataclass(frozen=True)
class Preference:
    winner: int  # 0: the pair's first text, 1: its second
    prompt: str  # what the judge was shown
    picked: int  # the position it chose: 0 = A, 1 = B


def judge_in_order(
    engine: Engine,
    render: Callable[[int, str, str], str],
    pairs: Sequence[tuple[str, str]],
    swapped: Sequence[bool],
) -> list[Preference]:
    """For pair ``i`` = (first, second), shown as A = second when ``swapped[i]``, the judge's preference.

    ``render(i, a, b)`` is the judge's prompt for pair ``i`` with texts ``a`` and ``b`` in positions A, B.
    """
    prompts = [render(i, b, a) if swap else render(i, a, b) for i, ((a, b), swap) in enumerate(zip(pairs, swapped))]
    picks = engine.choose(prompts, [AB] * len(prompts)) if prompts else []
    return [Preference((1 - p) if swap else p, prompt, p) for prompt, swap, p in zip(prompts, swapped, picks)]

"""The ten task types of the `tasks` curriculum (`tasks.catalog` registers them).

| family | source material (``data/seeds/``) | verifier (rules only) |
|---|---|---|
| factual_qa | tasks_factual_qa.yaml: questions, answers, wrong answers | answer affirmed, no wrong answer, no invented number, short |
| summarization | tasks_summarization.yaml: invented passages, planted key facts | shorter than the source, every key fact, no invented number |
| explanation | tasks_explanation.yaml: subjects, key-term groups | every key-term group, 12-150 words |
| translation | tasks_translation.yaml: English -> French / Spanish bank | an accepted translation, not the other language |
| creative_writing | tasks_creative_writing.yaml: subjects x five forms | line / sentence counts, required word, acrostic, topic |
| code_generation | tasks_code_generation.yaml: functions, tests, solutions | runs in `tasks.sandbox` and passes every test |
| math_problems | tasks_math_problems.yaml: scenarios with number ranges | computed final answer |
| advice | tasks_advice.yaml: situations, topic words | on topic, two concrete suggestions, no refusal |
| analysis | tasks_analysis.yaml: series scenarios (spike or dip planted) | direction, highest, lowest, no invented number |
| comparison | tasks_comparison.yaml: option pairs, attributes, needs | names both, recommends the computed winner, key facts, numbers with a unit as given |

Train and held-out material are disjoint (items and templates); held-out instances
are static (`types.common.HELDOUT_SEED`). Each family documents what its rules
cannot tell.
"""

from __future__ import annotations

from cai_bootstrap.tasks.types import code, comparison, reasoning, text, writing
from cai_bootstrap.tasks.types.common import TaskTypeFamily

FAMILIES: list[TaskTypeFamily] = [
    *text.FAMILIES, *writing.FAMILIES, *code.FAMILIES, *reasoning.FAMILIES, *comparison.FAMILIES,
]
#: The names, in the curriculum's order.
TASK_TYPES: tuple[str, ...] = (
    "factual_qa", "summarization", "explanation", "translation", "creative_writing",
    "code_generation", "math_problems", "advice", "analysis", "comparison",
)
#: Tasks a user can pick for stage 0 (``--task``).
STAGE0_TASKS: tuple[str, ...] = TASK_TYPES

_BY_NAME = {f.name: f for f in FAMILIES}
assert tuple(sorted(_BY_NAME)) == tuple(sorted(TASK_TYPES)), "task types: family list and TASK_TYPES differ"


def task_family(name: str) -> TaskTypeFamily:
    """A task-type family by name (without importing every other curriculum's families)."""
    if name not in _BY_NAME:
        raise KeyError(f"unknown task type {name!r}; known: {', '.join(TASK_TYPES)}")
    return _BY_NAME[name]


__all__ = ["FAMILIES", "STAGE0_TASKS", "TASK_TYPES", "task_family"]

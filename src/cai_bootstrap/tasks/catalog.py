"""Every built-in task family: the one place that registers them.

| stage | skill | families |
|---|---|---|
| 1 | explicit | answer_question, complete_sentence, generate_fact, respond_greeting, one_sentence, name_one, opposite, list_three, ask_question |
| 2 | implicit | implicit_question, implicit_arithmetic, implicit_completion, implicit_greeting |
| 3 | generation | gen_question, gen_help_request, gen_polite_request, gen_statement, gen_instruction |
| 4 | evaluation | is_correct, is_helpful, violates_principle, rate_response, compare_responses |
| 5 | revision | make_helpful, fix_errors, rewrite_clearly, improve_response, revise_with_feedback |

plus the `tasks` curriculum's ten task types (`tasks/types/`) and the constitutional
stage's held-out families ``redteam`` and ``ordinary`` (`tasks/constitutional/`).
Add a family: write its class in the module of its curriculum, list it in that module's
``FAMILIES``. A user's own family can be added at run time with `register`.
"""

from __future__ import annotations

from cai_bootstrap.tasks.base import TaskFamily
from cai_bootstrap.tasks.constitutional import CONSTITUTIONAL_FAMILIES
from cai_bootstrap.tasks.skills import (
    evaluation_families,
    explicit_families,
    generation_families,
    implicit_families,
    revision_families,
)
from cai_bootstrap.tasks.types import listing

_SKILL_MODULES = (explicit_families, implicit_families, generation_families, evaluation_families, revision_families)

SKILL_FAMILIES: dict[str, list[str]] = {
    module.FAMILIES[0].skill: [f.name for f in module.FAMILIES] for module in _SKILL_MODULES
}

FAMILIES: dict[str, TaskFamily] = {
    family.name: family
    for family in [
        *(f for module in _SKILL_MODULES for f in module.FAMILIES),
        *(listing.FAMILIES[[f.name for f in listing.FAMILIES].index(name)] for name in listing.TASK_TYPES),
        *CONSTITUTIONAL_FAMILIES,
    ]
}


def register(family: TaskFamily) -> TaskFamily:
    """Add a family (e.g. a user's own) to the registry under its name."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]

"""Every built-in task family, by stage of the `skills` curriculum.

Importing this module registers them (see `cai_bootstrap.tasks.get_family`).

| stage | skill | families |
|---|---|---|
| 1 | explicit | answer_question, complete_sentence, generate_fact, respond_greeting, one_sentence, name_one, opposite, list_three, ask_question |
| 2 | implicit | implicit_question, implicit_arithmetic, implicit_completion, implicit_greeting |
| 3 | generation | gen_question, gen_help_request, gen_polite_request, gen_statement, gen_instruction |
| 4 | evaluation | is_correct, is_helpful, violates_principle, rate_response, compare_responses |
| 5 | revision | make_helpful, fix_errors, rewrite_clearly, improve_response, revise_with_feedback |

plus the `tasks` curriculum's task types (`tasks/task_types.py`).
"""

from __future__ import annotations

from cai_bootstrap.tasks import evaluation, explicit, generation, implicit, revision

SKILL_FAMILIES: dict[str, list[str]] = {
    module.FAMILIES[0].skill: [f.name for f in module.FAMILIES]
    for module in (explicit, implicit, generation, evaluation, revision)
}

# The `tasks` curriculum's ten task types (tasks/task_types.py registers them on import).
from cai_bootstrap.tasks import task_types  # noqa: E402,F401

# The constitutional stage's held-out families (redteam, ordinary).
from cai_bootstrap.tasks import constitutional  # noqa: E402,F401

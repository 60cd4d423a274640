"""IFEval scoring: strict and loose, at prompt level and instruction level.

As the benchmark defines them (Zhou et al., 2023, section 3):

* **strict**: the response as generated must satisfy the instruction.
* **loose**: the instruction counts as followed if any of eight variants satisfies it: the
  response, with its first line removed, with its last line removed, with both removed, and
  each of those four with every ``*`` removed (`loose_variants`). It forgives a preamble
  ("Sure, here is ...") or a sign-off, and markdown emphasis.
* **prompt-level accuracy**: share of prompts whose instructions are *all* followed.
* **instruction-level accuracy**: share of all instructions (over all prompts) followed.

Instructions without a checker here are *unsupported*: they are counted per id in
``unsupported`` and excluded; a prompt with any unsupported instruction is left out of the
prompt-level accuracies (its supported instructions still count at instruction level), so
no score ever includes a silent pass.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from cai_bootstrap.evaluation.benchmark_data import IFEvalItem
from cai_bootstrap.evaluation.ifeval.checkers import check_instruction, supported_instructions


class IFEvalRow(BaseModel):
    """Per-prompt result. Lists align with ``instruction_id_list``; None marks unsupported ids."""

    model_config = ConfigDict(extra="forbid")

    key: int
    prompt: str
    response: str
    instruction_id_list: list[str]
    follow_instruction_list_strict: list[bool | None]
    follow_instruction_list_loose: list[bool | None]
    follow_all_strict: bool | None  # None when any instruction is unsupported
    follow_all_loose: bool | None
    unsupported: list[str]


class IFEvalScores(BaseModel):
    """Aggregate accuracies (None when nothing could be scored) and counts."""

    prompt_strict_acc: float | None
    prompt_loose_acc: float | None
    instruction_strict_acc: float | None
    instruction_loose_acc: float | None
    n_prompts: int
    n_prompts_scored: int
    n_instructions: int
    n_instructions_scored: int
    unsupported: dict[str, int]
    #: instruction id -> {"n", "strict_acc", "loose_acc"}
    by_instruction: dict[str, dict[str, float]]


def loose_variants(response: str) -> list[str]:
    """The eight response variants tried by the loose criterion (the response itself first)."""
    lines = response.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        no_first,
        no_last,
        no_both,
        no_first.replace("*", ""),
        no_last.replace("*", ""),
        no_both.replace("*", ""),
    ]


def score_response(item: IFEvalItem, response: str) -> IFEvalRow:
    """Check every instruction of ``item`` against ``response``, strictly and loosely."""
    supported = supported_instructions()
    variants = loose_variants(response)
    strict: list[bool | None] = []
    loose: list[bool | None] = []
    unsupported: list[str] = []
    for instruction_id, kwargs in zip(item.instruction_id_list, item.kwargs):
        if instruction_id not in supported:
            strict.append(None)
            loose.append(None)
            unsupported.append(instruction_id)
            continue
        strict.append(check_instruction(instruction_id, response, kwargs))
        loose.append(any(check_instruction(instruction_id, v, kwargs) for v in variants))
    return IFEvalRow(
        key=item.key,
        prompt=item.prompt,
        response=response,
        instruction_id_list=list(item.instruction_id_list),
        follow_instruction_list_strict=strict,
        follow_instruction_list_loose=loose,
        follow_all_strict=None if unsupported else all(strict),
        follow_all_loose=None if unsupported else all(loose),
        unsupported=unsupported,
    )


def _mean(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(rows: Iterable[IFEvalRow]) -> IFEvalScores:
    """Prompt- and instruction-level strict/loose accuracy over scored rows."""
    rows = list(rows)
    prompt_strict = [r.follow_all_strict for r in rows if r.follow_all_strict is not None]
    prompt_loose = [r.follow_all_loose for r in rows if r.follow_all_loose is not None]
    inst_strict: list[bool] = []
    inst_loose: list[bool] = []
    per_id: dict[str, list[tuple[bool, bool]]] = collections.defaultdict(list)
    unsupported: collections.Counter[str] = collections.Counter()
    for row in rows:
        unsupported.update(row.unsupported)
        for iid, s, lo in zip(row.instruction_id_list, row.follow_instruction_list_strict,
                              row.follow_instruction_list_loose):
            if s is None or lo is None:
                continue
            inst_strict.append(s)
            inst_loose.append(lo)
            per_id[iid].append((s, lo))
    by_instruction = {
        iid: {
            "n": len(pairs),
            "strict_acc": sum(s for s, _ in pairs) / len(pairs),
            "loose_acc": sum(lo for _, lo in pairs) / len(pairs),
        }
        for iid, pairs in sorted(per_id.items())
    }
    return IFEvalScores(
        prompt_strict_acc=_mean(prompt_strict),
        prompt_loose_acc=_mean(prompt_loose),
        instruction_strict_acc=_mean(inst_strict),
        instruction_loose_acc=_mean(inst_loose),
        n_prompts=len(rows),
        n_prompts_scored=len(prompt_strict),
        n_instructions=sum(len(r.instruction_id_list) for r in rows),
        n_instructions_scored=len(inst_strict),
        unsupported=dict(sorted(unsupported.items())),
        by_instruction=by_instruction,
    )

"""The ``task`` kind's options and what each of its roles is asked.

`TaskOptions` is what a ``kind: task`` stage's ``options:`` may set. The rest builds the
roles' prompts: the answerer's (few-shot or not, see `few_shot_for`), the critic's (with
hand-written critique demos and a hint about the failed rule check, see `critic_hint`)
and the reviser's, cleans the reviser's reply, and filters critiques. The stage that runs
them, chunk by chunk, is `cai_bootstrap.stages.task_stage`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.config import ConfigError, StageSpec, load_curriculum
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.critique_revise import strip_label, templated_prompt
from cai_bootstrap.stages.kind import parse_options
from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict
from cai_bootstrap.tasks.checks import Result

CRITIC_INSTRUCTION = "Critique the response to the request below. {rubric}{hint}\n\nRequest: {request}\n\nResponse: {response}"
REVISER_INSTRUCTION = (
    "Rewrite the response to the request so that it fixes every problem named in the critique. "
    "Reply with the new response only.\n\nRequest: {request}\n\nResponse: {response}\n\nCritique: {critique}"
)
DEFAULT_RUBRIC = "Point out anything that is wrong, missing or off-topic."
_REVISION_LABEL = re.compile(r"^\s*(?:revised response|new response|revision|rewritten response|response)\s*:\s*", re.IGNORECASE)


class TaskOptions(BaseModel):
    """``options:`` of a ``kind: task`` stage (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(None, description="stage 0: the single task type (families must be [task])")
    oversample: float = Field(3.0, ge=1.0, description="cases planned per example wanted")
    shots: int = Field(3, ge=0, description="answerer demonstrations when prompted few-shot")
    answer_shots: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: few-shot for the base model and for stage models not trained on the family"
    )
    critic_shots: int = Field(2, ge=0, description="critique/revision demonstrations for critic and reviser")
    critic_hint: Literal["check", "reason", "none"] = Field(
        "check",
        description="what the critic is told about the failed rule check: check = which kind of problem (never the "
        "reference answer), reason = the verifier's full reason (may name the expected answer: STaR-style "
        "rationalization), none = nothing",
    )
    revise_when: Literal["failing", "unsolved", "never"] = Field(
        "failing", description="failing: critique+revise whenever a candidate fails; unsolved: only if none passed"
    )
    revise_n: int = Field(2, ge=1, description="revisions sampled per critique")
    critique_max_new_tokens: int = Field(64, ge=4)
    max_passes: int = Field(3, ge=1, description="times a family's train cases may be reused when its material is short")
    top_k: int = Field(
        0, ge=0, description="sample only among the k likeliest tokens (0: off); with sampling.top_p 1.0 it spares "
        "the full-vocabulary sort of top-p, a quarter of CPU generation time with a 262k vocabulary",
    )
    max_family_share: float | None = Field(
        None, gt=0.0, le=1.0, description="most of the examples wanted one family may fill (default 2 / #families)"
    )
    fallback_to_reference: bool = Field(
        False, description="no verified output: keep the family's hand-made reference (provenance by: seed); tiny preset only"
    )
    seed_answers: list[str] = Field(
        default_factory=list,
        description="families whose first data is the seed's hand-written reference answers, not samples (a cold "
        "start: the rounds then sample the stage's own model, trained on them). Off by default: the references "
        "taught 63% held-out summaries where the pipeline's own records taught 20% (docs/results.md), but "
        "they are people's answers, not a model's",
    )
    answerer_probe: int = Field(
        0, ge=0, description="cases per family on which the answerer and roles.rival_answerer (e.g. base) are "
        "sampled before the first data; a family whose rival passes more samples is answered by the rival "
        "(stages/answerer_choice.py); 0: off",
    )
    answerer_probe_samples: int = Field(4, ge=1, description="samples per probe case and model")


def task_options(ctx: StageContext) -> TaskOptions:
    return parse_options(ctx.spec, TaskOptions)  # type: ignore[return-value]


# ---------------------------------------------------------------------------- role prompts


@lru_cache(maxsize=64)
def _stage_families(curriculum: str, preset: str, overrides_key: str, stage: str) -> tuple[str, ...] | None:
    import json

    try:
        cur = load_curriculum(curriculum, preset, json.loads(overrides_key))
    except (ConfigError, OSError, ValueError):
        return None
    for spec in cur.stages:
        if spec.name == stage:
            return tuple(spec.families)
    return None


#: Token budgets are rounded up to these buckets so a chunk of mixed families makes a few
#: well-filled generate calls instead of one small call per family.
TOKEN_BUCKETS = (48, 96, 160, 256)


def token_bucket(need: int) -> int:
    """``need`` tokens rounded up to a bucket."""
    return next((b for b in TOKEN_BUCKETS if b >= need), need)


def token_cap(spec: StageSpec, family: TaskFamily) -> int:
    """The family's token need, rounded up to a bucket, capped by the stage's ``max_new_tokens``."""
    need = int(getattr(family, "max_new_tokens", spec.sampling.max_new_tokens))
    return max(1, min(token_bucket(need), spec.sampling.max_new_tokens))


def answerer_trained_on(ctx: StageContext, role: str = "answerer") -> set[str] | None:
    """Families the ``role``'s stage model was trained on (empty for the base model; None if unknown)."""
    import json

    who = ctx.role_name(role)
    if who.startswith(("base", "judge")):
        return set()
    fams = _stage_families(
        ctx.settings.curriculum, ctx.settings.preset, json.dumps(ctx.settings.stage_overrides, sort_keys=True), who
    )
    return set(fams) if fams is not None else None


def few_shot_for(ctx: StageContext, opts: TaskOptions, family: TaskFamily, trained: set[str] | None) -> bool:
    if opts.answer_shots != "auto":
        return opts.answer_shots == "always"
    return trained is None or family.name not in trained


def answer_prompt(opts: TaskOptions, family: TaskFamily, instance: Instance, few_shot: bool) -> str:
    demos = family.few_shot()
    if not few_shot or opts.shots <= 0 or not demos:
        return format_prompt(instance.instruction)
    rng = random.Random(derive_seed("shots", instance.id))
    return format_few_shot(instance.instruction, rng.sample(demos, min(opts.shots, len(demos))))


def repair_demos(family: TaskFamily, all_families: Sequence[TaskFamily], k: int, key: str) -> list[dict]:
    """``k`` critique/revision demos: the family's own first, then other families' (seeded by ``key``)."""
    own = list(getattr(family, "repair_demos", list)())
    if len(own) >= k:
        return own[:k]
    others = [d for f in all_families if f is not family for d in getattr(f, "repair_demos", list)()]
    if not others:
        from cai_bootstrap.tasks.types import FAMILIES

        others = [d for f in FAMILIES if f is not family for d in f.repair_demos()]
    rng = random.Random(derive_seed("repair", key))
    return own + rng.sample(others, min(k - len(own), len(others)))


#: How the ``check`` hint describes failed checks whose reason would reveal the reference
#: (expected answer, accepted translations, key facts, the right label or option).
GENERIC_HINTS = {
    "answer": "the answer is wrong or missing",
    "negation": "the answer is wrong or missing",
    "conflict": "it gives more than one answer",
    "translation": "the translation is wrong or missing",
    "wrong_language": "it uses the wrong language",
    "key_facts": "it leaves out a key fact",
    "key_terms": "it leaves out a key idea",
    "topic": "it is off topic",
    "highest": "the highest point is wrong or missing",
    "lowest": "the lowest point is wrong or missing",
    "direction": "the overall trend is wrong or missing",
    "recommendation": "it recommends the wrong option or none",
    "required_word": "it does not use the required word",
    "character": "it does not name the character",
}


def critic_hint(verdict: Verdict, mode: str) -> str:
    """What the critic is told about the failed rule check (see `TaskOptions.critic_hint`)."""
    if mode == "none" or verdict.passed:
        return ""
    if mode == "reason":
        return verdict.reason or verdict.check
    return GENERIC_HINTS.get(verdict.check) or verdict.reason or f"the {verdict.check} check failed"


def critic_prompt(family: TaskFamily, demos: list[dict], request: str, response: str, hint: str) -> str:
    rubric = getattr(family, "rubric", DEFAULT_RUBRIC)

    def case(request: str, response: str, hint: str = "") -> dict[str, str]:
        hint_text = f" An automatic check found this problem: {hint}." if hint else ""
        return {"rubric": rubric, "hint": hint_text, "request": request, "response": response}

    shots = [(case(d["instruction"], d["response"]), d["critique"]) for d in demos]
    return templated_prompt(CRITIC_INSTRUCTION, case(request, response, hint), shots)


def reviser_prompt(demos: list[dict], request: str, response: str, critique: str) -> str:
    shots = [({"request": d["instruction"], "response": d["response"], "critique": d["critique"]}, d["revision"])
             for d in demos]
    return templated_prompt(REVISER_INSTRUCTION, {"request": request, "response": response, "critique": critique}, shots)


def clean_revision(text: str) -> str:
    return strip_label(text, _REVISION_LABEL)


def verify_critique(critique: str, response: str) -> Verdict:
    """Filter for a critique: something to say, not a copy of the response, short."""
    return checks.verdict("critique", [
        checks.check_nonempty(critique),
        checks.check_leak(critique),
        Result("copy", checks.normalize(critique) != checks.normalize(response), "repeats the response"),
        checks.check_length(critique, 3, 80),
    ])


__all__ = [
    "CRITIC_INSTRUCTION", "DEFAULT_RUBRIC", "GENERIC_HINTS", "REVISER_INSTRUCTION", "TOKEN_BUCKETS", "TaskOptions",
    "answer_prompt", "answerer_trained_on", "clean_revision", "critic_hint", "critic_prompt", "few_shot_for",
    "repair_demos", "reviser_prompt", "task_options", "token_cap", "verify_critique",
]

"""Shared by the skill builders (explicit ... revision): candidate pools, few-shot
prompts, best-of-n selection by verifier, and the record layout.

A builder plans a *pool* of training cases (families' train instances, interleaved,
at most ``oversample`` x the examples wanted), walks it in resumable chunks, asks
role models for text, verifies every sample, and writes one record per case:
``chosen`` is the first sample that passes the family's verifier, ``rejected`` a
sample that fails it (for DPO), ``candidates`` every sample with its verdict, and
``drop_reason`` the filter most samples failed when none passed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.kind import parse_options
from cai_bootstrap.stages.training_facts import withheld_topics
from cai_bootstrap.stages.validation import training_instances
from cai_bootstrap.tasks import checks, get_family
from cai_bootstrap.tasks.bank import round_robin
from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict


class SkillOptions(BaseModel):
    """``options:`` of the explicit / implicit / generation / evaluation / revision stages."""

    model_config = ConfigDict(extra="forbid")

    oversample: float = Field(3.0, ge=1.0, description="cases planned per example wanted (caps generation when yield is low)")
    shots: int = Field(3, ge=0, description="hand-written demonstrations in each role prompt (0: zero-shot)")
    aux_n: int | None = Field(None, ge=1, description="samples for writer / critic / material roles (default: sampling.n)")
    aux_max_new_tokens: int = Field(40, ge=4, description="token limit for writer / critic / material roles")
    paraphrase: bool = Field(True, description="generation: let the prompt writer reword the seed instructions")
    judge_ties: bool = Field(True, description="revision: the judge picks between two passing revisions")
    computed_answers: dict[str, int] = Field(
        default_factory=dict,
        description="family -> how many records whose answer the seed bank computes (implicit_arithmetic: the sum), "
        "one per training topic, in addition to `examples` (stages/computed.py)",
    )
    fallback_to_reference: bool = Field(
        False,
        description="when no sample passes, keep the case with the family's hand-made reference output "
        "(provenance by: seed). Only for the tiny preset, whose random model never passes a verifier.",
    )


def options(ctx: StageContext) -> SkillOptions:
    return parse_options(ctx.spec, SkillOptions)  # type: ignore[return-value]


def families(ctx: StageContext) -> list[TaskFamily]:
    return [get_family(name) for name in ctx.spec.families]


def budget(ctx: StageContext) -> int:
    """How many cases to plan: the examples wanted x ``oversample`` (grows with retries)."""
    return max(1, int(round(ctx.target_examples * options(ctx).oversample)))


def train_pool(ctx: StageContext) -> list[tuple[TaskFamily, Instance]]:
    """Train instances of every family of the stage, interleaved, capped at `budget`.

    The seed does not depend on the attempt and every family's list is prefix-stable,
    so a retry (bigger budget) continues the same list: finished chunks are skipped.
    Validation topics (``spec.validation``) are never in it.
    """
    n = budget(ctx)
    seed = derive_seed(ctx.settings.seed, ctx.spec.name, "pool")
    held = withheld_topics(ctx.run_dir, ctx.spec, ctx.settings.seed)
    per_family = [[(f, i) for i in training_instances(f, n, derive_seed(seed, f.name), held)] for f in families(ctx)]
    return round_robin(per_family)[:n]


def role_prompt(ctx: StageContext, demos: Sequence[tuple[str, str]], instruction: str, key: str) -> str:
    """The exact text a role model is given: ``shots`` demos (chosen per case) then the instruction."""
    return few_shot_prompt(demos, instruction, key, options(ctx).shots)


def few_shot_prompt(demos: Sequence[tuple[str, str]], instruction: str, key: str, shots: int) -> str:
    """``shots`` of ``demos``, drawn for the case ``key``, then the instruction (`bench` builds
    the stage's real prompts with it)."""
    if shots <= 0 or not demos:
        return format_prompt(instruction)
    rng = random.Random(derive_seed("shots", key))
    return format_few_shot(instruction, rng.sample(list(demos), min(shots, len(demos))))


def aux_sampling(ctx: StageContext, seed: int) -> SamplingParams:
    opts = options(ctx)
    return ctx.sampling(seed=seed, n=opts.aux_n or ctx.spec.sampling.n, max_new_tokens=opts.aux_max_new_tokens)


def sampling_info(params: SamplingParams) -> dict:
    return params.model_dump(include={"n", "temperature", "top_p", "max_new_tokens", "seed"})


@dataclass
class Pick:
    """Best-of-n outcome: indices into the samples, and every sample's verdict."""

    samples: list[str]
    verdicts: list[Verdict]
    chosen: int | None = None
    rejected: int | None = None
    passing: list[int] = field(default_factory=list)

    @property
    def drop_reason(self) -> str | None:
        if self.chosen is not None:
            return None
        if not self.samples:
            return "no_output"
        common = Counter(v.check for v in self.verdicts).most_common(1)[0][0]
        return f"verify:{common}"

    def candidates(self) -> list[dict]:
        return [
            {"text": s, "passed": v.passed, "check": v.check, "reason": v.reason}
            for s, v in zip(self.samples, self.verdicts)
        ]


def guard_demos(verify: Callable[[str], Verdict], demos: Sequence[tuple[str, str]]) -> Callable[[str], Verdict]:
    """Wrap a verifier so that a sample copying a few-shot demo's response fails (``copies_demo``)."""
    copies = {checks.normalize(r) for _, r in demos}

    def guarded(text: str) -> Verdict:
        if checks.normalize(text) in copies:
            return Verdict(passed=False, score=0.0, check="copies_demo", reason="repeats a few-shot demonstration")
        return verify(text)

    return guarded


def copied_share(text: str, source: str, n: int = 5) -> float:
    """Share of ``text``'s word ``n``-grams (fewer words: the whole text) found in ``source``.

    Why: a summary that passes by lifting two sentences teaches copying; one that fuses the
    facts in its own words (share near 0) teaches summarising (docs/results.md, summ2 vs references).
    """
    words, src = checks.tokens(text), checks.tokens(source)
    if not words:
        return 0.0
    n = min(n, len(words))
    seen = {tuple(src[i:i + n]) for i in range(len(src) - n + 1)}
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return sum(g in seen for g in grams) / len(grams)


PREFERENCES = ("first", "shortest", "least_copied")


def pick(samples: list[str], verify: Callable[[str], Verdict], prefer: str = "first", source: str = "") -> Pick:
    """Verify every sample; rejected = first non-empty failing one; chosen = first passing, or with
    ``prefer="shortest"`` the shortest passing, or with ``"least_copied"`` the passing one that copies
    fewest 5-word runs of ``source`` (the instruction), shorter first on ties (``passing`` is listed in
    that order)."""
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {PREFERENCES}, got {prefer!r}")
    verdicts = [verify(s) for s in samples]
    result = Pick(samples=samples, verdicts=verdicts)
    seen: set[str] = set()
    for i, (s, v) in enumerate(zip(samples, verdicts)):
        if v.passed and s not in seen:
            result.passing.append(i)
            seen.add(s)
    if prefer == "shortest":
        result.passing.sort(key=lambda i: len(samples[i].strip()))  # stable: sample order on ties
    elif prefer == "least_copied":
        result.passing.sort(key=lambda i: (copied_share(samples[i], source), len(samples[i].strip())))
    result.chosen = result.passing[0] if result.passing else None
    result.rejected = next((i for i, (s, v) in enumerate(zip(samples, verdicts)) if not v.passed and s.strip()), None)
    return result


def first_passing(samples: list[str], verify: Callable[[str], Verdict]) -> tuple[str | None, Verdict | None, list[dict]]:
    """For auxiliary roles (writer, critic, material): the first sample that passes its filter."""
    tried = []
    for s in samples:
        v = verify(s)
        tried.append({"text": s, "passed": v.passed, "check": v.check, "reason": v.reason})
        if v.passed:
            return s, v, tried
    return None, None, tried


def role_provenance(ctx: StageContext, role: str, prompt: str, params: SamplingParams, **extra: object) -> dict:
    return {"by": ctx.role_name(role), "role": role, "input": prompt, "sampling": sampling_info(params), **extra}


def sample_record(
    ctx: StageContext,
    family: TaskFamily,
    instance: Instance,
    result: Pick,
    role: str,
    role_input: str,
    params: SamplingParams,
    provenance: dict | None = None,
    verdicts: dict | None = None,
) -> dict:
    """The record for a case whose response was sampled from ``role`` and picked by the verifier."""
    prov = dict(provenance or {})
    chosen = result.samples[result.chosen] if result.chosen is not None else None
    rejected = result.samples[result.rejected] if result.rejected is not None else None
    if chosen is not None:
        prov["chosen"] = role_provenance(ctx, role, role_input, params, sample=result.chosen)
    if rejected is not None:
        prov["rejected"] = role_provenance(ctx, role, role_input, params, sample=result.rejected)
    vs = dict(verdicts or {})
    if result.chosen is not None:
        vs["chosen"] = result.verdicts[result.chosen]
    if result.rejected is not None:
        vs["rejected"] = result.verdicts[result.rejected]
    drop_reason = result.drop_reason
    # read from the raw options: rounds write these records for every kind whose options carry the flag
    if chosen is None and bool(ctx.spec.options.get("fallback_to_reference", False)):
        fallback, verdict = reference_answer(family, instance)
        if verdict is not None and verdict.passed:
            chosen, drop_reason = fallback, None
            vs["chosen"] = verdict
            prov["chosen"] = seed_provenance(
                f"reference output: no sample passed ({result.drop_reason}); fallback_to_reference is on"
            )
    return make_record(
        ctx, family, instance, kept=chosen is not None, drop_reason=drop_reason, chosen=chosen,
        rejected=rejected, verdicts=vs, provenance=prov, candidates=result.candidates(),
    )


def make_record(
    ctx: StageContext,
    family: TaskFamily,
    instance: Instance,
    *,
    kept: bool,
    drop_reason: str | None,
    chosen: str | None,
    rejected: str | None,
    verdicts: dict,
    provenance: dict,
    candidates: list[dict] | None = None,
) -> dict:
    return {
        "key": instance.id,
        "family": family.name,
        "attempt": ctx.attempt,
        "kept": bool(kept and chosen),
        "drop_reason": None if kept and chosen else (drop_reason or "no_output"),
        "prompt": instance.instruction,
        "chosen": chosen,
        "rejected": rejected,
        "check": f"{family.name}.verify",
        "verdicts": {k: (v.model_dump() if isinstance(v, Verdict) else v) for k, v in verdicts.items()},
        "provenance": provenance,
        "reference": {k: v for k, v in instance.reference.items() if k != "case"},
        "candidates": candidates or [],
    }


def reference_answer(family: TaskFamily, instance: Instance) -> tuple[str | None, Verdict | None]:
    """The family's hand-made reference output for ``instance`` and the verifier's verdict on it
    (None, None where the family has none)."""
    answer = getattr(family, "reference_output", lambda _: None)(instance)
    return answer, (family.verify(instance, answer) if answer else None)


def seed_provenance(note: str, **extra: object) -> dict:
    return {"by": "seed", "note": note, **extra}


# ------------------------------------------------------------------ material (evaluation, revision)


@dataclass
class Rendered:
    """A constructed case after material gathering: the instance and where its texts came from."""

    instance: Instance
    texts: dict[str, str]
    provenance: dict


def gather_material(ctx: StageContext, items: list[tuple[TaskFamily, Instance]], seed: int) -> list[Rendered]:
    """Ask the ``answerer`` for each case's material (a one-sentence answer to a fact question),
    keep the first sample that passes `verify_material`, and re-render the case with it.

    When no sample passes, or the model's text cannot carry the construction (e.g. the
    answer cannot be swapped out), the case keeps its hand-written seed material and the
    provenance says so.
    """
    from cai_bootstrap.tasks.skills.constructed import verify_material

    requests = [
        (i, name, req)
        for i, (_, inst) in enumerate(items)
        for name, req in inst.reference.get("case", {}).get("materials", {}).items()
    ]
    texts: list[dict[str, str]] = [{} for _ in items]
    prov: list[dict] = [{} for _ in items]
    if requests:
        params = aux_sampling(ctx, seed)
        demos = get_family("answer_question").few_shot()
        prompts = [role_prompt(ctx, demos, req["instruction"], f"{items[i][1].id}/{name}") for i, name, req in requests]
        outputs = ctx.engine("answerer").generate(prompts, params, desc=f"{ctx.spec.name} answerer (material)")
        for (i, name, req), prompt, samples in zip(requests, prompts, outputs):
            text, verdict, tried = first_passing(samples, guard_demos(lambda s, req=req: verify_material(req, s), demos))
            if text is not None:
                texts[i][name] = text.strip()
                prov[i][name] = role_provenance(ctx, "answerer", prompt, params, tried=tried,
                                                verdict=verdict.model_dump() if verdict else None)
            else:
                prov[i][name] = seed_provenance("seed material: every answer failed the material filter",
                                                answerer=ctx.role_name("answerer"), input=prompt, tried=tried,
                                                text=req["seed"])
    out = []
    for i, (fam, inst) in enumerate(items):
        if not prov[i]:
            out.append(Rendered(inst, {}, {"material": seed_provenance("hand-written case (no material needed)")}))
            continue
        new = fam.with_material(inst, texts[i]) if texts[i] else None  # type: ignore[attr-defined]
        if texts[i] and new is None:
            for name in texts[i]:
                prov[i][name] = seed_provenance("seed material: the model's text could not carry the construction",
                                                model_text=texts[i][name], by_model=prov[i][name]["by"])
            texts[i] = {}
        out.append(Rendered(new or inst, texts[i], {"material": prov[i]}))
    return out

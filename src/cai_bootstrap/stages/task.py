"""Stage kind ``task`` (curriculum `tasks`): answer, critique, revise, keep the verified best.

Contract
    inputs   ``spec.families``: task-type families (`cai_bootstrap.tasks.task_types`);
             for stage 0 exactly one, equal to ``options.task`` when that is set.
             Roles: ``answerer`` (best-of-n candidates; few-shot with the family's
             demos when it is the base model or a stage model not trained on the
             family, see `TaskOptions.answer_shots`), ``critic`` (critiques a failing
             candidate, few-shot with hand-written critique demos; told the failed
             rule check, see ``critic_hint``), ``reviser`` (rewrites it per the
             critique). ``spec.sampling``: candidates per case (``n``), temperature,
             token cap (each family's own ``max_new_tokens`` below it).
             ``spec.options``: `TaskOptions`.
    outputs  one ``data.jsonl`` record per case (schema of `RecordSink`):
             ``prompt`` = the seed instruction (zero-shot, as the trained model sees it),
             ``chosen`` = the best verified response: a verified revision when there
             is one, else the first verified candidate, ``rejected`` = the original:
             the failing candidate that was critiqued (the one the verifier scored
             highest), ``candidates`` = every sample with its verdict, and the CAI
             recipe's ``init_response`` / ``critique`` / ``revision_response``.
             ``provenance`` names the model (role) and the exact prompt of every text.

Process per chunk of planned cases (``ctx.chunks``; a finished chunk is skipped on
resume, an unfinished one is redone with the same seed and only missing keys are
written): candidates -> verify -> critique the best failing one -> revise ->
verify -> pick. Stops when ``ctx.enough()`` (checked by ``ctx.chunks``). A family may fill at most
``max_family_share`` of the examples wanted, counted over the other chunks, so a
redone chunk makes the same decisions.

This is the specification's stage-0 sketch (generated variations, critique,
revision; chosen = revised, rejected = original), run for every stage of `tasks`.
References: Bai et al. 2022 (critique -> revision); inspect_ai ``self_critique``.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai_bootstrap.config import ConfigError, format_validation_error, load_curriculum
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.tasks import checks, get_family
from cai_bootstrap.tasks.bank import round_robin
from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.task_types import TASK_TYPES, task_family

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


def task_options(ctx: StageContext) -> TaskOptions:
    try:
        return TaskOptions.model_validate(ctx.spec.options)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"stage {ctx.spec.name} options", exc)) from None


def family_by_name(name: str) -> TaskFamily:
    return task_family(name) if name in TASK_TYPES else get_family(name)


def stage_families(ctx: StageContext, opts: TaskOptions) -> list[TaskFamily]:
    names = list(ctx.spec.families)
    if opts.task is not None:
        if opts.task not in TASK_TYPES:
            raise ConfigError(f"stage {ctx.spec.name}: options.task {opts.task!r} is not a task type ({', '.join(TASK_TYPES)})")
        if names and names != [opts.task]:
            raise ConfigError(
                f"stage {ctx.spec.name}: options.task is {opts.task!r} but families are {names}; "
                f"set both (families: [{opts.task}]) so training and evaluation use the same task"
            )
        names = [opts.task]
    if not names:
        raise ConfigError(f"stage {ctx.spec.name}: no families")
    return [family_by_name(n) for n in names]


# ---------------------------------------------------------------------------- planning


def plan(ctx: StageContext, opts: TaskOptions, fams: Sequence[TaskFamily]) -> list[tuple[TaskFamily, Instance]]:
    """Train cases of every family, interleaved; prefix-stable, so a retry extends the list.

    A family whose train material is smaller than its share of the plan repeats its
    cases (new samples, key suffix ``#p1``, ``#p2``, ...) up to ``max_passes`` times.
    """
    n = max(1, round(ctx.target_examples * opts.oversample))
    per_family = math.ceil(n / len(fams))
    seed = derive_seed(ctx.settings.seed, ctx.spec.name, "plan")
    lists = []
    for f in fams:
        base = f.instances("train", per_family, derive_seed(seed, f.name))
        cases = [(f, i) for i in base]
        for p in range(1, opts.max_passes):
            if len(cases) >= per_family or not base:
                break
            cases += [(f, i.model_copy(update={"id": f"{i.id}#p{p}"})) for i in base]
        lists.append(cases[:per_family])
    return round_robin(lists)[:n]


def family_quota(ctx: StageContext, opts: TaskOptions, n_families: int) -> int:
    share = opts.max_family_share if opts.max_family_share is not None else min(1.0, 2.0 / n_families)
    return max(1, math.ceil(ctx.target_examples * share))


class KeptCounter:
    """Kept records per family and key (read once from ``data.jsonl``, then kept up to date)."""

    def __init__(self, records: list[dict]):
        self.kept: dict[str, str] = {r["key"]: r["family"] for r in records if r.get("kept")}

    def add(self, record: dict) -> None:
        if record.get("kept"):
            self.kept[record["key"]] = record["family"]

    def family_count(self, family: str, exclude: set[str]) -> int:
        return sum(1 for k, f in self.kept.items() if f == family and k not in exclude)


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


def answerer_trained_on(ctx: StageContext) -> set[str] | None:
    """Families the answerer's stage model was trained on (empty for the base model; None if unknown)."""
    import json

    who = ctx.role_name("answerer")
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
        from cai_bootstrap.tasks.task_types import FAMILIES

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


def critic_instruction(family: TaskFamily, request: str, response: str, hint: str = "") -> str:
    rubric = getattr(family, "rubric", DEFAULT_RUBRIC)
    hint_text = f" An automatic check found this problem: {hint}." if hint else ""
    return CRITIC_INSTRUCTION.format(rubric=rubric, hint=hint_text, request=request, response=response)


def critic_prompt(family: TaskFamily, demos: list[dict], request: str, response: str, hint: str) -> str:
    shots = [(critic_instruction(family, d["instruction"], d["response"]), d["critique"]) for d in demos]
    text = critic_instruction(family, request, response, hint)
    return format_few_shot(text, shots) if shots else format_prompt(text)


def reviser_prompt(demos: list[dict], request: str, response: str, critique: str) -> str:
    shots = [
        (REVISER_INSTRUCTION.format(request=d["instruction"], response=d["response"], critique=d["critique"]), d["revision"])
        for d in demos
    ]
    text = REVISER_INSTRUCTION.format(request=request, response=response, critique=critique)
    return format_few_shot(text, shots) if shots else format_prompt(text)


def clean_revision(text: str) -> str:
    return _REVISION_LABEL.sub("", text.strip()).strip()


def verify_critique(critique: str, response: str) -> Verdict:
    """Filter for a critique: something to say, not a copy of the response, short."""
    return checks.verdict("critique", [
        checks.check_nonempty(critique),
        checks.check_leak(critique),
        Result("copy", checks.normalize(critique) != checks.normalize(response), "repeats the response"),
        checks.check_length(critique, 3, 80),
    ])


# ---------------------------------------------------------------------------- one chunk


def _generate(ctx: StageContext, role: str, prompts: list[str], params: SamplingParams) -> list[list[str]]:
    if not prompts:
        return []
    return ctx.engine(role).generate(prompts, params, desc=f"{ctx.spec.name} {role}")


#: Token budgets are rounded up to these buckets so a chunk of mixed families makes a few
#: well-filled generate calls instead of one small call per family.
TOKEN_BUCKETS = (48, 96, 160, 256)


def _token_cap(ctx: StageContext, family: TaskFamily) -> int:
    """The family's token need, rounded up to a bucket, capped by the stage's ``max_new_tokens``."""
    need = int(getattr(family, "max_new_tokens", ctx.spec.sampling.max_new_tokens))
    bucket = next((b for b in TOKEN_BUCKETS if b >= need), need)
    return max(1, min(bucket, ctx.spec.sampling.max_new_tokens))


def best_failing(verdicts: list[Verdict], samples: list[str]) -> int | None:
    """The failing, non-empty sample the verifier scored highest (first on ties)."""
    best = None
    for i, (v, s) in enumerate(zip(verdicts, samples)):
        if not v.passed and s.strip() and (best is None or v.score > verdicts[best].score):
            best = i
    return best


def run_chunk(
    ctx: StageContext, opts: TaskOptions, items: list[tuple[TaskFamily, Instance]], seed: int,
    all_families: Sequence[TaskFamily], trained: set[str] | None,
) -> list[dict]:
    """Candidates -> verify -> critique -> revise -> verify -> one record per case."""
    # 1. candidates, grouped by token budget
    prompts = [answer_prompt(opts, f, i, few_shot_for(ctx, opts, f, trained)) for f, i in items]
    samples: list[list[str]] = [[] for _ in items]
    params_of: dict[int, SamplingParams] = {}
    by_cap: dict[int, list[int]] = {}
    for k, (fam, _) in enumerate(items):
        by_cap.setdefault(_token_cap(ctx, fam), []).append(k)
    for cap, idx in sorted(by_cap.items()):
        params = ctx.sampling(seed=derive_seed(seed, "answer", cap), max_new_tokens=cap, top_k=opts.top_k)
        for k, out in zip(idx, _generate(ctx, "answerer", [prompts[k] for k in idx], params)):
            samples[k] = out
            params_of[k] = params
    picks = [C.pick(s, lambda o, f=f, i=i: f.verify(i, o)) for (f, i), s in zip(items, samples)]
    originals = [best_failing(p.verdicts, p.samples) for p in picks]

    # 2. critique the best failing candidate
    want = [
        k for k, (p, o) in enumerate(zip(picks, originals))
        if o is not None and (opts.revise_when == "failing" or (opts.revise_when == "unsolved" and not p.passing))
    ]
    crit_params = ctx.sampling(
        seed=derive_seed(seed, "critic"), n=1, max_new_tokens=opts.critique_max_new_tokens, top_k=opts.top_k
    )
    crit_prompts: dict[int, str] = {}
    demos_of: dict[int, list[dict]] = {}
    for k in want:
        fam, inst = items[k]
        demos_of[k] = repair_demos(fam, all_families, opts.critic_shots, inst.id)
        hint = critic_hint(picks[k].verdicts[originals[k]], opts.critic_hint)
        crit_prompts[k] = critic_prompt(fam, demos_of[k], inst.instruction, picks[k].samples[originals[k]], hint)
    crit_out = dict(zip(want, _generate(ctx, "critic", [crit_prompts[k] for k in want], crit_params)))
    critiques: dict[int, tuple[str | None, Verdict | None, list[dict]]] = {}
    for k in want:
        response = picks[k].samples[originals[k]]
        critiques[k] = C.first_passing([c.strip() for c in crit_out[k]], lambda c, r=response: verify_critique(c, r))

    # 3. revise per the critique
    rev_ks = [k for k in want if critiques[k][0] is not None]
    rev_params = ctx.sampling(seed=derive_seed(seed, "reviser"), n=opts.revise_n, top_k=opts.top_k)
    rev_prompts: dict[int, str] = {}
    rev_out: dict[int, list[str]] = {}
    by_cap = {}
    for k in rev_ks:
        fam, inst = items[k]
        rev_prompts[k] = reviser_prompt(demos_of[k], inst.instruction, picks[k].samples[originals[k]], critiques[k][0] or "")
        by_cap.setdefault(_token_cap(ctx, fam), []).append(k)
    rev_params_of: dict[int, SamplingParams] = {}
    for cap, idx in sorted(by_cap.items()):
        params = rev_params.model_copy(update={"max_new_tokens": cap, "seed": derive_seed(seed, "reviser", cap)})
        for k, out in zip(idx, _generate(ctx, "reviser", [rev_prompts[k] for k in idx], params)):
            rev_out[k] = [clean_revision(o) for o in out]
            rev_params_of[k] = params

    # 4. records
    records = []
    for k, (fam, inst) in enumerate(items):
        records.append(_record(
            ctx, opts, fam, inst, picks[k], originals[k], prompts[k], params_of[k],
            crit_prompts.get(k), crit_params, critiques.get(k),
            rev_prompts.get(k), rev_params_of.get(k), rev_out.get(k),
            few_shot=few_shot_for(ctx, opts, fam, trained),
        ))
    return records


def _record(
    ctx, opts, fam, inst, pick, original, prompt, params, crit_prompt, crit_params, critique, rev_prompt, rev_params,
    revisions, *, few_shot: bool,
) -> dict:
    prov: dict = {
        "prompt": C.seed_provenance(
            "hand-written template x seed material", source=f"data/seeds/tasks_{fam.name}.yaml",
            template=inst.reference.get("template"), instance=inst.id,
        ),
        "candidates": C.role_provenance(ctx, "answerer", prompt, params, few_shot=few_shot),
    }
    verdicts: dict = {}
    critique_text = None
    rev_results: list[dict] = []
    chosen_rev = None
    if critique is not None:
        critique_text, cverdict, tried = critique
        prov["critique"] = C.role_provenance(ctx, "critic", crit_prompt, crit_params, tried=tried, of_sample=original)
        if cverdict is not None:
            verdicts["critique"] = cverdict
    if revisions is not None:
        prov["revision"] = C.role_provenance(ctx, "reviser", rev_prompt, rev_params, of_sample=original)
        for j, text in enumerate(revisions):
            v = fam.verify(inst, text)
            rev_results.append({"text": text, "passed": v.passed, "check": v.check, "reason": v.reason, "score": v.score})
            if v.passed and chosen_rev is None:
                chosen_rev = (j, text, v)
    chosen = rejected = None
    drop = None
    if chosen_rev is not None:
        j, chosen, v = chosen_rev
        verdicts["chosen"] = v
        prov["chosen"] = {**C.role_provenance(ctx, "reviser", rev_prompt, rev_params, sample=j), "from": "revision"}
    elif pick.chosen is not None:
        chosen = pick.samples[pick.chosen]
        verdicts["chosen"] = pick.verdicts[pick.chosen]
        prov["chosen"] = {**C.role_provenance(ctx, "answerer", prompt, params, sample=pick.chosen), "from": "candidate"}
    if original is not None:
        rejected = pick.samples[original]
        verdicts["rejected"] = pick.verdicts[original]
        prov["rejected"] = {**C.role_provenance(ctx, "answerer", prompt, params, sample=original), "from": "candidate"}
    if chosen is None:
        failing = [v.check for v in pick.verdicts] + [r["check"] for r in rev_results]
        drop = f"verify:{Counter(failing).most_common(1)[0][0]}" if failing else "no_output"
        if opts.fallback_to_reference:
            ref = fam.reference_output(inst) if hasattr(fam, "reference_output") else None
            v = fam.verify(inst, ref) if ref else None
            if v is not None and v.passed:
                chosen = ref
                verdicts["chosen"] = v
                prov["chosen"] = C.seed_provenance(
                    f"reference output: nothing verified ({drop}); fallback_to_reference is on", **{"from": "reference"}
                )
                drop = None
    record = C.make_record(
        ctx, fam, inst, kept=chosen is not None, drop_reason=drop, chosen=chosen, rejected=rejected,
        verdicts=verdicts, provenance=prov, candidates=pick.candidates(),
    )
    record.update({
        "topic": inst.topic,
        "init_response": rejected,
        "critique": critique_text,
        "revision_response": chosen_rev[1] if chosen_rev else (revisions[0] if revisions else None),
        "revisions": rev_results,
        "chosen_from": prov.get("chosen", {}).get("from"),
    })
    return record


# ---------------------------------------------------------------------------- build


def build(ctx: StageContext) -> None:
    """Write this stage's records to ``ctx.sink`` (see the module docstring)."""
    opts = task_options(ctx)
    fams = stage_families(ctx, opts)
    trained = answerer_trained_on(ctx)
    pool = plan(ctx, opts, fams)
    quota = family_quota(ctx, opts, len(fams))
    counter = KeptCounter(list(iter_jsonl(ctx.sink.path)))
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        keys = {inst.id for _, inst in chunk}
        full = {f.name for f, _ in chunk if counter.family_count(f.name, keys) >= quota}
        items = [(f, i) for f, i in chunk if f.name not in full]
        records = run_chunk(ctx, opts, items, seed, fams, trained) if items else []
        records += [_quota_record(ctx, f, i, quota) for f, i in chunk if f.name in full]
        for record in records:
            if ctx.sink.write(record):
                counter.add(record)
    _report(ctx, counter, fams)


def _quota_record(ctx: StageContext, fam: TaskFamily, inst: Instance, quota: int) -> dict:
    """A case left out because its family already fills its share (nothing generated)."""
    return C.make_record(
        ctx, fam, inst, kept=False, drop_reason="family_quota", chosen=None, rejected=None, verdicts={},
        provenance={"prompt": C.seed_provenance(f"not generated: {fam.name} already has {quota} kept examples (max_family_share)")},
    )


def _report(ctx: StageContext, counter: KeptCounter, fams: Sequence[TaskFamily]) -> None:
    per = Counter(counter.kept.values())
    parts = ", ".join(f"{f.name} {per.get(f.name, 0)}" for f in fams)
    ctx.console.print(f"{ctx.spec.name}: kept per family: {parts}")


__all__ = ["CRITIC_INSTRUCTION", "REVISER_INSTRUCTION", "TaskOptions", "build", "plan", "run_chunk", "task_options"]

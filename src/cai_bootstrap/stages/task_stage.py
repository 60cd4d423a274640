"""Stage kind ``task`` (curriculum `tasks`): answer, critique, revise, keep the verified best.

Contract
    inputs   ``spec.families``: task-type families (`cai_bootstrap.tasks.types`);
             for stage 0 exactly one, equal to ``options.task`` when that is set.
             Roles: ``answerer`` (best-of-n candidates; few-shot with the family's
             demos when it is the base model or a stage model not trained on the
             family, see `TaskOptions.answer_shots`), ``critic`` (critiques a failing
             candidate, few-shot with hand-written critique demos; told the failed
             rule check, see ``critic_hint``), ``reviser`` (rewrites it per the
             critique). ``spec.sampling``: candidates per case (``n``), temperature,
             token cap (each family's own ``max_new_tokens`` below it).
             ``spec.options``: `TaskOptions`.
             The options and the roles' prompts are in `task_prompts`.
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
verify -> pick. A family in ``options.seed_answers`` skips all of it: its cases take the seed's
hand-written reference answers (a cold start; the stage's rounds then sample its own model).
Stops when ``ctx.enough()`` (checked by ``ctx.chunks``). A family may fill at most
``max_family_share`` of the examples wanted, counted over the other chunks, so a
redone chunk makes the same decisions.

This is the specification's stage-0 sketch (generated variations, critique,
revision; chosen = revised, rejected = original), run for every stage of `tasks`.
References: Bai et al. 2022 (critique -> revision); inspect_ai ``self_critique``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from cai_bootstrap.config import ConfigError, StageSpec
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.answerer_choice import ANSWERER, RIVAL, check_probe, choose_answerers
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.kind import StageKind
from cai_bootstrap.stages.task_prompts import (
    TaskOptions,
    answer_prompt,
    answerer_trained_on,
    clean_revision,
    critic_hint,
    critic_prompt,
    few_shot_for,
    repair_demos,
    reviser_prompt,
    task_options,
    token_cap,
    verify_critique,
)
from cai_bootstrap.stages.training_facts import withheld_topics
from cai_bootstrap.stages.validation import training_instances
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.bank import round_robin
from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict
from cai_bootstrap.tasks.types import TASK_TYPES, task_family


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
    No case shares a topic with the validation split (``spec.validation``, `stages.validation`).

    A family whose train material is smaller than its share of the plan repeats its
    cases (new samples, key suffix ``#p1``, ``#p2``, ...) up to ``max_passes`` times.
    """
    n = max(1, round(ctx.target_examples * opts.oversample))
    per_family = math.ceil(n / len(fams))
    seed = derive_seed(ctx.settings.seed, ctx.spec.name, "plan")
    held = withheld_topics(ctx.run_dir, ctx.spec, ctx.settings.seed)  # validation topics, unknown facts
    lists = []
    for f in fams:
        base = training_instances(f, per_family, derive_seed(seed, f.name), held)
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


# ---------------------------------------------------------------------------- one chunk


def _generate(ctx: StageContext, role: str, prompts: list[str], params: SamplingParams) -> list[list[str]]:
    if not prompts:
        return []
    return ctx.engine(role).generate(prompts, params, desc=f"{ctx.spec.name} {role}")


def best_failing(verdicts: list[Verdict], samples: list[str]) -> int | None:
    """The failing, non-empty sample the verifier scored highest (first on ties)."""
    best = None
    for i, (v, s) in enumerate(zip(verdicts, samples)):
        if not v.passed and s.strip() and (best is None or v.score > verdicts[best].score):
            best = i
    return best


def run_chunk(
    ctx: StageContext, opts: TaskOptions, items: list[tuple[TaskFamily, Instance]], seed: int,
    all_families: Sequence[TaskFamily], trained: dict[str, set[str] | None], answerer_of: dict[str, str] | None = None,
) -> list[dict]:
    """Candidates -> verify -> critique -> revise -> verify -> one record per case.

    ``answerer_of``: family -> the role that answers it (`answerer_choice`; default the answerer);
    ``trained``: role -> the families its model was trained on."""
    # 1. candidates, grouped by answering role and token budget
    roles = [(answerer_of or {}).get(f.name, ANSWERER) for f, _ in items]
    few_shot = [few_shot_for(ctx, opts, f, trained.get(role)) for (f, _), role in zip(items, roles)]
    prompts = [answer_prompt(opts, f, i, shots) for (f, i), shots in zip(items, few_shot)]
    samples: list[list[str]] = [[] for _ in items]
    params_of: dict[int, SamplingParams] = {}
    by_cap: dict[tuple[str, int], list[int]] = {}
    for k, (fam, _) in enumerate(items):
        by_cap.setdefault((roles[k], token_cap(ctx.spec, fam)), []).append(k)
    for (role, cap), idx in sorted(by_cap.items()):
        params = ctx.sampling(seed=derive_seed(seed, "answer", cap), max_new_tokens=cap, top_k=opts.top_k)
        for k, out in zip(idx, _generate(ctx, role, [prompts[k] for k in idx], params)):
            samples[k] = out
            params_of[k] = params
    picks = [C.pick(s, lambda o, f=f, i=i: f.verify(i, o), ctx.spec.prefer_answer, i.instruction)
             for (f, i), s in zip(items, samples)]
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
    rev_by_cap: dict[int, list[int]] = {}
    for k in rev_ks:
        fam, inst = items[k]
        rev_prompts[k] = reviser_prompt(demos_of[k], inst.instruction, picks[k].samples[originals[k]], critiques[k][0] or "")
        rev_by_cap.setdefault(token_cap(ctx.spec, fam), []).append(k)
    rev_params_of: dict[int, SamplingParams] = {}
    for cap, idx in sorted(rev_by_cap.items()):
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
            few_shot=few_shot[k], answerer=roles[k],
        ))
    return records


def _record(
    ctx, opts, fam, inst, pick, original, prompt, params, crit_prompt, crit_params, critique, rev_prompt, rev_params,
    revisions, *, few_shot: bool, answerer: str = ANSWERER,
) -> dict:
    prov: dict = {
        "prompt": C.seed_provenance(
            "hand-written template x seed material", source=fam.material_source(inst),
            template=inst.reference.get("template"), instance=inst.id,
        ),
        "candidates": C.role_provenance(ctx, answerer, prompt, params, few_shot=few_shot),
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
        prov["chosen"] = {**C.role_provenance(ctx, answerer, prompt, params, sample=pick.chosen), "from": "candidate"}
    if original is not None:
        rejected = pick.samples[original]
        verdicts["rejected"] = pick.verdicts[original]
        prov["rejected"] = {**C.role_provenance(ctx, answerer, prompt, params, sample=original), "from": "candidate"}
    if chosen is None:
        failing = [v.check for v in pick.verdicts] + [r["check"] for r in rev_results]
        drop = f"verify:{Counter(failing).most_common(1)[0][0]}" if failing else "no_output"
        if opts.fallback_to_reference:
            ref, v = C.reference_answer(fam, inst)
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
    pool = plan(ctx, opts, fams)
    # seed-answer families generate nothing in the first data: no answerer to choose for them
    answerer_of = choose_answerers(ctx, opts, [(f, i) for f, i in pool if f.name not in opts.seed_answers])
    trained = {role: answerer_trained_on(ctx, role) for role in set(answerer_of.values()) | {ANSWERER}}
    quota = family_quota(ctx, opts, len(fams))
    counter = KeptCounter(list(iter_jsonl(ctx.sink.path)))
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        keys = {inst.id for _, inst in chunk}
        full = {f.name for f, _ in chunk if counter.family_count(f.name, keys) >= quota}
        items = [(f, i) for f, i in chunk if f.name not in full and f.name not in opts.seed_answers]
        records = run_chunk(ctx, opts, items, seed, fams, trained, answerer_of) if items else []
        records += [seed_answer_record(ctx, f, i) for f, i in chunk if f.name not in full and f.name in opts.seed_answers]
        records += [_quota_record(ctx, f, i, quota) for f, i in chunk if f.name in full]
        for record in records:
            if ctx.sink.write(record):
                counter.add(record)
    _report(ctx, counter, fams)


def seed_answer_record(ctx: StageContext, fam: TaskFamily, inst: Instance) -> dict:
    """The case with its family's hand-written reference answer (``options.seed_answers``), verified
    like any answer; nothing is generated."""
    answer, verdict = C.reference_answer(fam, inst)
    passed = verdict is not None and verdict.passed
    prov = {
        "prompt": C.seed_provenance("hand-written template x seed material", source=fam.material_source(inst),
                                    template=inst.reference.get("template"), instance=inst.id),
    }
    if passed:
        prov["chosen"] = C.seed_provenance("hand-written reference answer (options.seed_answers)",
                                           source=fam.material_source(inst), **{"from": "reference"})
    record = C.make_record(
        ctx, fam, inst, kept=passed, drop_reason=None if passed else "seed_answer:" + ("verify" if answer else "none"),
        chosen=answer if passed else None, rejected=None, verdicts={"chosen": verdict} if verdict else {},
        provenance=prov,
    )
    record.update({"topic": inst.topic, "init_response": None, "critique": None, "revision_response": None,
                   "revisions": [], "chosen_from": "reference" if passed else None})
    return record


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


__all__ = ["TaskStage", "build", "plan", "run_chunk"]


class TaskStage(StageKind):
    name = "task"
    roles = ("answerer", "critic", "reviser", RIVAL)
    options_model = TaskOptions
    default_yield = 0.6
    #: rounds (`stages.rounds`): the stage model answers training instances zero-shot, the task
    #: verifiers keep passing answers; the validation split is carved by topic from `plan`'s pool
    supports_rounds = True

    def build(self, ctx: StageContext) -> None:
        build(ctx)

    def check(self, spec: StageSpec) -> None:
        super().check(spec)
        opts: TaskOptions = self.options(spec)  # type: ignore[assignment]
        check_probe(spec.name, opts, spec.roles)
        names = list(spec.families) or ([opts.task] if opts.task else [])
        unknown = [f for f in opts.seed_answers if f not in names]
        if unknown:
            raise ConfigError(f"stage {spec.name}: options.seed_answers names {unknown}, not families of the stage {names}")

    def round_first_pool(self, ctx: StageContext) -> list[tuple[TaskFamily, Instance]]:
        opts = task_options(ctx)
        return plan(ctx, opts, stage_families(ctx, opts))

    def round_sampling(self, ctx: StageContext, family: TaskFamily) -> dict:
        """The family's token need (as the first data's answerer gets it) and the stage's top-k."""
        return {"max_new_tokens": token_cap(ctx.spec, family), "top_k": task_options(ctx).top_k}

    def plan_options(self, spec: StageSpec) -> dict:
        """The options as written: the planner caps a task stage's candidates at ``oversample`` only
        where the curriculum sets it (its builder's own default is not assumed)."""
        return dict(spec.options)

    def plan_answer_tokens(self, spec: StageSpec) -> int:
        """The mean of the families' token caps (`token_cap`): each family generates at most its own need."""
        opts: TaskOptions = self.options(spec)  # type: ignore[assignment]
        names = list(spec.families) or ([opts.task] if opts.task else [])
        if not names:
            return spec.sampling.max_new_tokens
        return round(sum(token_cap(spec, family_by_name(n)) for n in names) / len(names))

    def plan_samples(self, spec: StageSpec, expected_yield: float) -> dict[str, tuple[float, int]]:
        """As `run_chunk` samples: ``sampling.n`` answers a case; one critique (``critique_max_new_tokens``)
        of the cases ``revise_when`` picks (``unsolved``: about the cases that end unkept, 1 - yield; measured
        in runs/tasks-std3 stage 0, 103 critiqued of 400 cases kept 306, and runs/tasks-std6 stage 1, 613 of
        1,040 kept 428; ``failing``: every case, an upper bound) and ``revise_n`` revisions of each. The
        answerer probe (`answerer_choice`: both models, ``answerer_probe`` cases a family, ``answerer_probe_samples``
        each) is a fixed count, spread over the candidates (about ``examples / yield``) as the rival's share.
        ``seed_answers`` families take their references and sample nothing, so every role's count is
        scaled by the share of families that do sample."""
        opts: TaskOptions = self.options(spec)  # type: ignore[assignment]
        tokens = self.plan_answer_tokens(spec)
        critiqued = {"failing": 1.0, "unsolved": 1.0 - expected_yield, "never": 0.0}[opts.revise_when]
        sampled = [f for f in spec.families if f not in opts.seed_answers]
        share = len(sampled) / len(spec.families) if spec.families else 1.0
        probe = 2 * len(sampled) * opts.answerer_probe * opts.answerer_probe_samples if RIVAL in spec.roles else 0
        return {
            "answerer": (share * spec.sampling.n, tokens),
            "critic": (share * critiqued, opts.critique_max_new_tokens),
            "reviser": (share * critiqued * opts.revise_n, tokens),
            RIVAL: (probe * expected_yield / max(1, spec.examples), tokens),
        }

"""Stage kind ``revision``: fix texts whose flaws were injected on purpose.

Contract
    inputs   ``spec.families`` (skill ``revision``); roles ``answerer`` (writes the clean
             base responses, verified by `verify_material`), ``critic`` (says what needs
             improving; used as the feedback of "Revise according to feedback"), ``reviser``
             (writes best-of-n revisions) and ``judge`` (a model that is not being trained:
             picks between two revisions that both pass the rules); ``spec.options``.
    outputs  one record per case: ``prompt`` = the revision instruction around the flawed
             text, ``chosen`` = a revision that the verifier passes (flaw gone, content kept;
             the judge's pick when two pass), ``rejected`` = a failing revision, or the
             flawed text itself. ``verdicts.judge`` holds the judge's choice when used.
"""

from __future__ import annotations

from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.candidates import SkillOptions
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.kind import StageKind
from cai_bootstrap.stages.pair_judge import AB, judge_in_order
from cai_bootstrap.tasks import checks, flaws
from cai_bootstrap.tasks.skills.revision_families import CRITIC_DEMOS, CRITIC_INSTRUCTION

JUDGE_INSTRUCTION = "Which revision is better, A or B?\nTask: {task}\nA: {a}\nB: {b}"


def _critiques(ctx: StageContext, items: list, seed: int) -> None:
    """For cases whose template has feedback: the critic's first critique that names the flaw."""
    wanted = [k for k, (fam, item) in enumerate(items) if "{feedback}" in item.instance.reference["template"]]
    if not wanted:
        return
    params = C.aux_sampling(ctx, seed + 1)
    prompts = [C.role_prompt(ctx, CRITIC_DEMOS, CRITIC_INSTRUCTION.format(text=items[k][1].instance.reference["flawed"]),
                             items[k][1].instance.id) for k in wanted]
    outputs = ctx.engine("critic").generate(prompts, params, desc=f"{ctx.spec.name} critic")
    for k, prompt, samples in zip(wanted, prompts, outputs):
        fam, item = items[k]
        ref = item.instance.reference

        def verify(s: str, ref=ref):
            return checks.verdict("critique", flaws.check_critique(s, ref["flaws"], ref["flawed"]))

        text, verdict, tried = C.first_passing(samples, C.guard_demos(verify, CRITIC_DEMOS))
        new = fam.with_material(item.instance, {**item.texts, "feedback": text.strip()}) if text else None
        if new is not None:
            item.instance = new
            item.provenance["feedback"] = C.role_provenance(ctx, "critic", prompt, params, tried=tried,
                                                            verdict=verdict.model_dump() if verdict else None)
        else:
            item.provenance["feedback"] = C.seed_provenance("seed feedback: every critique failed the filter",
                                                            critic=ctx.role_name("critic"), input=prompt, tried=tried)


def _judge(ctx: StageContext, pairs: list[tuple[str, str, str, str]]) -> list[tuple[int, dict]]:
    """``pairs`` of (key, task, first, second) -> (index of the better one, provenance)."""
    if not pairs:
        return []
    swaps = [derive_seed("judge-order", key) % 2 == 1 for key, _, _, _ in pairs]
    prefs = judge_in_order(
        ctx.engine("judge"),
        lambda i, a, b: format_prompt(JUDGE_INSTRUCTION.format(task=pairs[i][1], a=a, b=b)),
        [(first, second) for _, _, first, second in pairs],
        swaps,
    )
    return [(pref.winner, {"by": ctx.role_name("judge"), "role": "judge", "input": pref.prompt, "options": AB,
                           "picked": "AB"[pref.picked], "order_swapped": swap})
            for pref, swap in zip(prefs, swaps)]


def build(ctx: StageContext) -> None:
    opts = C.options(ctx)
    pool = C.train_pool(ctx)
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        items = list(zip([fam for fam, _ in chunk], C.gather_material(ctx, chunk, seed)))
        _critiques(ctx, items, seed)
        params = ctx.sampling(seed=seed)
        prompts = [C.role_prompt(ctx, fam.few_shot(), item.instance.instruction, item.instance.id) for fam, item in items]
        outputs = ctx.engine("reviser").generate(prompts, params, desc=f"{ctx.spec.name} reviser")
        results = [C.pick(samples, C.guard_demos(lambda s, fam=fam, inst=item.instance: fam.verify(inst, s), fam.few_shot()),
                          ctx.spec.prefer_answer, item.instance.instruction)
                   for (fam, item), samples in zip(items, outputs)]
        ties = [k for k, r in enumerate(results) if opts.judge_ties and len(r.passing) >= 2]
        judged = dict(zip(ties, _judge(ctx, [
            (items[k][1].instance.id, items[k][1].instance.instruction,
             results[k].samples[results[k].passing[0]], results[k].samples[results[k].passing[1]]) for k in ties
        ])))
        for k, ((fam, item), prompt, result) in enumerate(zip(items, prompts, results)):
            inst = item.instance
            prov = {"prompt": {"by": "construction", **item.provenance}}
            verdicts: dict = {}
            if result.chosen is not None and k in judged:
                winner, judge_prov = judged[k]
                result.chosen = result.passing[winner]
                prov["judge"] = judge_prov
                verdicts["judge"] = {"passed": True, "score": 1.0, "check": "judge:choose",
                                     "reason": f"preferred sample {result.chosen} over sample {result.passing[1 - winner]}",
                                     "by": judge_prov["by"]}
            record = C.sample_record(ctx, fam, inst, result, "reviser", prompt, params, prov, verdicts)
            if record["rejected"] is None and record["kept"]:
                record["rejected"] = inst.reference["flawed"]
                record["provenance"]["rejected"] = {"by": "construction", "note": "the flawed text (flaws injected on purpose)"}
            ctx.sink.write(record)


class RevisionStage(StageKind):
    name = "revision"
    roles = ("answerer", "critic", "reviser", "judge")
    options_model = SkillOptions
    supports_rounds = True
    default_yield = 0.5

    def build(self, ctx: StageContext) -> None:
        build(ctx)

"""Stage kind ``explicit``: the base model answers explicit instructions, best-of-n.

Contract
    inputs   ``spec.families`` (skill ``explicit``); role ``answerer`` (the base model in
             ``skills``), prompted few-shot with each family's hand-written demos;
             ``spec.sampling`` (n samples per case); ``spec.options`` (`SkillOptions`).
    outputs  one ``data.jsonl`` record per case: ``prompt`` = the seed instruction,
             ``chosen`` = the first sample the family's verifier passes, ``rejected`` = a
             failing sample (for DPO), ``candidates`` = every sample with its verdict.
"""

from __future__ import annotations

from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.candidates import SkillOptions
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.kind import StageKind


def build(ctx: StageContext) -> None:
    pool = C.train_pool(ctx)
    answerer = ctx.engine("answerer")
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        params = ctx.sampling(seed=seed)
        prompts = [C.role_prompt(ctx, fam.few_shot(), inst.instruction, inst.id) for fam, inst in chunk]
        outputs = answerer.generate(prompts, params, desc=f"{ctx.spec.name} answerer")
        for (fam, inst), prompt, samples in zip(chunk, prompts, outputs):
            result = C.pick(samples, C.guard_demos(lambda s, fam=fam, inst=inst: fam.verify(inst, s), fam.few_shot()),
                              ctx.spec.prefer_answer, inst.instruction)
            ctx.sink.write(C.sample_record(
                ctx, fam, inst, result, "answerer", prompt, params,
                provenance={"prompt": C.seed_provenance("hand-written template x seed bank")},
            ))


class ExplicitStage(StageKind):
    name = "explicit"
    options_model = SkillOptions
    supports_rounds = True
    default_yield = 0.6

    def build(self, ctx: StageContext) -> None:
        build(ctx)

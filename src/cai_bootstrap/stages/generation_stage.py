"""Stage kind ``generation``: write questions, user messages, polite requests, factual
statements and instructions for an AI on a subject.

Contract
    inputs   ``spec.families`` (skill ``generation``); roles ``prompt_writer`` and
             ``answerer`` (the stage-2 model in ``skills``); ``spec.options`` (`SkillOptions`:
             ``paraphrase`` turns the rewording step off).
    outputs  one record per case: ``prompt`` = the task instruction (reworded by the prompt
             writer when its rewording keeps the subject and the kind of task, else the seed
             instruction; provenance ``prompt.by`` says which), ``chosen`` = the answerer's
             first output that passes the family's form/topic/length verifier.
"""

from __future__ import annotations

from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.candidates import SkillOptions
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.kind import StageKind
from cai_bootstrap.tasks.skills.generation_families import PARAPHRASE_DEMOS, PARAPHRASE_INSTRUCTION, verify_paraphrase


def build(ctx: StageContext) -> None:
    opts = C.options(ctx)
    pool = C.train_pool(ctx)
    writer = ctx.engine("prompt_writer") if opts.paraphrase else None
    answerer = ctx.engine("answerer")
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        cases = [(fam, inst, {"prompt": C.seed_provenance("hand-written template x domain")}, {}) for fam, inst in chunk]
        # 1. the prompt writer rewords the seed instructions
        if writer is not None:
            wparams = C.aux_sampling(ctx, seed)
            wprompts = [C.role_prompt(ctx, PARAPHRASE_DEMOS, PARAPHRASE_INSTRUCTION.format(instruction=inst.instruction), inst.id)
                        for _, inst in chunk]
            written = writer.generate(wprompts, wparams, desc=f"{ctx.spec.name} prompt_writer")
            for i, (wprompt, samples) in enumerate(zip(wprompts, written)):
                fam, inst, _, _ = cases[i]
                text, verdict, tried = C.first_passing(
                    samples, C.guard_demos(lambda s, fam=fam, inst=inst: verify_paraphrase(fam, inst, s), PARAPHRASE_DEMOS))
                if text is not None:
                    cases[i] = (fam, fam.with_instruction(inst, text.strip()),
                                {"prompt": C.role_provenance(ctx, "prompt_writer", wprompt, wparams, tried=tried,
                                                             seed_instruction=inst.instruction)},
                                {"prompt": verdict})
                else:
                    cases[i] = (fam, inst, {"prompt": C.seed_provenance(
                        "seed instruction: every rewording failed the filter", writer=ctx.role_name("prompt_writer"),
                        input=wprompt, tried=tried)}, {})
        # 2. the answerer writes candidates, verified
        params = ctx.sampling(seed=seed)
        prompts = [C.role_prompt(ctx, fam.few_shot(), inst.instruction, inst.id) for fam, inst, _, _ in cases]
        outputs = answerer.generate(prompts, params, desc=f"{ctx.spec.name} answerer")
        for (fam, inst, prov, verdicts), prompt, samples in zip(cases, prompts, outputs):
            result = C.pick(samples, C.guard_demos(lambda s, fam=fam, inst=inst: fam.verify(inst, s), fam.few_shot()),
                              ctx.spec.prefer_answer, inst.instruction)
            ctx.sink.write(C.sample_record(ctx, fam, inst, result, "answerer", prompt, params, prov, verdicts))


class GenerationStage(StageKind):
    name = "generation"
    roles = ("prompt_writer", "answerer")
    options_model = SkillOptions
    supports_rounds = True
    default_yield = 0.5

    def build(self, ctx: StageContext) -> None:
        build(ctx)

"""Stage kind ``implicit``: plain prompts ("What is the capital of France?") answered
through their explicit form by the previous stage's model.

Contract
    inputs   ``spec.families`` (skill ``implicit``); roles ``prompt_writer`` and
             ``answerer`` (the stage-1 model in ``skills``); ``spec.options`` (`SkillOptions`).
    outputs  one record per case: ``prompt`` = the implicit question (written by the
             prompt writer, or the seed question when the writer's samples all fail the
             form/topic filter — provenance ``prompt.by`` says which), ``chosen`` = the
             answerer's reply to the *explicit* form ("Answer this question: ...") that
             passes the verifier against the reference answer; ``rejected`` a failing reply.

Process per chunk: (1) for families with a writer topic, the prompt writer gets
"Generate a question about: <topic>" and its first sample that is a wh-question keeping
the topic words and not giving away the answer replaces the seed question; (2) the
answerer answers the explicit form, best-of-n; (3) samples are verified as answers
to the implicit question.
"""

from __future__ import annotations

from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.candidates import SkillOptions
from cai_bootstrap.stages.computed import check_computed, write_computed_records
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.kind import StageKind
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.skills.implicit_families import EXPLICIT_QUESTION, verify_written_question

WRITER_INSTRUCTION = "Generate a question about: {topic}"


def build(ctx: StageContext) -> None:
    computed = C.options(ctx).computed_answers
    check_computed(ctx.spec.name, list(ctx.spec.families), computed)  # before any generation
    pool = C.train_pool(ctx)
    writer = ctx.engine("prompt_writer") if any(getattr(f, "writer_family", "") for f, _ in pool) else None
    answerer = ctx.engine("answerer")
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        # 1. the prompt writer writes the implicit questions it can
        cases = [(fam, inst, {"prompt": C.seed_provenance("seed question (family has no prompt writer)")}, {})
                 for fam, inst in chunk]
        wanted = [i for i, (fam, inst, _, _) in enumerate(cases) if fam.writer_family and inst.reference.get("writer")]
        if wanted and writer is not None:
            wparams = C.aux_sampling(ctx, seed)
            wprompts = [
                C.role_prompt(ctx, get_family(cases[i][0].writer_family).few_shot(),
                              WRITER_INSTRUCTION.format(topic=cases[i][1].reference["writer"]["topic"]), cases[i][1].id)
                for i in wanted
            ]
            written = writer.generate(wprompts, wparams, desc=f"{ctx.spec.name} prompt_writer")
            for i, wprompt, samples in zip(wanted, wprompts, written):
                fam, inst, prov, verdicts = cases[i]
                ref = inst.reference["writer"]
                demos = get_family(fam.writer_family).few_shot()
                question, verdict, tried = C.first_passing(
                    samples, C.guard_demos(lambda s, ref=ref: verify_written_question(ref, s), demos))
                if question is not None:
                    q = question.strip()
                    inst = inst.model_copy(update={
                        "instruction": q, "explicit": EXPLICIT_QUESTION.format(q=q),
                        "reference": {**inst.reference, "question": q, "template": "written"},
                    })
                    prov = {"prompt": C.role_provenance(ctx, "prompt_writer", wprompt, wparams, tried=tried)}
                    verdicts = {"prompt": verdict}
                else:
                    prov = {"prompt": C.seed_provenance("seed question: every written question failed the filter",
                                                        writer=ctx.role_name("prompt_writer"), input=wprompt, tried=tried)}
                cases[i] = (fam, inst, prov, verdicts)
        # 2. the answerer answers the explicit form
        params = ctx.sampling(seed=seed)
        prompts = [C.role_prompt(ctx, get_family(fam.explicit_family).few_shot(), inst.explicit, inst.id)
                   for fam, inst, _, _ in cases]
        outputs = answerer.generate(prompts, params, desc=f"{ctx.spec.name} answerer")
        # 3. verified as answers to the implicit prompt
        for (fam, inst, prov, verdicts), prompt, samples in zip(cases, prompts, outputs):
            demos = get_family(fam.explicit_family).few_shot()
            result = C.pick(samples, C.guard_demos(lambda s, fam=fam, inst=inst: fam.verify(inst, s), demos), ctx.spec.prefer_answer,
                            inst.instruction)
            prov = {**prov, "explicit_form": inst.explicit}
            ctx.sink.write(C.sample_record(ctx, fam, inst, result, "answerer", prompt, params, prov, verdicts))
    # 4. records whose answer the seed bank computes (options.computed_answers), after the sampled ones
    write_computed_records(ctx, computed)


class ImplicitStage(StageKind):
    name = "implicit"
    roles = ("prompt_writer", "answerer")
    options_model = SkillOptions
    supports_rounds = True
    default_yield = 0.5

    def build(self, ctx: StageContext) -> None:
        build(ctx)

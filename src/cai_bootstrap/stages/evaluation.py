"""Stage kind ``evaluation``: judge answers and responses, with labels known by construction.

Contract
    inputs   ``spec.families`` (skill ``evaluation``); role ``answerer`` (the stage-3 model in
             ``skills``) writes the material being judged: one-sentence answers to seed fact
             questions, kept only when `verify_material` confirms them (right answer, one
             short sentence, names its subject); ``spec.options`` (`SkillOptions`).
    outputs  one record per case: ``prompt`` = the evaluation instruction built around the
             material (as written, or corrupted on purpose: wrong fact swapped in, made
             rude, replaced by an evasive or off-topic reply), ``chosen`` = the known label
             plus a short templated reason, ``rejected`` = the opposite label (for DPO).
             Provenance ``prompt.material`` names the model (or ``seed``) behind each text.
"""

from __future__ import annotations

from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.context import StageContext


def build(ctx: StageContext) -> None:
    pool = C.train_pool(ctx)
    for _, chunk, seed in ctx.chunks(pool, lambda item: [item[1].id]):
        for (fam, _), item in zip(chunk, C.gather_material(ctx, chunk, seed)):
            inst = item.instance
            chosen, rejected = fam.target(inst), fam.foil(inst)
            ok = fam.verify(inst, chosen)
            verdicts = {"chosen": ok}
            if rejected is not None:
                verdicts["rejected"] = fam.verify(inst, rejected)
            construction = {"by": "construction", "note": "label known by construction", "label": inst.reference.get("label")}
            ctx.sink.write(C.make_record(
                ctx, fam, inst, kept=ok.passed, drop_reason=None if ok.passed else f"construction:{ok.check}",
                chosen=chosen, rejected=rejected, verdicts=verdicts,
                provenance={"prompt": {"by": "construction", **item.provenance}, "chosen": construction,
                            "rejected": {**construction, "note": "the opposite label"}},
            ))

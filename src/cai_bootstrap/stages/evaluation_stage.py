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

from collections import Counter, defaultdict

from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.candidates import SkillOptions
from cai_bootstrap.stages.context import StageContext
from cai_bootstrap.stages.heldout_sets import stage_heldout
from cai_bootstrap.stages.kind import StageEvaluation, StageJob, StageKind
from cai_bootstrap.stages.rounds import training_records
from cai_bootstrap.tasks.checks import parse_label


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


class EvaluationStage(StageKind):
    name = "evaluation"
    options_model = SkillOptions
    supports_rounds = True
    default_yield = 0.6

    def build(self, ctx: StageContext) -> None:
        build(ctx)

    def evaluate(self, job: StageJob) -> StageEvaluation:
        """The held-out gate, plus each family's label balance (does the model answer a constant?)."""
        evaluation = super().evaluate(job)
        evaluation.extra["label_balance"] = label_balance(job)
        return evaluation


def label_balance(job: StageJob) -> dict:
    """Per family: labels of the records the attempt trained on (replay aside), the stage model's held-out answers
    (``None``: no label word first), the confusion matrix (true -> said) and the share of the
    most common answer. A model that learnt a constant shows a share near 1 and one column."""
    spec = job.spec
    truth = {i.id: i.reference for i in stage_heldout(job.run_dir, spec, job.settings.seed)}
    out: dict[str, dict] = defaultdict(lambda: {"training": Counter(), "heldout_answers": Counter(), "confusion": {}})
    for r in training_records(job.paths, spec, job.attempt):  # as trained: round records balanced
        label = (r.get("reference") or {}).get("label")
        if label is not None:
            out[r["family"]]["training"][str(label)] += 1
    for row in iter_jsonl(job.paths.eval / f"heldout-{spec.name}-a{job.attempt}.jsonl"):
        ref = truth.get(row["id"])
        if not ref or "label" not in ref:
            continue
        said = parse_label(row.get("output") or "", ref["labels"])
        fam = out[row["family"]]
        fam["heldout_answers"][str(said)] += 1
        fam["confusion"].setdefault(str(ref["label"]), Counter())[str(said)] += 1
    for fam in out.values():
        answers = fam["heldout_answers"]
        fam["majority_share"] = max(answers.values()) / sum(answers.values()) if answers else None
        fam["training"], fam["heldout_answers"] = dict(fam["training"]), dict(answers)
        fam["confusion"] = {k: dict(v) for k, v in fam["confusion"].items()}
    return dict(out)

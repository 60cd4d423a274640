"""Records whose answer a program computes (``options.computed_answers``).

Why: some skills rest on knowledge the base model lacks and its samples cannot supply. The
embedded base answers 4 of 245 sums right in most of its samples, so best-of-n finds few
verified sums, stage 2's `implicit_arithmetic` held-out cases stay at 32-52%, and the gate counts
them. Trained on the sums of its training split with the computed answer, the stage-1 model
answers 92% of the held-out sums (docs/results.md, `runs/fit/arith-ref`). The seed bank knows
each sum's answer, so such a record is as verified as any: it passes the family's verifier like
a sampled one. These records come *in addition to* the stage's ``examples``; each says
``computed: true`` and ``provenance.chosen.by: seed``, so the report and the control experiment
can tell them from model-made ones. Only families that declare ``computed_reference`` qualify.
"""

from __future__ import annotations

from cai_bootstrap.errors import ConfigError
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.training_facts import withheld_topics
from cai_bootstrap.stages.validation import training_instances
from cai_bootstrap.tasks import get_family

#: the record field that marks a computed record (`rounds.trained_records` keeps them beyond ``examples``)
COMPUTED = "computed"
SUFFIX = "~computed"


def check_computed(spec_name: str, families: list[str], wanted: dict[str, int]) -> None:
    """A clear error before any work: every named family is the stage's and computes its answers."""
    for name in wanted:
        if name not in families:
            raise ConfigError(f"stage {spec_name}: options.computed_answers names {name!r}, not a family of the "
                              f"stage {families}")
        if not getattr(get_family(name), "computed_reference", False):
            raise ConfigError(f"stage {spec_name}: options.computed_answers: {name!r} has no computed answers "
                              "(only families with computed_reference, such as implicit_arithmetic)")


def write_computed_records(ctx: StageContext, wanted: dict[str, int]) -> int:
    """Write up to ``wanted[family]`` computed records, one per training topic (validation topics
    left out), skipping keys already written (resume). Returns how many were written now.
    ``wanted`` was checked by `check_computed` before the stage generated anything."""
    held = withheld_topics(ctx.run_dir, ctx.spec, ctx.settings.seed)
    written = 0
    for name, count in wanted.items():
        family = get_family(name)
        seed = derive_seed(ctx.settings.seed, ctx.spec.name, "computed", name)
        topics: set[str] = set()
        for inst in training_instances(family, 4 * count, seed, held):
            if len(topics) >= count:
                break
            if inst.topic in topics:
                continue
            topics.add(inst.topic)
            key = inst.id + SUFFIX
            if ctx.sink.has(key):
                continue
            answer, verdict = C.reference_answer(family, inst)
            passed = bool(answer) and verdict is not None and verdict.passed
            record = C.make_record(
                ctx, family, inst, kept=passed, drop_reason=None if passed else "computed:verify",
                chosen=answer if passed else None, rejected=None, verdicts={"chosen": verdict} if verdict else {},
                provenance={"prompt": C.seed_provenance("hand-written template x seed bank"),
                            "chosen": C.seed_provenance("answer computed by the seed bank (options.computed_answers)")},
            )
            ctx.sink.write({**record, "key": key, "instance": inst.id, COMPUTED: True})
            written += 1
    return written

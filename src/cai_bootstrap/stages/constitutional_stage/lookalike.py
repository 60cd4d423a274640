"""Look-alike pairs: the other side of the boundary, a harmless request that looks like a harmful one.

A look-alike request (the seeds' ``lookalikes``: same category keywords, same form of request as
the category's harmful ones, e.g. "How do I kill a stuck Python process?") is answered by the
``answerer``; the first of its samples that passes `helpful_answer_rules` (answers on topic, does
not refuse) is ``chosen``. The ``refusal_writer`` declines the same request, shown the
constitution's worked refusals (as for contrast pairs); the first sample that passes
`evasive_refusal_rules` is ``rejected``. DPO then sees "answer > refusal" on requests that share
their surface with the red-team ones, whose pairs say "refusal > answer"; SFT sees the answer.

Why: measured at the quick preset, the red-team prompts were "How do I ..." and the ordinary
ones mostly "What is ...", and nothing harmless used the red-team words, so the model learnt the
form and the vocabulary ("How do I blow up a balloon?" -> "I can't help with how to blow up a
balloon."). A look-alike keeps both and changes only the harm.
"""

from __future__ import annotations

from dataclasses import dataclass

from cai_bootstrap.constitution import Constitution
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.stages.constitutional_stage.contrast import evasive_refusal_rules, refusal_writer_input
from cai_bootstrap.stages.constitutional_stage.options import ConstitutionalOptions
from cai_bootstrap.stages.constitutional_stage.prompts import REFUSAL_WRITER
from cai_bootstrap.stages.constitutional_stage.rules import clean_revision, helpful_answer_rules
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.tasks.base import Verdict

#: the ``check`` of a look-alike record
LOOKALIKE_CHECK = "lookalike:helpful_over_refusal"


@dataclass
class LookalikePair:
    """What the answerer and the refusal writer made of one look-alike request."""

    chosen: str | None
    rejected: str | None
    chosen_verdicts: list[Verdict]
    rejected_verdicts: list[Verdict]
    answers: list[str]
    refusals: list[str]
    answer_input: str
    refusal_input: str

    @property
    def drop(self) -> str | None:
        if self.chosen is None:
            return "lookalike:no_helpful_answer"
        if self.rejected is None:
            return f"lookalike:{self.rejected_verdicts[0].check if self.rejected_verdicts else 'no_refusal'}"
        return None

    def verdicts(self) -> dict:
        def pick(vs: list[Verdict], text: str | None, texts: list[str]):
            return vs[texts.index(text)].model_dump() if text is not None else [v.model_dump() for v in vs]

        return {
            "chosen": pick(self.chosen_verdicts, self.chosen, self.answers),
            "rejected": pick(self.rejected_verdicts, self.rejected, self.refusals),
        }


def lookalike_pairs(
    ctx: StageContext, opts: ConstitutionalOptions, constitution: Constitution, prompts: list[str], seed: int
) -> list[LookalikePair]:
    """Answer and decline each look-alike request (one batch per role, ``sampling.n`` samples each)."""
    if not prompts:
        return []
    n = ctx.spec.sampling.n
    answer_inputs = [format_prompt(p) for p in prompts]
    answers = ctx.engine("answerer").generate(
        answer_inputs, ctx.sampling(seed=derive_seed(seed, "lookalike", "answerer"), n=n),
        desc=f"{ctx.spec.name} answerer (look-alikes)",
    )
    examples = constitution.examples_for("redteam", max(opts.shots, 1))
    refusal_inputs = [refusal_writer_input(p, examples) for p in prompts]
    refusals = ctx.engine(REFUSAL_WRITER).generate(
        refusal_inputs,
        ctx.sampling(seed=derive_seed(seed, "lookalike", REFUSAL_WRITER), n=n, max_new_tokens=opts.aux_max_new_tokens),
        desc=f"{ctx.spec.name} {REFUSAL_WRITER} (look-alikes)",
    )
    out = []
    for prompt, a_in, r_in, a_samples, r_samples in zip(prompts, answer_inputs, refusal_inputs, answers, refusals):
        a_texts = [a.strip() for a in a_samples]
        r_texts = [clean_revision(r) for r in r_samples]
        a_verdicts = [helpful_answer_rules(prompt, a) for a in a_texts]
        chosen = next((a for a, v in zip(a_texts, a_verdicts) if v.passed), None)
        r_verdicts = [evasive_refusal_rules(prompt, chosen or "", r) for r in r_texts]
        rejected = next((r for r, v in zip(r_texts, r_verdicts) if v.passed), None)
        out.append(LookalikePair(chosen, rejected, a_verdicts, r_verdicts, a_texts, r_texts, a_in, r_in))
    return out

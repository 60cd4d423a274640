"""``options:`` of a ``kind: constitutional`` stage (typed; unknown keys are errors)."""

from __future__ import annotations

from cai_bootstrap.config import StageSpec
from cai_bootstrap.constitution import PromptKind
from cai_bootstrap.stages.kind import parse_options
from pydantic import BaseModel, ConfigDict, Field, model_validator

# --------------------------------------------------------------------------- options


class BenchmarkOptions(BaseModel):
    """How much of each public benchmark `evaluate_stage` runs (None: all of it)."""

    model_config = ConfigDict(extra="forbid")

    advbench_limit: int | None = Field(None, ge=1, description="first N AdvBench behaviours")
    xstest_limit: int | None = Field(None, ge=1, description="first N XSTest prompts of each label")
    ifeval_limit: int | None = Field(None, ge=0, description="first N IFEval prompts; 0 skips IFEval")
    max_new_tokens: int = Field(128, ge=1)


class ConstitutionalOptions(BaseModel):
    """``options:`` of a ``kind: constitutional`` stage (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    redteam_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of work items that are red-team")
    max_family_share: float = Field(0.7, gt=0.0, le=1.0, description="most of the wanted examples one family may fill")
    oversample: float = Field(4.0, ge=1.0, description="work items planned per example wanted")
    aux_n: int | None = Field(
        None, ge=1, description="prompt-writer samples per item, the first that passes is used (default: sampling.n)"
    )
    shots: int = Field(
        2,
        ge=0,
        description="demonstrations per role prompt: seed requests of other topics for the writer, "
        "the constitution's worked examples for the critic and the reviser",
    )
    aux_max_new_tokens: int = Field(48, ge=4, description="token limit for the prompt writer and the critic")
    judge_families: list[PromptKind] = Field(
        default_factory=lambda: ["ordinary"], description="families whose non-decisive pairs need the judge"
    )
    seed_fallback: bool = Field(True, description="use a hand-written seed request when the writer's are rejected")
    decontaminate: bool = Field(True, description="reject written prompts close to benchmark prompts")
    fallback_to_reference: bool = Field(
        False,
        description="keep a red-team pair that failed the filters with `REFERENCE_REFUSAL` as chosen "
        "(provenance by: seed). Only for the tiny preset, whose random models never pass a filter.",
    )
    helpful_samples: float = Field(
        0.0,
        ge=0.0,
        description="SFT-only records per kept record: ordinary prompts of this stage with the answerer's own "
        "answer, where it passes `helpful_answer_rules` (only read by the sft and sft+dpo methods)",
    )
    contrast_pairs: float = Field(
        0.0,
        ge=0.0,
        description="DPO pairs per kept record on harmless prompts: the answerer's own helpful answer "
        "(passes `helpful_answer_rules`) preferred to an evasive refusal of the same request written by "
        "the `refusal_writer` role (`contrast_pairs`)",
    )
    contrast_seed_prompts: bool = Field(
        False,
        description="contrast pairs also on the train-split ordinary seed requests (hand-written, varied in "
        "form: 'How do I ...'), answered by the answerer, not only on the prompts the writer wrote",
    )
    lookalikes: float = Field(
        0.0,
        ge=0.0,
        description="look-alike work items per red-team item: a harmless request of the same category, form and "
        "vocabulary (the seeds' `lookalikes`), answered by the answerer (chosen, `helpful_answer_rules`) and "
        "declined by the `refusal_writer` (rejected): the other side of the boundary",
    )
    refusal_share: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="share of the stage's training records that are refusals (harmful side), exactly; the rest "
        "helpful: look-alike and ordinary records, contrast pairs, helpful samples, then replayed earlier-stage "
        "records as needed (None: own records + `replay` + extras, as before)",
    )
    dev_split: bool = Field(
        False,
        description="score the previous and the new model on the seeds' `dev` requests (harmful and look-alike; "
        "never trained on, not the held-out test): refusal rates and discrimination in metrics.json (`dev`)",
    )
    refusal_calibration: bool = Field(
        False,
        description="needs dev_split: set a threshold on the new model's probability of opening with a decline, "
        "chosen on the dev split within the gate's over-refusal limit, saved next to its adapter "
        "(engines/refusal_calibration.py); the gate scores the calibrated model",
    )
    redteam_seeds: str | None = None
    ordinary_seeds: str | None = None
    benchmarks: BenchmarkOptions = Field(default_factory=BenchmarkOptions)

    @model_validator(mode="after")
    def _calibration_needs_the_dev_split(self) -> ConstitutionalOptions:
        if self.refusal_calibration and not self.dev_split:
            raise ValueError("refusal_calibration needs dev_split: true (the threshold is chosen on the dev split)")
        return self


def stage_options(spec: StageSpec) -> ConstitutionalOptions:
    return parse_options(spec, ConstitutionalOptions)  # type: ignore[return-value]

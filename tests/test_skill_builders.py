"""The skill builders (explicit ... revision) on the tiny random model, and on scripted engines.

The tiny model's outputs are garbage, so its samples are mostly dropped: these tests
check that records are well formed, name the model and prompt behind each field,
that resuming adds no duplicates, and (with scripted engines) that the writer,
critic and judge paths are taken when their outputs pass the filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from cai_bootstrap.config import RunSettings, SamplingSettings, StageSpec
from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import read_jsonl
from cai_bootstrap.stages import candidates
from cai_bootstrap.stages.context import RecordSink, StageContext
from cai_bootstrap.stages.registry import get_kind
from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.catalog import SKILL_FAMILIES

KINDS = list(SKILL_FAMILIES)
FIELDS = ("key", "family", "attempt", "kept", "drop_reason", "prompt", "chosen", "rejected", "check", "verdicts",
          "provenance", "reference", "candidates")


class ScriptedEngine(Engine):
    """Answers each prompt's last instruction with ``script(instruction)``; records the prompts it saw."""

    name = "scripted"

    def __init__(self, script: Callable[[str], list[str]], pick: int = 1):
        self.script = script
        self.pick = pick
        self.seen: list[str] = []
        self.choices: list[str] = []

    def generate(self, prompts, params: SamplingParams, *, progress=True, desc="generate"):
        out = []
        for p in prompts:
            self.seen.append(p)
            instruction = p.rsplit("### Instruction:\n", 1)[-1].split("\n\n### Response:", 1)[0]
            texts = self.script(instruction)
            out.append([texts[i % len(texts)] for i in range(params.n)])
        return out

    def choose(self, prompts, options):
        self.choices.extend(prompts)
        return [self.pick for _ in prompts]


def make_ctx(tmp_path: Path, kind: str, engines: dict[str, Engine] | Engine, **options) -> StageContext:
    spec = StageSpec(
        name=f"stage-{kind}", kind=kind, families=SKILL_FAMILIES[kind], examples=3, heldout=2,
        sampling=SamplingSettings(n=2, max_new_tokens=4, temperature=0.8),
        options={"oversample": 2.0, "shots": 1, "aux_max_new_tokens": 4, **options},
    )
    sink = RecordSink(tmp_path / spec.name / "data.jsonl")

    def engine_for(role: str) -> Engine:
        return engines[role] if isinstance(engines, dict) else engines

    return StageContext(
        spec=spec, settings=RunSettings(preset="tiny"), stage_dir=tmp_path / spec.name, sink=sink,
        engine_for=engine_for, role_name=lambda role: f"model-of-{role}", console=Console(quiet=True), chunk_size=8,
    )


def run(ctx: StageContext) -> list[dict]:
    get_kind(ctx.spec.kind).build(ctx)
    ctx.sink.close()
    return read_jsonl(ctx.sink.path)


def assert_well_formed(records: list[dict], kind: str) -> None:
    assert records
    assert len({r["key"] for r in records}) == len(records)
    for r in records:
        for f in FIELDS:
            assert f in r, f
        assert r["family"] in SKILL_FAMILIES[kind]
        assert r["prompt"] and r["check"] == f"{r['family']}.verify"
        assert "prompt" in r["provenance"]
        if r["kept"]:
            assert r["chosen"] and r["drop_reason"] is None
            assert "chosen" in r["provenance"] and r["verdicts"]["chosen"]["passed"]
        else:
            assert r["drop_reason"] and (r["drop_reason"].startswith(("verify:", "construction:")) or r["drop_reason"] == "no_output")
        for c in r["candidates"]:
            assert set(c) == {"text", "passed", "check", "reason"}
        if r["rejected"] is not None:
            assert r["rejected"] != r["chosen"]


@pytest.mark.parametrize("kind", KINDS)
def test_builder_on_tiny_model_writes_well_formed_records_and_resumes(tmp_path, tiny_engine, kind):
    ctx = make_ctx(tmp_path, kind, tiny_engine)
    records = run(ctx)
    assert_well_formed(records, kind)
    assert len(records) <= candidates.budget(ctx)
    # every sampled field names the role model and the exact prompt it was given
    for r in records:
        for field in ("chosen", "rejected"):
            prov = r["provenance"].get(field)
            if prov and prov.get("role"):
                assert prov["by"] == f"model-of-{prov['role']}" and "### Instruction:" in prov["input"]
    if kind == "evaluation":  # labels known by construction: every case is kept
        assert all(r["kept"] for r in records)
        for r in records:
            fam = get_family(r["family"])
            assert r["chosen"].split(".")[0] in fam.instances("train", 1, 0)[0].reference["labels"]
    # resume: building again on the same file adds nothing
    again = run(make_ctx(tmp_path, kind, tiny_engine))
    assert [r["key"] for r in again] == [r["key"] for r in records]


@pytest.mark.parametrize("kind", KINDS)
def test_fallback_to_reference_keeps_cases_for_the_tiny_preset(tmp_path, tiny_engine, kind):
    ctx = make_ctx(tmp_path, kind, tiny_engine, fallback_to_reference=True)
    records = run(ctx)
    assert_well_formed(records, kind)
    kept = [r for r in records if r["kept"]]
    assert len(kept) >= ctx.target_examples
    for r in kept:
        if r["provenance"]["chosen"]["by"] == "seed":
            assert "reference output" in r["provenance"]["chosen"]["note"]


def test_explicit_keeps_a_passing_sample_and_a_failing_one_for_dpo(tmp_path):
    def script(instruction: str) -> list[str]:
        fam_inst = lookup[instruction]
        return ["I do not know.", fam_inst[0].reference_output(fam_inst[1])]

    ctx = make_ctx(tmp_path, "explicit", ScriptedEngine(script))
    lookup = {inst.instruction: (fam, inst) for fam, inst in candidates.train_pool(ctx)}
    records = run(ctx)
    assert_well_formed(records, "explicit")
    assert all(r["kept"] for r in records)
    for r in records:
        assert r["rejected"] == "I do not know."
        assert r["provenance"]["chosen"]["sample"] == 1 and r["provenance"]["chosen"]["by"] == "model-of-answerer"
    assert len({r["family"] for r in records}) >= 4
    assert ctx.sink.counts["kept"] >= ctx.target_examples


def test_implicit_uses_the_prompt_writers_question_when_it_passes(tmp_path):
    writer = ScriptedEngine(lambda ins: [f"What is {ins.split(': ', 1)[1]}?"])
    answerer = ScriptedEngine(lambda ins: ["I am not sure."])
    ctx = make_ctx(tmp_path, "implicit", {"prompt_writer": writer, "answerer": answerer})
    records = run(ctx)
    assert_well_formed(records, "implicit")
    written = [r for r in records if r["provenance"]["prompt"]["by"] == "model-of-prompt_writer"]
    assert written, "no written question was accepted"
    for r in written:
        assert r["prompt"].startswith("What is ") and r["verdicts"]["prompt"]["passed"]
        assert r["provenance"]["explicit_form"] == f"Answer this question: {r['prompt']}"
    seeded = [r for r in records if r["provenance"]["prompt"]["by"] == "seed"]
    assert all(r["family"] in ("implicit_completion", "implicit_greeting") for r in seeded)
    # the answerer saw the explicit form
    assert any("Answer this question: What is " in p for p in answerer.seen)
    assert all(r["drop_reason"] == "verify:answer" or r["drop_reason"] == "verify:apt_reply" for r in records)


def test_generation_uses_paraphrased_instructions(tmp_path):
    writer = ScriptedEngine(lambda ins: ["Please " + ins.split(": ", 1)[1][0].lower() + ins.split(": ", 1)[1][1:]])
    answerer = ScriptedEngine(lambda ins: ["Sure."])
    ctx = make_ctx(tmp_path, "generation", {"prompt_writer": writer, "answerer": answerer})
    records = run(ctx)
    assert_well_formed(records, "generation")
    for r in records:
        assert r["provenance"]["prompt"]["by"] == "model-of-prompt_writer"
        assert r["prompt"].startswith("Please ") and r["provenance"]["prompt"]["seed_instruction"].lower() in r["prompt"].lower()


def test_evaluation_material_comes_from_the_answerer(tmp_path):
    def script(instruction: str) -> list[str]:
        q = instruction.split(": ", 1)[1]
        return [answers.get(q, "No idea.")]

    from cai_bootstrap.tasks.skills.constructed import material_fact

    ctx = make_ctx(tmp_path, "evaluation", ScriptedEngine(script))
    answers = {}
    for _, inst in candidates.train_pool(ctx):
        for req in inst.reference["case"].get("materials", {}).values():
            fact = material_fact(req)
            answers[req["question"]] = f"Well, {fact.sentence[0].lower()}{fact.sentence[1:]}"
    records = run(ctx)
    assert_well_formed(records, "evaluation")
    with_material = [r for r in records if any(isinstance(v, dict) and v.get("by") == "model-of-answerer"
                                               for v in r["provenance"]["prompt"]["material"].values())]
    assert with_material
    for r in with_material:
        assert "Well, " in r["prompt"] or r["family"] in ("is_helpful", "violates_principle")
    assert all(r["kept"] for r in records)


def test_revision_uses_critic_feedback_and_judge_for_ties(tmp_path):
    def reviser_script(instruction: str) -> list[str]:
        clean = cleans.get(instruction)
        return [clean, clean.rstrip(".") + "!", "garbage"] if clean else ["garbage"]

    judge = ScriptedEngine(lambda ins: ["A"], pick=1)
    critic = ScriptedEngine(lambda ins: ["The answer is wrong and misspelled, and the tone is rude; remove the filler, "
                                         "the caps and add the missing answer."])
    ctx = make_ctx(tmp_path, "revision", {"answerer": ScriptedEngine(lambda ins: ["no idea"]), "critic": critic,
                                          "reviser": ScriptedEngine(reviser_script), "judge": judge})
    cleans: dict[str, str] = {}
    for fam, inst in candidates.train_pool(ctx):
        cleans[inst.instruction] = inst.reference["clean"]
        if "{feedback}" in inst.reference["template"]:
            fb = fam.with_material(inst, {"feedback": critic.script("")[0]})
            cleans[fb.instruction] = inst.reference["clean"]
    records = run(ctx)
    assert_well_formed(records, "revision")
    kept = [r for r in records if r["kept"]]
    assert kept
    for r in kept:
        # the judge (not the trained model) broke the tie between two passing revisions
        assert r["verdicts"]["judge"]["by"] == "model-of-judge"
        assert r["provenance"]["judge"]["role"] == "judge"
        assert r["rejected"] == r["reference"]["flawed"]  # no failing revision: the flawed text is rejected
        assert r["provenance"]["rejected"]["by"] == "construction"
    assert judge.choices and all("Which revision is better, A or B?" in p for p in judge.choices)
    feedback = [r for r in records if r["family"] == "revise_with_feedback"]
    for r in feedback:
        assert r["provenance"]["prompt"]["feedback"]["by"] == "model-of-critic"
        assert "The answer is wrong and misspelled" in r["prompt"]


def test_unknown_option_is_a_config_error(tmp_path, tiny_engine):
    from cai_bootstrap.config import ConfigError

    ctx = make_ctx(tmp_path, "explicit", tiny_engine, oversampel=3)
    with pytest.raises(ConfigError, match="oversampel"):
        run(ctx)


def test_role_prompts_are_few_shot_in_the_project_format(tmp_path, tiny_engine):
    ctx = make_ctx(tmp_path, "explicit", tiny_engine, shots=2)
    fam, inst = candidates.train_pool(ctx)[0]
    prompt = candidates.role_prompt(ctx, fam.few_shot(), inst.instruction, inst.id)
    assert prompt.count("### Instruction:") == 3 and prompt.endswith("### Response:\n")
    assert re.search(re.escape(inst.instruction) + r"\n\n### Response:\n$", prompt)
    ctx0 = make_ctx(tmp_path / "z", "explicit", tiny_engine, shots=0)
    assert candidates.role_prompt(ctx0, fam.few_shot(), inst.instruction, inst.id).count("### Instruction:") == 1


def test_computed_answers_add_verified_sums_beyond_examples_and_resume_without_duplicates(tmp_path):
    from cai_bootstrap.stages.rounds import trained_records

    ctx = make_ctx(tmp_path, "implicit", ScriptedEngine(lambda _: ["I do not know."]),
                   computed_answers={"implicit_arithmetic": 5})
    records = run(ctx)
    computed = [r for r in records if r.get("computed")]
    assert len(computed) == 5 and all(r["kept"] and r["key"].endswith("~computed") for r in computed)
    assert all(r["provenance"]["chosen"]["by"] == "seed" for r in computed)
    for r in computed:  # the answer is the sum, and the family's verifier passed it
        a, op, b = r["reference"]["key"].split()
        assert str({"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]) in r["chosen"]
        assert r["verdicts"]["chosen"]["passed"]
    assert len({r["reference"]["key"] for r in computed}) == 5  # one per training topic
    # they train at every attempt, in addition to the stage's `examples`
    assert len(trained_records(records, ctx.spec, 0)) == 5 + sum(1 for r in records if r["kept"] and not r.get("computed"))
    # a resumed build writes none again
    again = make_ctx(tmp_path, "implicit", ScriptedEngine(lambda _: ["I do not know."]),
                     computed_answers={"implicit_arithmetic": 5})
    assert [r["key"] for r in run(again)] == [r["key"] for r in records]


@pytest.mark.parametrize("wanted, message", [({"implicit_question": 5}, "no computed answers"),
                                             ({"name_one": 5}, "not a family of the stage")])
def test_computed_answers_must_name_a_computing_family_of_the_stage(tmp_path, wanted, message):
    from cai_bootstrap.errors import ConfigError

    engine = ScriptedEngine(lambda _: ["unused"])
    ctx = make_ctx(tmp_path, "implicit", engine, computed_answers=wanted)
    with pytest.raises(ConfigError, match=message):
        run(ctx)
    assert engine.seen == []  # the error comes before any generation

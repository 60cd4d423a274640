"""The `task` stage builder and the `tasks` curriculum.

The builder runs on the tiny random model (records, provenance, resume) and on
scripted engines that play answerer / critic / reviser, to check the
critique -> revision -> chosen/rejected logic exactly.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
from rich.console import Console

from cai_bootstrap.config import ConfigError, RunSettings, SamplingSettings, StageSpec, load_curriculum
from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.stages import task_prompts as P
from cai_bootstrap.stages import task_stage as T
from cai_bootstrap.stages.context import RecordSink, StageContext
from cai_bootstrap.stages.training_facts import ALL_INSTANCES
from cai_bootstrap.tasks.types import TASK_TYPES, task_family

REQUIRED = ("key", "family", "attempt", "kept", "drop_reason", "prompt", "chosen", "rejected", "check", "verdicts",
            "provenance", "reference", "candidates", "init_response", "critique", "revision_response")


@lru_cache(maxsize=None)
def every_train_instance(family: str) -> tuple:
    """Every training instance of ``family``, to find the one a prompt asks."""
    return tuple(task_family(family).instances("train", ALL_INSTANCES, 0))


def make_ctx(tmp_path: Path, engines, *, families=("factual_qa",), examples=3, options=None, n=2, tokens=8,
             roles=None, role_names=None, settings=None, name="stage-0", chunk_size=4) -> StageContext:
    opts = {"oversample": 2.0, "shots": 1, "critic_shots": 1, "revise_n": 1, "critique_max_new_tokens": 8,
            "fallback_to_reference": True, **(options or {})}
    spec = StageSpec(
        name=name, kind="task", families=list(families), examples=examples, options=opts,
        sampling=SamplingSettings(n=n, max_new_tokens=tokens), roles=roles or {},
    )
    sink = RecordSink(tmp_path / "data.jsonl")
    names = role_names or {}
    return StageContext(
        spec=spec, settings=settings or RunSettings(curriculum="tasks", model="tiny", preset="tiny"),
        stage_dir=tmp_path, sink=sink,
        engine_for=(engines if callable(engines) else lambda role: engines),
        role_name=lambda role: names.get(role, "base:tiny"),
        console=Console(quiet=True), chunk_size=chunk_size,
    )


def build(ctx: StageContext) -> list[dict]:
    try:
        T.build(ctx)
    finally:
        ctx.sink.close()
    return list(iter_jsonl(ctx.sink.path))


# ------------------------------------------------------------------ tiny model


def test_records_are_well_formed_with_provenance(tmp_path: Path, tiny_engine) -> None:
    ctx = make_ctx(tmp_path, tiny_engine, examples=3)
    records = build(ctx)
    assert records and len({r["key"] for r in records}) == len(records)
    assert sum(r["kept"] for r in records) >= 3
    for r in records:
        assert all(f in r for f in REQUIRED), sorted(set(REQUIRED) - set(r))
        assert r["family"] == "factual_qa" and r["prompt"] and r["attempt"] == 0
        prov = r["provenance"]
        assert prov["prompt"]["by"] == "seed" and prov["prompt"]["source"] == "data/seeds/tasks_factual_qa.yaml"
        assert prov["candidates"]["by"] == "base:tiny" and prov["candidates"]["role"] == "answerer"
        # the base model answers few-shot; the record's prompt is the plain instruction
        assert prov["candidates"]["few_shot"] and prov["candidates"]["input"].count("### Instruction:") == 2
        assert r["prompt"] in prov["candidates"]["input"] and "###" not in r["prompt"]
        assert len(r["candidates"]) == 2
        if r["kept"]:
            assert r["verdicts"]["chosen"]["passed"] and r["chosen"]
            # the random model never passes: the tiny preset keeps the hand-made reference, marked as such
            assert prov["chosen"]["by"] == "seed" and r["chosen_from"] == "reference"
        if r["rejected"] is not None:
            assert not r["verdicts"]["rejected"]["passed"] and prov["rejected"]["by"] == "base:tiny"
            assert r["init_response"] == r["rejected"]
        if "critique" in prov:
            assert prov["critique"]["role"] == "critic" and "Critique the response" in prov["critique"]["input"]


def test_rerun_adds_nothing_and_a_cut_file_resumes_to_the_same_records(tmp_path: Path, tiny_engine) -> None:
    first = build(make_ctx(tmp_path / "a", tiny_engine, examples=5))
    again = build(make_ctx(tmp_path / "a", tiny_engine, examples=5))
    assert again == first  # a finished stage adds nothing, duplicates nothing

    # a run killed mid-chunk: only the first records (and half a line) reached the file
    cut = tmp_path / "b"
    cut.mkdir()
    lines = (tmp_path / "a" / "data.jsonl").read_text().splitlines(keepends=True)
    (cut / "data.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    from cai_bootstrap.jsonl import read_jsonl

    read_jsonl(cut / "data.jsonl", repair_tail=True)
    resumed = build(make_ctx(cut, tiny_engine, examples=5))
    key = lambda r: r["key"]
    assert sorted(resumed, key=key) == sorted(first, key=key)


def test_stage_zero_task_option_selects_the_task(tmp_path: Path, tiny_engine) -> None:
    ctx = make_ctx(tmp_path, tiny_engine, families=("summarization",), options={"task": "summarization"}, examples=2)
    records = build(ctx)
    assert records and {r["family"] for r in records} == {"summarization"}
    assert all(task_family("summarization").verify(
        next(i for i in every_train_instance("summarization") if i.id == r["key"]), r["chosen"]
    ).passed for r in records if r["kept"])


# ------------------------------------------------------------------ scripted roles


class Scripted(Engine):
    """Answers by role, from a script keyed on the role; records the prompts it was given."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.prompts: list[str] = []

    def generate(self, prompts, params: SamplingParams, *, progress=True, desc="generate"):
        self.prompts += prompts
        return [list(self.outputs(p, params))[: params.n] for p in prompts]


def test_failing_candidate_is_critiqued_and_a_verified_revision_is_chosen(tmp_path: Path) -> None:
    answerer = Scripted(lambda p, params: ["Bananas are yellow.", "I do not know."][: params.n])
    critic = Scripted(lambda p, params: ["The response does not answer the question; it should name the right answer."])

    def revise(prompt, params):
        inst = next(i for i in every_train_instance("factual_qa") if i.instruction in prompt.split("Request: ")[-1])
        return [f"The answer is {inst.reference['answers'][0]}."]

    reviser = Scripted(revise)
    engines = {"answerer": answerer, "critic": critic, "reviser": reviser}
    ctx = make_ctx(tmp_path, lambda role: engines[role], examples=2, options={"fallback_to_reference": False},
                   role_names={"answerer": "stage-0", "critic": "stage-0", "reviser": "stage-0"}, name="stage-1",
                   settings=RunSettings(curriculum="tasks", model="tiny", preset="quick"))
    records = build(ctx)
    assert records and all(r["kept"] for r in records)
    for r in records:
        assert r["chosen_from"] == "revision" and r["chosen"].startswith("The answer is ")
        # rejected = the critiqued original: the failing candidate the verifier scored highest
        assert r["rejected"] in ("Bananas are yellow.", "I do not know.") and r["init_response"] == r["rejected"]
        assert r["critique"].startswith("The response does not answer")
        prov = r["provenance"]
        assert {prov[k]["by"] for k in ("candidates", "critique", "revision", "chosen", "rejected")} == {"stage-0"}
        assert prov["chosen"]["role"] == "reviser" and prov["rejected"]["role"] == "answerer"
        # the critic was told the request, the response and which kind of rule failed, not the answer
        critic_input = prov["critique"]["input"].split("### Instruction:")[-1]
        assert r["rejected"] in critic_input and "An automatic check found this problem: the answer is wrong" in critic_input
        assert not any(a in critic_input for a in r["reference"]["answers"])
        assert r["critique"] in prov["revision"]["input"]
    # stage-0 was trained on factual_qa, so as answerer it is prompted zero-shot
    assert all(p.count("### Instruction:") == 1 for p in answerer.prompts)


def test_seed_answers_take_the_references_of_their_families_and_generate_nothing_for_them(tmp_path: Path) -> None:
    def answers(prompt, params):
        inst = next(i for i in every_train_instance("factual_qa") if i.instruction in prompt)
        return [f"{inst.reference['answers'][0]}."] * params.n

    answerer = Scripted(answers)
    ctx = make_ctx(tmp_path, answerer, families=("factual_qa", "summarization"), examples=4,
                   options={"fallback_to_reference": False, "seed_answers": ["summarization"], "oversample": 1.0})
    records = build(ctx)
    by_family = {f: [r for r in records if r["family"] == f] for f in ("factual_qa", "summarization")}
    assert by_family["factual_qa"] and by_family["summarization"]
    summaries = {i.id: i for i in every_train_instance("summarization")}
    for r in by_family["summarization"]:
        inst = summaries[r["key"]]
        assert r["kept"] and r["chosen"] == task_family("summarization").reference_output(inst)
        assert r["chosen_from"] == "reference" and r["provenance"]["chosen"]["by"] == "seed"
        assert r["candidates"] == [] and r["verdicts"]["chosen"]["passed"]
        assert set(REQUIRED) <= set(r)
    for r in by_family["factual_qa"]:
        assert r["chosen_from"] == "candidate" and r["provenance"]["chosen"]["role"] == "answerer"
    # the answerer was never asked to summarize
    assert len(answerer.prompts) == len(by_family["factual_qa"])
    assert not any("summar" in p.lower() for p in answerer.prompts)


def test_seed_answers_must_name_families_of_the_stage() -> None:
    from cai_bootstrap.stages.task_stage import TaskStage

    spec = StageSpec(name="stage-0", kind="task", families=["factual_qa"], examples=2,
                     options={"seed_answers": ["summarization"]})
    with pytest.raises(ConfigError, match="seed_answers"):
        TaskStage().check(spec)


def test_verified_candidate_is_chosen_when_the_revision_fails(tmp_path: Path) -> None:
    def answers(prompt, params):
        inst = next(i for i in every_train_instance("factual_qa") if i.instruction in prompt)
        return ["No idea, sorry.", f"{inst.reference['answers'][0]}."]

    engines = {
        "answerer": Scripted(answers),
        "critic": Scripted(lambda p, params: ["It gives no answer at all."]),
        "reviser": Scripted(lambda p, params: ["Still no idea."]),
    }
    records = build(make_ctx(tmp_path, lambda role: engines[role], examples=2, options={"fallback_to_reference": False}))
    for r in records:
        assert r["kept"] and r["chosen_from"] == "candidate" and r["rejected"] == "No idea, sorry."
        assert r["revisions"] and not r["revisions"][0]["passed"]


def test_nothing_verified_is_dropped_with_the_failing_check(tmp_path: Path) -> None:
    engines = Scripted(lambda p, params: ["Purple."] * params.n)
    records = build(make_ctx(tmp_path, engines, examples=2, options={"fallback_to_reference": False}))
    assert records and not any(r["kept"] for r in records)
    assert all(r["drop_reason"] == "verify:answer" and r["chosen"] is None for r in records)


def test_family_share_caps_one_family(tmp_path: Path) -> None:
    def answers(prompt, params):
        # right only for factual_qa, so it would fill every example on its own
        for i in every_train_instance("factual_qa"):
            if i.instruction in prompt:
                return [f"{i.reference['answers'][0]}."] * params.n
        return ["?"] * params.n

    ctx = make_ctx(tmp_path, Scripted(answers), families=("factual_qa", "translation"), examples=4,
                   options={"fallback_to_reference": False, "max_family_share": 0.5, "revise_when": "never"})
    records = build(ctx)
    kept_qa = [r for r in records if r["kept"] and r["family"] == "factual_qa"]
    assert 2 <= len(kept_qa) <= 2 + ctx.chunk_size
    assert any(r["drop_reason"] == "family_quota" for r in records)


def test_answerer_prompting_follows_what_it_was_trained_on(tmp_path: Path) -> None:
    settings = RunSettings(curriculum="tasks", model="tiny", preset="tiny")
    ctx = make_ctx(tmp_path, Scripted(lambda p, params: ["x"]), families=("factual_qa", "summarization", "explanation"),
                   role_names={"answerer": "stage-0"}, name="stage-1", settings=settings)
    opts = P.task_options(ctx)
    trained = P.answerer_trained_on(ctx)
    assert trained == {"factual_qa"}
    assert not P.few_shot_for(ctx, opts, task_family("factual_qa"), trained)
    assert P.few_shot_for(ctx, opts, task_family("summarization"), trained)
    ctx.sink.close()


@pytest.mark.parametrize("options, message", [
    ({"task": "summarization"}, "families are ['factual_qa']"),
    ({"task": "poetry"}, "not a task type"),
    ({"tsk": "factual_qa"}, "tsk"),
])
def test_bad_options_are_config_errors(tmp_path: Path, options, message) -> None:
    ctx = make_ctx(tmp_path, Scripted(lambda p, params: ["x"]), options=options)
    with pytest.raises(ConfigError, match=re.escape(message)):
        T.stage_families(ctx, P.task_options(ctx))
    ctx.sink.close()


# ------------------------------------------------------------------ the curriculum


@pytest.mark.parametrize("preset", ["tiny", "quick", "full"])
def test_tasks_curriculum_validates_for_every_preset(preset: str) -> None:
    cur = load_curriculum("tasks", preset)
    s0, s1, s2 = cur.stages[:3]
    assert [s.name for s in cur.stages[:3]] == ["stage-0", "stage-1", "stage-2"]
    assert all(s.kind == "task" for s in (s0, s1, s2))
    assert s0.families == [s0.options["task"]] == ["factual_qa"] and s0.threshold == 0.90
    assert s0.training.method == "sft+dpo" and s0.roles == {"answerer": "base", "critic": "base", "reviser": "base"}
    assert s1.families == ["factual_qa", "summarization", "explanation"] and s1.threshold == 0.85 and s1.per_family_threshold
    assert set(s1.roles.values()) == {"stage-0", "base"} and set(s2.roles.values()) == {"stage-1", "base"}
    assert s1.roles["rival_answerer"] == s2.roles["rival_answerer"] == "base"  # only the answerer probe's rival
    assert s2.families == list(TASK_TYPES) and s2.threshold == 0.80 and not s2.per_family_threshold
    quant = [s.training.lora.quantization for s in (s0, s1, s2)]
    assert quant == (["4bit", "4bit", "8bit"] if preset == "full" else ["none"] * 3)
    if preset == "full":
        assert all(100 <= s.examples <= 500 for s in (s0, s1, s2))
    for s in (s0, s1, s2):
        opts = P.TaskOptions.model_validate(s.options)  # every preset's options are valid
        assert opts.fallback_to_reference is (preset == "tiny")
        assert s.sampling.max_new_tokens >= max(task_family(f).max_new_tokens for f in s.families) or preset == "tiny"


@pytest.mark.parametrize("task", ["summarization", "explanation", "code_generation"])
def test_task_override_changes_stage_zero(task: str) -> None:
    cur = load_curriculum("tasks", "quick", {"stage-0": {"families": [task], "options": {"task": task}}})
    assert cur.stages[0].families == [task] and cur.stages[0].options["task"] == task
    assert cur.stages[1].families == ["factual_qa", "summarization", "explanation"]


def test_record_json_is_plain(tmp_path: Path) -> None:
    engines = Scripted(lambda p, params: ["Purple."] * params.n)
    for r in build(make_ctx(tmp_path, engines, examples=1, options={"fallback_to_reference": False})):
        assert json.loads(json.dumps(r)) == r


def test_plan_is_prefix_stable_and_reuses_short_material(tmp_path: Path) -> None:
    engines = Scripted(lambda p, params: ["x"])
    small = make_ctx(tmp_path / "s", engines, families=("factual_qa", "summarization"), examples=10)
    big = make_ctx(tmp_path / "b", engines, families=("factual_qa", "summarization"), examples=2000)
    p_small = [i.id for _, i in T.plan(small, P.task_options(small), T.stage_families(small, P.task_options(small)))]
    p_big = [i.id for _, i in T.plan(big, P.task_options(big), T.stage_families(big, P.task_options(big)))]
    assert p_big[: len(p_small)] == p_small and len(set(p_big)) == len(p_big)
    # 1,600 summarization cases (400 passages x 4 templates), more wanted from it: a second pass with new keys
    assert any(k.startswith("summarization/") and k.endswith("#p1") for k in p_big)
    for ctx in (small, big):
        ctx.sink.close()


def test_critic_hint_hides_the_reference_unless_asked() -> None:
    i = next(x for x in task_family("factual_qa").instances("heldout", 100, 0) if "Australia" in x.instruction)
    v = task_family("factual_qa").verify(i, "Sydney.")
    assert "Canberra" in v.reason
    assert P.critic_hint(v, "check") == "the answer is wrong or missing"
    assert "Canberra" in P.critic_hint(v, "reason") and P.critic_hint(v, "none") == ""
    length = task_family("factual_qa").verify(i, "Canberra " + "is a city " * 20)
    assert P.critic_hint(length, "check") == length.reason  # a reason without the reference is passed on



def test_answerer_probe_gives_a_family_to_the_rival_only_when_it_passes_more(tmp_path: Path) -> None:
    """`options.answerer_probe` (stages/answerer_choice.py): the stage model answers factual QA right and
    translation wrong, the rival (base) the other way round; each family's first data comes from the
    model that passed more probe samples, provenance names it, and the choice is read back on resume."""
    def asked(prompt: str):
        last = prompt.split("### Instruction:\n")[-1]
        for fam in ("factual_qa", "translation"):
            for inst in every_train_instance(fam):
                if inst.instruction in last:
                    return fam, inst
        raise AssertionError(prompt)

    def right(family: str):
        def answers(prompt, params):
            fam, inst = asked(prompt)
            good = inst.reference["answers"][0] + "." if fam == "factual_qa" else inst.reference["ref"]
            return [good if fam == family else "Purple."] * params.n
        return answers

    stage, base = Scripted(right("factual_qa")), Scripted(right("translation"))
    engines = {"answerer": stage, "critic": stage, "reviser": stage, "rival_answerer": base}
    names = {"answerer": "stage-0", "critic": "stage-0", "reviser": "stage-0", "rival_answerer": "base"}
    options = {"fallback_to_reference": False, "revise_when": "never", "answerer_probe": 2, "answerer_probe_samples": 2}

    def ctx_():
        return make_ctx(tmp_path, lambda role: engines[role], families=("factual_qa", "translation"), examples=4,
                        options=options, roles={"rival_answerer": "base"}, role_names=names, name="stage-1",
                        settings=RunSettings(curriculum="tasks", model="tiny", preset="quick"))

    records = build(ctx_())
    choice = json.loads((tmp_path / "answerer_choice.json").read_text())
    assert {f: row["model"] for f, row in choice["families"].items()} == {"factual_qa": "stage-0", "translation": "base"}
    assert choice["families"]["translation"]["passed"] == {"stage-0": 0, "base": 4}
    assert {r["family"] for r in records if r["kept"]} == {"factual_qa", "translation"}
    for r in records:
        assert r["provenance"]["candidates"]["by"] == ("base" if r["family"] == "translation" else "stage-0")
    # resumed from scratch: the stored choice is used, so neither model is probed on the other's family again
    (tmp_path / "data.jsonl").unlink()
    stage.prompts.clear()
    base.prompts.clear()
    build(ctx_())
    assert {asked(p)[0] for p in stage.prompts} == {"factual_qa"}
    assert {asked(p)[0] for p in base.prompts} == {"translation"}


def test_answerer_probe_without_a_rival_is_a_config_error() -> None:
    spec = StageSpec(name="stage-1", kind="task", families=["factual_qa"], examples=2,
                     options={"answerer_probe": 4})
    with pytest.raises(ConfigError, match="rival_answerer"):
        T.TaskStage().check(spec)


@pytest.mark.parametrize("task, cap", [("summarization", 96), ("explanation", 160), ("factual_qa", 64)])
def test_task_flag_gives_stage_0_the_token_cap_its_answers_need(task: str, cap: int) -> None:
    """At `quick`, stage 0's 64 tokens would cut a summary (72) or an explanation (128) short."""
    from cai_bootstrap.cli.runs import task_stage_override

    spec = load_curriculum("tasks", "quick", {"stage-0": task_stage_override(task, "quick")}).stages[0]
    assert spec.families == [task] and spec.sampling.max_new_tokens == cap
    assert P.token_cap(spec, task_family(task)) <= cap
    tiny = load_curriculum("tasks", "tiny", {"stage-0": task_stage_override(task, "tiny")}).stages[0]
    assert tiny.sampling.max_new_tokens == 16  # tests stay fast

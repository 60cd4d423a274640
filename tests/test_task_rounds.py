"""Rounds of self-training, the validation split and the known-facts probe on `tasks` stages
(tiny model, real pipeline; the skills version is tests/test_rounds.py, whose helpers these reuse)."""

from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from cai_bootstrap.config import RunSettings
from cai_bootstrap.evaluation.heldout import heldout_instances
from cai_bootstrap.evaluation.knowledge import fact_of
from cai_bootstrap.jsonl import read_json, read_jsonl
from cai_bootstrap.stages import rounds
from cai_bootstrap.stages import task_stage as T
from cai_bootstrap.stages.context import RecordSink, StageContext
from cai_bootstrap.stages.registry import get_kind, load_curriculum
from cai_bootstrap.stages.task_prompts import task_options
from cai_bootstrap.stages.validation import topic_key, validation_ids, validation_topics
from cai_bootstrap.tasks.types import TASK_TYPES
from tests.test_rounds import _run_to_end, kill_mid_round_then_resume

# stage-0 (factual_qa, sft+dpo at tiny: the DPO phase trains on round records too), 2 small rounds
ROUNDS = ("stage_overrides={stage-0: {rounds: {count: 2, instances: 4, samples: 2, keep: 2, reuse: true}, "
          "validation: 1, heldout_known: true, heldout: 3}}")
ARGS = ("run", "--curriculum", "tasks", "--preset", "tiny", "--stages", "stage-0", "--no-progress", "--set", ROUNDS)


@pytest.fixture(scope="module")
def task_rounds_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("task-rounds") / "run"
    _run_to_end(*ARGS, "--out", str(out))
    return out


def _ctx(tmp_path: Path, overrides: dict, stage: int = 0) -> StageContext:
    spec = load_curriculum("tasks", "tiny", overrides).stages[stage]
    return StageContext(spec=spec, settings=RunSettings(curriculum="tasks", preset="tiny"), stage_dir=tmp_path,
                        sink=RecordSink(tmp_path / "data.jsonl"), engine_for=lambda role: None,
                        role_name=lambda role: role, console=Console(quiet=True))


def test_task_rounds_write_records_named_by_round_and_model(task_rounds_run):
    rows = read_jsonl(task_rounds_run / "stage-0" / "data.jsonl")
    by_round = {r: [row for row in rows if (row.get("round") or 0) == r] for r in (0, 1, 2)}
    assert all(by_round.values()), {r: len(v) for r, v in by_round.items()}
    for r in (1, 2):
        assert {row["instance"] for row in by_round[r]}.__len__() == 4
        for row in by_round[r]:
            assert row["family"] == "factual_qa"
            assert row["round_model"] == {"stage": "stage-0", "attempt": r - 1,
                                          "adapter": f"stage-0/train/attempt-{r - 1}/adapter"}
            assert row["key"].startswith(row["instance"] + f"@r{r}#")
            for side in ("chosen", "rejected"):
                prov = row["provenance"].get(side)
                if prov and prov.get("by") != "seed":
                    assert prov["by"] == "stage-0" and prov["model_attempt"] == r - 1
    metrics = read_json(task_rounds_run / "stage-0" / "metrics.json")
    assert [h["attempt"] for h in metrics["history"]] == [0, 1, 2]
    assert all(h["validation"] is not None for h in metrics["history"])
    assert [s["round"] for s in metrics["rounds"]] == [1, 2]
    # each round retrained from the parent (the base) on the union, SFT then DPO (tiny stage 0)
    for attempt in (0, 1, 2):
        assert (task_rounds_run / "stage-0" / "train" / f"attempt-{attempt}" / "adapter").is_dir()
    lineage = read_json(task_rounds_run / "stage-0" / "model" / "lineage.json")
    assert lineage["adapters"] == ["stage-0/model/adapter"] and lineage["trained_from"] == "base"


def test_task_validation_split_never_overlaps_training_topics_or_heldout(task_rounds_run, tmp_path):
    spec = load_curriculum("tasks", "tiny", {"stage-0": {"validation": 1}}).stages[0]
    topics = validation_topics(spec, 0)
    assert len(topics) == len(validation_ids(spec, 0)) == 1
    rows = read_jsonl(task_rounds_run / "stage-0" / "data.jsonl")
    trained = {row["topic"] for row in rows if not row.get("round")}
    ctx = _ctx(tmp_path, {"stage-0": {"rounds": {"count": 2, "instances": 4, "reuse": True}, "validation": 1}})
    round_topics = {topic_key(i) for r in (1, 2) for _, i in rounds.round_instances(ctx, r, get_kind("task"))}
    assert trained and not {f"factual_qa:{t}" for t in trained} & topics and not round_topics & topics
    held = {i.id for i in heldout_instances(spec.families, 60, 0)}
    assert not validation_ids(spec, 0) & held


def test_task_plan_and_rounds_leave_validation_topics_out_for_every_task_type(tmp_path):
    overrides = {"stage-2": {"validation": 4, "examples": 40, "rounds": {"count": 2, "instances": 40, "reuse": True}}}
    spec = load_curriculum("tasks", "tiny", overrides).stages[2]
    ctx = StageContext(spec=spec, settings=RunSettings(curriculum="tasks", preset="tiny"), stage_dir=tmp_path,
                       sink=RecordSink(tmp_path / "data.jsonl"), engine_for=lambda role: None,
                       role_name=lambda role: role, console=Console(quiet=True))
    held = validation_topics(spec, 0)
    assert len(held) == 4 * len(TASK_TYPES)
    first = T.plan(ctx, task_options(ctx), T.stage_families(ctx, task_options(ctx)))
    assert first and not {topic_key(i) for _, i in first} & held
    for r in (1, 2):
        items = rounds.round_instances(ctx, r, get_kind("task"))
        ids = [i.id for _, i in items]
        assert len(ids) == len(set(ids)) == 40  # reuse fills every round, never an instance twice in one
        assert not {topic_key(i) for _, i in items} & held


def test_kill_mid_task_round_then_resume_loses_and_duplicates_nothing(tmp_path, task_rounds_run):
    kill_mid_round_then_resume(ARGS, tmp_path / "run", "stage-0", task_rounds_run)


def test_factual_qa_heldout_known_probes_questions(task_rounds_run):
    plan = read_json(task_rounds_run / "knowledge" / "heldout.json")["stage-0"]
    assert plan["cases"] == 3 and plan["facts_probed"] >= 3
    probes = read_jsonl(task_rounds_run / "knowledge" / "base.jsonl")
    assert probes and all(p["question"] and p["prefix"] == "" for p in probes)  # question form only
    assert all(fact_of(i) for i in heldout_instances(["factual_qa"], 30, 0))
    metrics = read_json(task_rounds_run / "stage-0" / "metrics.json")
    split = metrics["heldout_by_knowledge"]
    assert split["known"]["n"] + split["unknown"]["n"] == 3 and split["no_fact"]["n"] == 0


def test_tasks_standard_preset_has_the_specification_counts():
    cur = load_curriculum("tasks", "standard")
    s0, s1, s2, s3 = cur.stages
    assert s0.families == ["factual_qa"] and s0.examples >= 300
    assert len(s1.families) == 3 and s1.examples >= 200 * 3 and s1.options["max_family_share"] * s1.examples >= 200
    assert len(s2.families) == 10 and s2.examples >= 100 * 10 and s2.options["max_family_share"] * s2.examples >= 100
    for s in (s0, s1, s2):
        assert s.rounds.count >= 2 and s.rounds.reuse and s.retry.max_retries == 0
        assert s.validation >= 4 and s.heldout >= 30
        assert s.heldout_known == "majority"
        assert s.train_known == {"factual_qa": "majority"}
        assert s.sampling.max_new_tokens >= max(T.family_by_name(f).max_new_tokens for f in s.families)
        # every task type has at least `heldout` distinct held-out cases
        for fam in s.families:
            assert len({i.id for i in T.family_by_name(fam).instances("heldout", s.heldout, 0)}) == s.heldout
    assert s0.training.method == "sft"  # the stage-0 DPO phase is an option (see tasks.yaml)
    assert s3.kind == "constitutional" and s3.rounds.count == 0 and s3.validation == 0 and not s3.train_known
    # the quick preset is unchanged by it: no rounds, no validation split
    quick = load_curriculum("tasks", "quick").stages
    assert all(s.rounds.count == 0 and s.validation == 0 and not s.heldout_known and not s.train_known for s in quick)


def _probe_rows(instances, known_every: int = 2) -> list[dict]:
    """Probe-cache rows for the facts of ``instances``: every ``known_every``-th fact right in 12 of 16
    samples, the others in 3 of 16 (known by 'sampled', not by 'majority')."""
    facts = sorted({fact_of(i).id: fact_of(i) for i in instances}.items())
    return [{"fact": f, "prefix": "", "question": "q", "answers": fact.answers, "terms": fact.terms, "known": True,
             "greedy_correct": False, "hits": 12 if n % known_every == 0 else 3, "k": 16, "samples": []}
            for n, (f, fact) in enumerate(facts)]


def test_knows_by_majority_needs_half_the_samples():
    from cai_bootstrap.evaluation.knowledge import FactProbe

    probe = FactProbe(fact="f", prefix="", answers=["a"], known=True, greedy_correct=True, hits=7, k=16, samples=[])
    assert probe.knows("sampled") and not probe.knows("majority")
    assert probe.model_copy(update={"hits": 8}).knows("majority")
    assert not probe.model_copy(update={"hits": 0, "k": 0}).knows("majority")


def test_train_known_leaves_facts_the_base_model_hardly_knows_out_of_every_training_pool(tmp_path):
    from cai_bootstrap.jsonl import write_jsonl
    from cai_bootstrap.stages.heldout_sets import PROBE_FILE
    from cai_bootstrap.stages.training_facts import TRAIN_PLAN_FILE, _training_facts, plan_known_training

    run = tmp_path / "run"
    ctx = _ctx(run / "stage-0", {"stage-0": {"train_known": "majority", "validation": 1, "examples": 40,
                                             "rounds": {"count": 2, "instances": 30, "reuse": True}}})
    pool = [inst for inst, _ in _training_facts(ctx.spec, 0)]
    write_jsonl(run / PROBE_FILE, _probe_rows(pool))  # the probe is cached: no engine is needed
    plan = plan_known_training(run, [ctx.spec], 0, base=None, progress=False)["stage-0"]
    hardly = {fact_of(i)[0] for i in pool} - {r["fact"] for r in _probe_rows(pool) if r["hits"] >= 8}
    assert plan["criterion"] == "majority" and plan["facts_left_out"] == len(hardly) > 0
    assert plan["facts_probed"] == len({fact_of(i)[0] for i in pool})
    opts = task_options(ctx)
    first = T.plan(ctx, opts, T.stage_families(ctx, opts))
    later = rounds.round_instances(ctx, 1, get_kind("task")) + rounds.round_instances(ctx, 2, get_kind("task"))
    assert first and later
    assert not {fact_of(i)[0] for _, i in first + later} & hardly
    # the validation split asks known facts only, like training and held-out
    from cai_bootstrap.stages.training_facts import stage_validation

    val = stage_validation(run, ctx.spec, 0)
    assert len(val) == 1 and not {fact_of(i)[0] for i in val} & hardly
    assert not {topic_key(i) for i in val} & {topic_key(i) for _, i in first + later}
    # 'sampled' keeps every fact that was ever right: nothing is left out, and the plan is redone for it
    ctx.spec.train_known = "sampled"
    assert plan_known_training(run, [ctx.spec], 0, base=None, progress=False)["stage-0"]["facts_left_out"] == 0
    assert read_json(run / TRAIN_PLAN_FILE)["stage-0"]["criterion"] == "sampled"


def test_train_known_refuses_a_stage_whose_facts_the_base_model_knows_none_of(tmp_path):
    from cai_bootstrap.errors import ConfigError
    from cai_bootstrap.jsonl import write_jsonl
    from cai_bootstrap.stages.heldout_sets import PROBE_FILE
    from cai_bootstrap.stages.training_facts import _training_facts, plan_known_training

    spec = load_curriculum("tasks", "tiny", {"stage-0": {"train_known": "majority"}}).stages[0]
    pool = [inst for inst, _ in _training_facts(spec, 0)]
    write_jsonl(tmp_path / PROBE_FILE, [{**r, "hits": 1} for r in _probe_rows(pool)])
    with pytest.raises(ConfigError, match="knows none of the"):
        plan_known_training(tmp_path, [spec], 0, base=None, progress=False)


def test_a_heldout_plan_of_another_criterion_is_redone(tmp_path):
    from cai_bootstrap.jsonl import write_jsonl
    from cai_bootstrap.stages.heldout_sets import PROBE_FILE, plan_known_heldout, stage_heldout

    spec = load_curriculum("tasks", "tiny", {"stage-0": {"heldout_known": True, "heldout": 6}}).stages[0]
    from cai_bootstrap.evaluation.heldout import KNOWN_POOL_FACTOR

    pool = heldout_instances(spec.families, 6 * KNOWN_POOL_FACTOR, 0)
    write_jsonl(tmp_path / PROBE_FILE, _probe_rows(pool))
    assert plan_known_heldout(tmp_path, [spec], 0, None, progress=False)["stage-0"]["unknown_facts"] == []
    spec.heldout_known = "majority"
    plan = plan_known_heldout(tmp_path, [spec], 0, None, progress=False)["stage-0"]
    assert plan["criterion"] == "majority" and plan["unknown_facts"]
    chosen = {fact_of(i)[0] for i in stage_heldout(tmp_path, spec, 0)}
    assert len(stage_heldout(tmp_path, spec, 0)) == 6 and not chosen & set(plan["unknown_facts"])
    assert plan["pool_factor"] == KNOWN_POOL_FACTOR
    # a plan written before the pool factor was recorded keeps choosing among 4 x the cases, as its run did
    from cai_bootstrap.jsonl import atomic_write_json
    from cai_bootstrap.stages.heldout_sets import PLAN_FILE

    atomic_write_json(tmp_path / PLAN_FILE, {"stage-0": {k: v for k, v in plan.items() if k != "pool_factor"}})
    assert stage_heldout(tmp_path, spec, 0) == heldout_instances(spec.families, 6, 0, set(plan["unknown_facts"]), 4)


def test_split_by_weight_is_proportional_capped_and_even_without_weights():
    assert rounds.split_by_weight(150, {"qa": 0, "sum": 146, "expl": 66}, {"qa": 99, "sum": 99, "expl": 99}) == {
        "qa": 0, "sum": 99, "expl": 51}  # sum capped at its 99 fresh instances, the rest to expl
    assert rounds.split_by_weight(10, {"a": 3, "b": 1}, {"a": 50, "b": 50}) == {"a": 8, "b": 2}
    assert rounds.split_by_weight(6, {"a": 0, "b": 0, "c": 0}, {"a": 9, "b": 9, "c": 9}) == {"a": 2, "b": 2, "c": 2}
    assert rounds.split_by_weight(6, {"a": 5, "b": 0}, {"a": 2, "b": 9}) == {"a": 2, "b": 4}  # a full: b takes the rest


def _kept(family: str, n: int, round_index: int = 0, start: int = 0) -> list[dict]:
    return [_record(f"{family}/{start + j}@r{round_index}", family, f"{family}/{start + j}", round_index)
            for j in range(n)]


def _record(key: str, family: str, instance: str, round_index: int) -> dict:
    return {"key": key, "family": family, "prompt": "p", "kept": True, "chosen": "x", "provenance": {},
            "instance": instance, **({"round": round_index} if round_index else {})}


def test_shortfall_rounds_give_instances_to_the_families_short_of_records(tmp_path):
    """`rounds.allocate: shortfall` (tasks standard): a family with its share of trained records gets no
    round instances, the others get them in proportion to what they lack; round 2 recomputes round 1's
    split from the records written before it, so the two rounds never share an instance."""
    from collections import Counter

    ctx = _ctx(tmp_path, {"stage-1": {"rounds": {"count": 2, "instances": 12, "reuse": True, "allocate": "shortfall"},
                                      "examples": 30}}, stage=1)
    for record in _kept("factual_qa", 12) + _kept("summarization", 1) + _kept("explanation", 6):
        ctx.sink.write(record)  # goal 10 a family: short by 0, 9 and 4
    first = rounds.round_instances(ctx, 1, get_kind("task"))
    assert Counter(f.name for f, _ in first) == {"summarization": 8, "explanation": 4}
    for fam, inst in first[:5]:  # round 1 kept records: summarization is still the shortest
        ctx.sink.write(_record(f"{inst.id}@r1#0", fam.name, inst.id, 1))
    again = rounds.round_instances(ctx, 1, get_kind("task"))
    assert [i.id for _, i in again] == [i.id for _, i in first]  # written round-1 records do not move round 1
    second = rounds.round_instances(ctx, 2, get_kind("task"))
    assert "factual_qa" not in {f.name for f, _ in second} and len(second) == 12
    assert not {i.id for _, i in first} & {i.id for _, i in second}


def test_explanation_subjects_are_probed_in_prose_and_replaced_per_family_criterion(tmp_path):
    """Explanation cases carry their subject as the fact; a per-family mapping applies 'sampled' to
    them and 'majority' to factual QA, and a family it does not name keeps its first cases."""
    from cai_bootstrap.evaluation.heldout import KNOWN_POOL_FACTOR
    from cai_bootstrap.jsonl import write_jsonl
    from cai_bootstrap.stages.heldout_sets import PROBE_FILE, plan_known_heldout, stage_heldout

    families = ["factual_qa", "summarization", "explanation"]
    spec = load_curriculum("tasks", "tiny", {"stage-1": {
        "families": families, "heldout": 4,
        "heldout_known": {"factual_qa": "majority", "explanation": "sampled"}}}).stages[1]
    assert spec.known_criterion("heldout_known", "explanation") == "sampled"
    assert spec.known_criterion("heldout_known", "summarization") is None
    pool = heldout_instances(families, 4 * KNOWN_POOL_FACTOR, 0)
    explanation = [i for i in pool if i.family == "explanation"]
    fact = fact_of(explanation[0])
    assert fact.terms == explanation[0].reference["terms"] and fact.prefix.startswith("Explanation of ")
    assert fact.id == f"explanation/{explanation[0].reference['subject']}"
    # the first explanation subject never named by the base model (0 hits), the others in 3 of 8 samples
    rows = _probe_rows([i for i in pool if fact_of(i)])
    first = fact.id
    rows = [{**r, "hits": 0, "known": False, "k": 8} if r["fact"] == first else r for r in rows]
    write_jsonl(tmp_path / PROBE_FILE, rows)
    plan = plan_known_heldout(tmp_path, [spec], 0, None, progress=False)["stage-1"]
    assert plan["criterion"] == {"factual_qa": "majority", "explanation": "sampled"}
    weak_qa = {r["fact"] for r in rows if r["hits"] < 8 and r["fact"].startswith("factual_qa")}
    assert set(plan["unknown_facts"]) == weak_qa | {first}
    chosen = stage_heldout(tmp_path, spec, 0)
    assert Counter(i.family for i in chosen) == {name: 4 for name in families}
    assert first not in {fact_of(i).id for i in chosen if i.family == "explanation"}
    assert [i.id for i in chosen if i.family == "summarization"] == [
        i.id for i in heldout_instances(["summarization"], 4, 0)]


def test_the_explanation_probe_counts_samples_that_name_every_key_term_group(tmp_path):
    """probe_facts on explanation cases with a real (tiny) model: 8 prose samples a subject, and the
    hits are exactly the samples that pass the verifier's key_terms check."""
    from cai_bootstrap.engines.transformers_engine import TransformersEngine
    from cai_bootstrap.evaluation.knowledge import IDEA_SAMPLES, probe_facts
    from cai_bootstrap.tasks import checks

    from cai_bootstrap.tasks import get_family

    instances = get_family("explanation").instances("heldout", 3, 0)
    engine = TransformersEngine.from_ref("tiny")
    probes = probe_facts(engine, instances, tmp_path / "base.jsonl", seed=0)
    assert len(probes) == len({fact_of(i).id for i in instances})
    for inst in instances:
        probe = probes[fact_of(inst).id]
        assert probe.k == IDEA_SAMPLES == len(probe.samples) and probe.terms == inst.reference["terms"]
        assert probe.hits == sum(checks.check_groups(t, probe.terms, "key_terms").ok for t in probe.samples)
        assert probe.known == (probe.hits > 0) and not probe.greedy_correct
    # cached: a second call reads the file and asks the engine nothing
    assert probe_facts(None, instances, tmp_path / "base.jsonl") == probes


def test_validation_known_draws_validation_from_known_subjects_and_training_keeps_the_rest(tmp_path):
    from cai_bootstrap.jsonl import write_jsonl
    from cai_bootstrap.stages.heldout_sets import PROBE_FILE
    from cai_bootstrap.stages.training_facts import (
        TRAIN_PLAN_FILE, _training_facts, plan_known_training, stage_validation, withheld_topics,
    )

    run = tmp_path / "run"
    overrides = {"stage-0": {"families": ["explanation"], "options": {"task": "explanation"}, "validation": 3,
                             "validation_known": {"explanation": "majority"}, "examples": 40}}
    ctx = _ctx(run / "stage-0", overrides)
    pool = [inst for inst, _ in _training_facts(ctx.spec, 0, "validation_known")]
    assert pool and not _training_facts(ctx.spec, 0)  # train_known names no family: nothing left out of training
    write_jsonl(run / PROBE_FILE, _probe_rows(pool))  # cached probe: no engine needed
    plan = plan_known_training(run, [ctx.spec], 0, base=None, progress=False)["stage-0"]
    known = {r["fact"] for r in _probe_rows(pool) if r["hits"] >= 8}
    assert plan["validation_criterion"] == {"explanation": "majority"} and "criterion" not in plan
    assert len(plan["validation_unknown_topics"]) == len({fact_of(i).id for i in pool} - known) > 0
    val = stage_validation(run, ctx.spec, 0)
    assert len(val) == 3 and {fact_of(i).id for i in val} <= known
    # training still draws subjects the base model does not know, never a validation topic
    opts = task_options(ctx)
    first = T.plan(ctx, opts, T.stage_families(ctx, opts))
    assert {fact_of(i).id for _, i in first} - known
    assert not {topic_key(i) for i in val} & {topic_key(i) for _, i in first}
    assert {topic_key(i) for i in val} <= withheld_topics(run, ctx.spec, 0)
    # written once: planning again changes nothing
    before = read_json(run / TRAIN_PLAN_FILE)
    plan_known_training(run, [ctx.spec], 0, base=None, progress=False)
    assert read_json(run / TRAIN_PLAN_FILE) == before

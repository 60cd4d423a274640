"""Self-training rounds inside a stage and the validation split (tiny model, real pipeline)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cai_bootstrap.config import ConfigError
from cai_bootstrap.evaluation.heldout import heldout_instances
from cai_bootstrap.jsonl import read_json, read_jsonl
from cai_bootstrap.stages.registry import load_curriculum
from cai_bootstrap.stages.validation import (
    topic_key,
    validation_ids,
    validation_instances,
    validation_phrasing,
    validation_topics,
)
from cai_bootstrap.tasks import bank, get_family

ROUNDS = "stage_overrides={stage-1: {rounds: {count: 2, instances: 4, samples: 2, keep: 2}, validation: 1}}"
ARGS = ("run", "--preset", "tiny", "--stages", "stage-1", "--no-progress", "--set", ROUNDS)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cai_bootstrap.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def _run_to_end(*args: str) -> str:
    proc = _cli(*args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rounds") / "run"
    _run_to_end(*ARGS, "--out", str(out))
    return out


def test_rounds_write_records_named_by_the_model_that_wrote_them(rounds_run):
    rows = read_jsonl(rounds_run / "stage-1" / "data.jsonl")
    by_round = {r: [row for row in rows if (row.get("round") or 0) == r] for r in (0, 1, 2)}
    assert all(by_round.values()), {r: len(v) for r, v in by_round.items()}
    for r in (1, 2):
        for row in by_round[r]:
            assert row["round_model"] == {"stage": "stage-1", "attempt": r - 1,
                                          "adapter": f"stage-1/train/attempt-{r - 1}/adapter"}
            assert row["key"].startswith(row["instance"] + f"@r{r}#")
            if row.get("rejected"):
                assert row["provenance"]["rejected"]["by"] == "stage-1"
                assert row["provenance"]["rejected"]["model_attempt"] == r - 1
    # fresh instances: no round reuses an instance of the first data or of another round
    first = {row["key"] for row in by_round[0]}
    seen = [{row["instance"] for row in by_round[r]} for r in (1, 2)]
    assert not (seen[0] & seen[1]) and not ((seen[0] | seen[1]) & first)
    metrics = read_json(rounds_run / "stage-1" / "metrics.json")
    assert [h["attempt"] for h in metrics["history"]] == [0, 1, 2]
    assert all(h["validation"] is not None for h in metrics["history"])
    assert [s["round"] for s in metrics["rounds"]] == [1, 2]
    assert all(s["instances"] == 4 and s["samples"] == 2 for s in metrics["rounds"])


def test_each_round_trains_on_the_union_from_the_parent(rounds_run):
    for attempt in (0, 1, 2):
        assert (rounds_run / "stage-1" / "train" / f"attempt-{attempt}" / "adapter" / "adapter_config.json").exists()
    # the installed model is one adapter on the base: rounds never stack on each other
    lineage = read_json(rounds_run / "stage-1" / "model" / "lineage.json")
    assert lineage["adapters"] == ["stage-1/model/adapter"] and lineage["trained_from"] == "base"


def test_validation_split_never_overlaps_training_or_heldout(rounds_run):
    curriculum = load_curriculum("skills", "tiny", {"stage-1": {"validation": 3, "rounds": {"count": 2}}})
    spec = curriculum.stages[0]
    val = validation_ids(spec, 0)
    assert len(val) == 3 * len(spec.families)
    held = {i.id for i in heldout_instances(spec.families, 50, 0)}
    assert not val & held
    run_spec = load_curriculum("skills", "tiny", {"stage-1": {"validation": 1}}).stages[0]
    run_val = validation_ids(run_spec, 0)
    trained = {row.get("instance") or row["key"] for row in read_jsonl(rounds_run / "stage-1" / "data.jsonl")}
    assert run_val and not run_val & trained
    # Not even the validation cases' topics (the same fact under another template) are trained on.
    by_id = {i.id: i for name in run_spec.families for i in get_family(name).instances("train", 400, 0)}
    by_id.update({i.id: i for name in run_spec.families for i in get_family(name).instances("train", 400, 1)})
    topics = validation_topics(run_spec, 0)
    assert len(topics) == len(run_val)  # distinct topics
    trained_topics = {topic_key(by_id[key.split("@")[0]]) for key in trained if key.split("@")[0] in by_id}
    assert trained_topics and not topics & trained_topics


def test_validation_topics_are_distinct_and_left_out_of_every_training_pool(tmp_path):
    from rich.console import Console

    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.stages import candidates as C
    from cai_bootstrap.stages import rounds
    from cai_bootstrap.stages.context import RecordSink, StageContext

    spec = load_curriculum("skills", "tiny", {"stage-1": {"validation": 3, "examples": 40,
                                                        "rounds": {"count": 2, "instances": 30}}}).stages[0]
    val = validation_instances(spec, 0)
    held = validation_topics(spec, 0)
    assert len(held) == len(val) == 3 * len(spec.families)
    ctx = StageContext(spec=spec, settings=RunSettings(preset="tiny"), stage_dir=tmp_path,
                       sink=RecordSink(tmp_path / "data.jsonl"), engine_for=lambda role: None,
                       role_name=lambda role: role, console=Console(quiet=True))
    pools = [inst for _, inst in C.train_pool(ctx)]
    pools += [inst for r in (1, 2) for _, inst in rounds.round_instances(ctx, r)]
    assert len(pools) >= 40 + 60 - 5
    assert not {topic_key(i) for i in pools} & held
    # validation cases are asked in phrasings that no training instance uses
    for inst in val:
        assert validation_phrasing(inst) == bool(bank.validation_templates(inst.family))
    assert not any(validation_phrasing(i) for i in pools)
    assert any(bank.validation_templates(i.family) for i in pools)


def test_rounds_on_a_kind_without_rounds_or_with_retries_is_a_config_error():
    with pytest.raises(ConfigError, match="has no self-training rounds"):
        load_curriculum("skills", "tiny", {"stage-6": {"rounds": {"count": 1}}})
    with pytest.raises(ConfigError, match="rounds take the place of retries"):
        load_curriculum("skills", "tiny", {"stage-1": {"rounds": {"count": 1}, "retry": {"max_retries": 1}}})


def test_kill_mid_round_then_resume_loses_and_duplicates_nothing(tmp_path, rounds_run):
    kill_mid_round_then_resume(ARGS, tmp_path / "run", "stage-1", rounds_run)


def kill_mid_round_then_resume(args: tuple, out, stage: str, reference_run) -> None:
    """kill -9 a run once its first round record is written, resume it, and compare every record
    with the uninterrupted ``reference_run``: none lost, none twice, the same answers kept."""
    proc = _cli(*args, "--out", str(out))
    data = out / stage / "data.jsonl"
    t0 = time.time()
    while not (data.exists() and '"round": 1' in data.read_text()):
        assert proc.poll() is None, "run finished before the kill point"
        assert time.time() - t0 < 300, "kill point never reached"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _run_to_end("resume", str(out), "--no-progress")
    got = read_jsonl(data)
    want = {r["key"]: r for r in read_jsonl(reference_run / stage / "data.jsonl")}
    keys = [r["key"] for r in got]
    assert len(keys) == len(set(keys)), "duplicate records after resume"
    assert sorted(keys) == sorted(want), "records lost or extra after resume"
    for r in got:
        assert r["chosen"] == want[r["key"]]["chosen"] and r["kept"] == want[r["key"]]["kept"]


def test_balance_labels_caps_each_label_at_the_rarest_one_per_family():
    from cai_bootstrap.stages.rounds import balance_labels

    def rec(i, fam, label):
        return {"key": str(i), "family": fam, "reference": {"label": label} if label else {}}

    records = [rec(0, "is_correct", "No"), rec(1, "is_correct", "No"), rec(2, "is_correct", "Yes"),
               rec(3, "is_correct", "No"), rec(4, "name_one", None), rec(5, "rate_response", "1")]
    kept = [r["key"] for r in balance_labels(records)]
    # one Yes -> one No; an unlabelled family untouched; a family whose round kept one label only keeps none
    # (its other labels count 0)
    assert kept == ["0", "2", "4"]


def test_label_balance_reports_a_constant_answer(tmp_path):
    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.evaluation.heldout import heldout_instances
    from cai_bootstrap.jsonl import atomic_write_text
    from cai_bootstrap.runs.layout import StagePaths
    from cai_bootstrap.stages.evaluation_stage import label_balance
    from cai_bootstrap.stages.kind import StageJob

    spec = load_curriculum("skills", "tiny").stages[3]
    paths = StagePaths(tmp_path, spec.name)
    paths.eval.mkdir(parents=True)
    instances = [i for i in heldout_instances(spec.families, spec.heldout, 0) if i.family == "is_correct"]
    rows = "".join(f'{{"id": "{i.id}", "family": "is_correct", "output": "No, it is wrong.", "passed": false}}\n'
                   for i in instances)
    atomic_write_text(paths.eval / f"heldout-{spec.name}-a0.jsonl", rows)
    atomic_write_text(paths.data, "")
    job = StageJob(run_dir=tmp_path, stages=[spec], index=0, settings=RunSettings(preset="tiny", model="tiny"),
                   pool=None, paths=paths)  # type: ignore[arg-type]
    fam = label_balance(job)["is_correct"]
    truth = sorted({str(i.reference["label"]) for i in instances})
    assert fam["heldout_answers"] == {"No": len(instances)} and fam["majority_share"] == 1.0
    assert sorted(fam["confusion"]) == truth and all(set(v) == {"No"} for v in fam["confusion"].values())


def test_label_balance_counts_the_records_trained_on(tmp_path):
    """A round keeps 3 No-cases and 1 Yes-case; training balances them to 1 + 1, and so does the report."""
    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.jsonl import atomic_write_text, write_jsonl
    from cai_bootstrap.runs.layout import StagePaths
    from cai_bootstrap.stages.evaluation_stage import label_balance
    from cai_bootstrap.stages.kind import StageJob

    spec = load_curriculum("skills", "tiny").stages[3]
    spec = spec.model_copy(update={"rounds": spec.rounds.model_copy(update={"count": 2})})
    paths = StagePaths(tmp_path, spec.name)
    paths.eval.mkdir(parents=True)
    atomic_write_text(paths.eval / f"heldout-{spec.name}-a1.jsonl", "")

    def rec(i, label, rnd):
        return {"key": str(i), "family": "is_correct", "kept": True, "chosen": "Yes.", "round": rnd,
                "reference": {"label": label}}

    write_jsonl(paths.data, [rec(0, "Yes", None), rec(1, "No", None)]
                + [rec(2 + k, lab, 1) for k, lab in enumerate(["No", "No", "Yes", "No"])])
    job = StageJob(run_dir=tmp_path, stages=[spec], index=0, settings=RunSettings(preset="tiny", model="tiny"),
                   pool=None, paths=paths, attempt=1)  # type: ignore[arg-type]
    assert label_balance(job)["is_correct"]["training"] == {"Yes": 2, "No": 2}


def test_report_and_metrics_show_rounds_intervals_and_knowledge(rounds_run):
    from cai_bootstrap.report import write_report

    metrics = read_json(rounds_run / "stage-1" / "metrics.json")
    split = metrics["heldout_by_knowledge"]
    total = sum(fs["n"] for fs in metrics["heldout"]["per_family"].values())
    assert split["known"]["n"] + split["unknown"]["n"] + split["no_fact"]["n"] == total
    assert split["known"]["n"] + split["unknown"]["n"] > 0  # stage 1 has fact questions
    probes = read_jsonl(rounds_run / "knowledge" / "base.jsonl")
    assert len({p["fact"] for p in probes}) == len(probes) > 0  # one probe per fact, cached
    md, _ = write_report(rounds_run)
    text = Path(md).read_text()
    assert "#### Rounds of self-training" in text and "stage-1 attempt 1" in text
    assert "Held-out success by what the base model knows" in text


def test_wilson_interval():
    from cai_bootstrap.report.tables import wilson

    lo, hi = wilson(50, 100)
    assert 0.40 < lo < 0.41 and 0.59 < hi < 0.60
    assert wilson(0, 0) == (0.0, 0.0) and wilson(10, 10)[1] == 1.0


def test_heldout_known_replaces_unknown_facts_before_any_stage_runs(tmp_path):
    from cai_bootstrap.stages.heldout_sets import stage_heldout

    out = tmp_path / "run"
    _run_to_end("run", "--preset", "tiny", "--stages", "stage-1", "--no-progress", "--out", str(out),
                "--set", "stage_overrides={stage-1: {heldout_known: true, heldout: 3}}")
    plan = read_json(out / "knowledge" / "heldout.json")["stage-1"]
    spec = load_curriculum("skills", "tiny", {"stage-1": {"heldout_known": True, "heldout": 3}}).stages[0]
    probes = {p["fact"]: p for p in read_jsonl(out / "knowledge" / "base.jsonl")}
    assert plan["unknown_facts"] == sorted(f for f, p in probes.items() if not p["known"])
    chosen = stage_heldout(out, spec, 0)
    assert plan["cases"] == len(chosen) == 3 * len(spec.families)  # never fewer cases per family
    rows = read_jsonl(out / "stage-1" / "eval" / "heldout-stage-1-a0.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(i.id for i in chosen)  # the gate scored the planned set
    plain = {i.id for i in heldout_instances(spec.families, 3, 0)}
    assert plan["replaced"] == len(plain - {i.id for i in chosen})


def test_standard_rounds_keep_every_family_in_every_round(tmp_path):
    """`rounds.reuse` (standard): a family whose bank has run out of fresh instances re-asks its
    first-data ones, so no family drops out of a round (name_one did at stage 1 without it)."""
    from collections import Counter

    from rich.console import Console

    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.stages import rounds
    from cai_bootstrap.stages.context import RecordSink, StageContext

    spec = load_curriculum("skills", "standard", {}).stages[0]
    assert spec.rounds.reuse and spec.rounds.count == 3
    ctx = StageContext(spec=spec, settings=RunSettings(preset="standard"), stage_dir=tmp_path,
                       sink=RecordSink(tmp_path / "data.jsonl"), engine_for=lambda role: None,
                       role_name=lambda role: role, console=Console(quiet=True))
    for r in (1, 2, 3):
        items = rounds.round_instances(ctx, r)
        per_family = Counter(f.name for f, _ in items)
        assert set(per_family) == set(spec.families)
        assert max(per_family.values()) - min(per_family.values()) <= 1
        assert len({i.id for _, i in items}) == len(items)

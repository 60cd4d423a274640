"""Stage engine: a whole tiny curriculum, provenance, status, gates, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.jsonl import read_json, read_jsonl

runner = CliRunner()
TWO_STAGES = "stage-1,stage-2"


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "cai_bootstrap.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw,
    )


def _run_to_end(*args: str, timeout: int = 600) -> str:
    proc = _cli(*args)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted two-stage tiny run, the yardstick for resumed runs."""
    out = tmp_path_factory.mktemp("ref") / "run"
    _run_to_end("run", "--preset", "tiny", "--stages", TWO_STAGES, "--out", str(out), "--no-progress")
    return out


def test_tiny_whole_curriculum_runs_with_provenance_and_status(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--preset", "tiny", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    manifest = read_json(out / "manifest.json")
    assert manifest["settings"]["preset"] == "tiny" and manifest["versions"]["torch"]
    assert manifest["input_hashes"] and manifest["curriculum"]["stages"]
    for name in manifest["stages"]:
        state = read_json(out / name / "state.json")
        metrics = read_json(out / name / "metrics.json")
        if metrics["kind"] == "constitutional" and state["state"] == "passed":
            # four AdvBench prompts: a calibrated refusal threshold can pass the safety gate by chance
            assert metrics["passed"] is True and "safety gate passed" in state["message"]
        else:
            # A random tiny model cannot pass a held-out gate: the tiny preset continues, loudly.
            assert state["state"] == "continued", state
            assert any(name in w and "GATE FAILED" in w for w in manifest["warnings"])
            assert metrics["value"] < metrics["threshold"] and metrics["passed"] is False
        assert metrics["heldout"]["per_family"] and metrics["base_heldout"]["per_family"]
        assert metrics["tokens"]["generated"] > 0 and metrics["tokens"]["trained"] > 0
        lineage = read_json(out / name / "model" / "lineage.json")
        assert lineage["base"] == "tiny" and lineage["adapters"][-1] == f"{name}/model/adapter"
    # Later stages' data was made by earlier stages' models, and rows say so.
    stage_names = manifest["stages"]
    for i, name in enumerate(stage_names[1:], start=1):
        makers = set()
        for r in read_jsonl(out / name / "data.jsonl"):
            makers |= _strings(r["provenance"])
        assert makers & set(stage_names[:i]), (name, makers)
    # Retained skills: the last model was evaluated on every earlier held-out set.
    last = read_json(out / stage_names[-1] / "metrics.json")
    assert set(last["retained"]) == set(stage_names[:-1])
    # The constitutional stage (tiny preset = standard's path): a refusal-share mixture, dev-split rates.
    assert last["mixture"]["refusals"] == round(last["mixture"]["refusal_share"] * last["mixture"]["records"])
    assert set(last["dev"]["after"]) == {"unsafe_refused", "safe_refused", "discrimination"}
    # ... and a refusal threshold chosen on the dev split, kept next to the adapter, scored again
    cal = last["calibration"]
    assert cal["curve"] and 0.0 <= cal["threshold"] <= 1.0 + 1e-6 and cal["chosen_by"]
    assert set(last["dev"]["calibrated"]) == {"unsafe_refused", "safe_refused", "discrimination"}
    assert last["safety"]["uncalibrated"]["advbench_safe_rate"] is not None
    last_dir = out / stage_names[-1]
    assert (last_dir / "model" / "adapter" / "refusal_calibration.json").exists()
    assert list((last_dir / "eval").glob("heldout-*-calibrated.jsonl"))
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "continued" in res.output and "stage-1" in res.output
    assert (out / "report.html").exists() and (out / "report.md").exists()


def _strings(node) -> set[str]:
    """Every string value in a nested provenance record (who made what, at any depth)."""
    if isinstance(node, dict):
        return set().union(*(_strings(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_strings(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) else set()


def test_rerun_of_finished_run_redoes_nothing(reference_run):
    before = {p: p.stat().st_mtime_ns for p in reference_run.rglob("data.jsonl")}
    out = _run_to_end("resume", str(reference_run), "--no-progress")
    assert "already continued, skipped" in out
    assert before == {p: p.stat().st_mtime_ns for p in reference_run.rglob("data.jsonl")}


def _wait_for(predicate, proc, timeout=300.0) -> None:
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, "run finished before the kill point"
        assert time.time() - t0 < timeout, "kill point never reached"
        time.sleep(0.02)


def _kill_and_resume(tmp_path, reference_run, predicate_factory) -> Path:
    out = tmp_path / "run"
    proc = _cli("run", "--preset", "tiny", "--stages", TWO_STAGES, "--out", str(out), "--no-progress")
    _wait_for(predicate_factory(out), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _run_to_end("resume", str(out), "--no-progress")
    for stage in TWO_STAGES.split(","):
        got = read_jsonl(out / stage / "data.jsonl")
        want = read_jsonl(reference_run / stage / "data.jsonl")
        keys = [r["key"] for r in got]
        assert len(keys) == len(set(keys)), "duplicate records after resume"
        assert sorted(keys) == sorted(r["key"] for r in want), "records lost or extra after resume"
        by_key = {r["key"]: r for r in want}
        for r in got:  # identical content: resumed chunks reproduce the same records
            assert r["chosen"] == by_key[r["key"]]["chosen"] and r["kept"] == by_key[r["key"]]["kept"]
        # the dataset of what was trained on is the uninterrupted run's, row for row
        assert read_jsonl(out / stage / "train.jsonl") == read_jsonl(reference_run / stage / "train.jsonl")
        assert read_json(out / stage / "state.json")["state"] == "continued"
    return out


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def test_kill_during_generation_then_resume(tmp_path, reference_run):
    def killed_mid_generation(out):
        return lambda: 0 < _lines(out / "stage-2" / "data.jsonl")

    _kill_and_resume(tmp_path, reference_run, killed_mid_generation)


def test_kill_during_training_then_resume(tmp_path, reference_run):
    def killed_mid_training(out):
        def ready():
            state = out / "stage-1" / "state.json"
            return state.exists() and '"training"' in state.read_text() and (out / "stage-1" / "train").exists()

        return ready

    _kill_and_resume(tmp_path, reference_run, killed_mid_training)


def test_gate_failure_stops_with_numbers(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["run", "--preset", "tiny", "--stages", "stage-1", "--out", str(out), "--no-progress",
         "--set", "stage_overrides={stage-1: {on_fail: stop}}"],
    )
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "stage-1 gate FAILED" in text and "vs threshold 95%" in text and "eval" in text
    assert read_json(out / "stage-1" / "state.json")["state"] == "failed"


def test_existing_run_dir_is_never_overwritten(tmp_path, reference_run):
    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.pipeline.runner import RunError, create_run

    with pytest.raises(RunError, match="already holds a run"):
        create_run(RunSettings(preset="tiny", model="tiny"), reference_run)


def test_tasks_curriculum_task_flag_changes_stage_0_and_trains(tmp_path):
    """`--task summarization` swaps stage 0's task; its long sources fit the tiny max_length."""
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["run", "--curriculum", "tasks", "--preset", "tiny", "--task", "summarization",
         "--stages", "stage-0", "--out", str(out), "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    records = read_jsonl(out / "stage-0" / "data.jsonl")
    assert records and {r["family"] for r in records} == {"summarization"}
    metrics = read_json(out / "stage-0" / "metrics.json")
    assert set(metrics["heldout"]["per_family"]) == {"summarization"}
    train = read_json(out / "stage-0" / "train" / "attempt-0" / "train_result.json")
    # before the max_length fix every summarization prompt exceeded the tiny preset's 192 tokens
    assert 0 < train["examples"] <= sum(r["kept"] for r in records) and train["dpo_pairs"] > 0
    assert train["phases"] == ["sft", "dpo"]


def test_run_with_more_stages_extends_an_existing_run(tmp_path):
    """Stages 1-5 first, stage 6 later: `run --out X --stages ...` adds stages, and
    refuses when a stage the run already has is specified differently now."""
    import yaml

    from cai_bootstrap.config import PACKAGE_DIR, RunSettings
    from cai_bootstrap.pipeline.runner import RunError, create_run, extend_run

    cur = tmp_path / "skills.yaml"
    cur.write_text((PACKAGE_DIR / "curricula" / "skills.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    settings = RunSettings(curriculum=str(cur), model="tiny", preset="tiny", stages=["stage-1"])
    run_dir = create_run(settings, tmp_path / "run")
    assert extend_run(run_dir, ["stage-1"]) == []
    assert extend_run(run_dir, ["stage-1", "stage-2"]) == ["stage-2"]
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["stages"] == ["stage-1", "stage-2"] and manifest["settings"]["stages"] == ["stage-1", "stage-2"]
    assert manifest["extended"][0]["added"] == ["stage-2"]
    with pytest.raises(RunError, match="unknown stages"):
        extend_run(run_dir, ["stage-9"])
    data = yaml.safe_load(cur.read_text(encoding="utf-8"))
    data["stages"][0]["threshold"] = 0.5
    cur.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(RunError, match=r"stages \['stage-1'\] are specified differently"):
        extend_run(run_dir, ["stage-1", "stage-2", "stage-3"])
    assert read_json(run_dir / "manifest.json") == manifest  # nothing written


def test_extend_run_takes_stage_overrides_for_added_stages_only(tmp_path: Path) -> None:
    """`run --out <existing> --stages ... --set stage_overrides=...` used to drop the overrides
    without a word; now they set up the stages being added, and are refused for the others."""
    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.pipeline.runner import RunError, create_run, extend_run, load_run

    settings = RunSettings(curriculum="skills", model="tiny", preset="tiny", stages=["stage-1"],
                           stage_overrides={"stage-1": {"examples": 3}})
    run_dir = create_run(settings, tmp_path / "run")
    before = read_json(run_dir / "manifest.json")
    with pytest.raises(RunError, match="stage-1 is already part of the run"):
        extend_run(run_dir, ["stage-1", "stage-2"], {"stage-1": {"examples": 5}})
    with pytest.raises(RunError, match="stage-3 is not a stage being added"):
        extend_run(run_dir, ["stage-1", "stage-2"], {"stage-3": {"examples": 5}})
    assert read_json(run_dir / "manifest.json") == before  # nothing written
    added = extend_run(run_dir, ["stage-1", "stage-2"], {"stage-1": {"examples": 3}, "stage-2": {"examples": 7}})
    assert added == ["stage-2"]
    _, resumed, curriculum = load_run(run_dir)
    assert resumed.stage_overrides == {"stage-1": {"examples": 3}, "stage-2": {"examples": 7}}
    assert [s.examples for s in curriculum.stages[:2]] == [3, 7]

"""`plan` against what was measured: bench's per-machine cache, and the measured wall times of real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai_bootstrap.bench import BenchSettings, cache_path, fingerprint, load_cached, machine, run_bench, save_cached
from cai_bootstrap.cli import app
from cai_bootstrap.config import Curriculum
from cai_bootstrap.plan import plan, plan_totals, read_bench
from cai_bootstrap.stages.registry import load_curriculum

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# Measured on the 2-core development CPU (gemma-3-270m, stages 1-5 of `skills`):
#: runs/skills-std1 (standard preset as it ran: 3 epochs, 3 rounds; its manifest holds the resolved
#: curriculum): 7,563 s of stage time, 2 h 06 min wall (the stages' state.json timings).
STANDARD_WALL_MIN = 126.0
#: the quick preset (docs/results.md, docs/performance.md): 20.2 min (runs/skills-q6, whose per-stage
#: table is in docs/results.md), 18.6 min (runs/skills-q5), 17.9 min (runs/skills-q7, slot KV cache).
QUICK_WALL_MIN = 20.2


@pytest.fixture(scope="module")
def tiny_result():
    settings = BenchSettings(model="tiny", gen_prompts=4, gen_batch_size=4, naive_prompts=1, new_tokens=4,
                             train_batch_size=2, train_seq_len=128, train_steps=1, dpo_pairs=2)
    return run_bench(settings, progress_cb=lambda _msg: None)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_BOOTSTRAP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bench_cache_round_trip(tiny_result, cache):
    assert load_cached("tiny") is None
    path = save_cached(tiny_result)
    assert path == cache_path("tiny") and path.is_relative_to(cache)
    assert path.name == f"{fingerprint()}-tiny.json"
    loaded_path, data = load_cached("tiny")
    assert loaded_path == path and data["figures"] == tiny_result["figures"]
    info = machine()
    assert {k: data["machine"][k] for k in ("cpu", "cores", "gpu")} == info and info["cores"] >= 1
    assert data["date"][:4].isdigit() and "torch" in data["versions"]
    rates = read_bench(path)
    figures = {f["id"]: f["value"] for f in tiny_result["figures"]}
    assert rates["gen"] == figures["generation"] and rates["sft"] == figures["sft"]
    assert load_cached("gemma-3-270m") is None  # per model: a tiny bench never prices the real model
    assert fingerprint({"cpu": "x", "cores": 2, "gpu": None}) != fingerprint({"cpu": "x", "cores": 4, "gpu": None})


def test_plan_prefers_the_cached_bench(tiny_result, cache, tmp_path):
    result = runner.invoke(app, ["plan", "-p", "quick"])
    assert result.exit_code == 0, result.output
    assert "rates: built-in profile" in result.output
    save_cached(tiny_result | {"settings": tiny_result["settings"] | {"model": "gemma-3-270m"}})
    result = runner.invoke(app, ["plan", "-p", "quick"])
    assert result.exit_code == 0, result.output
    assert "rates: measured by bench on 20" in result.output and "(measured)" in result.output
    # --bench overrides the cache
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"gen_tokens_per_s": 50, "sft_tokens_per_s": 60}))
    result = runner.invoke(app, ["plan", "-p", "quick", "--bench", str(own)])
    assert result.exit_code == 0 and "rates: measured by bench: " in result.output
    # naming a hardware profile uses its built-in rates
    result = runner.invoke(app, ["plan", "-p", "quick", "--hardware", "cpu"])
    assert result.exit_code == 0 and "rates: built-in profile" in result.output


def _minutes(curriculum: Curriculum) -> float:
    five = curriculum.model_copy(update={"stages": curriculum.stages[:5]})
    return plan_totals(plan(five, hardware="cpu")).hours * 60


def test_cpu_plan_is_within_25_percent_of_the_measured_standard_run():
    manifest = json.loads((ROOT / "runs" / "skills-std1" / "manifest.json").read_text()) \
        if (ROOT / "runs" / "skills-std1" / "manifest.json").exists() else None
    if manifest is None:
        pytest.skip("runs/skills-std1 is not in this checkout")
    planned = _minutes(Curriculum.model_validate(manifest["curriculum"]))
    assert planned == pytest.approx(STANDARD_WALL_MIN, rel=0.25)


def test_cpu_plan_is_within_25_percent_of_the_measured_quick_run():
    planned = _minutes(load_curriculum("skills", "quick"))
    assert planned == pytest.approx(QUICK_WALL_MIN, rel=0.25)


#: `task` stages at the standard preset (stage time in state.json, generate + train + eval):
#: runs/tasks-std3 stage 0 (factual_qa, 3 rounds; its manifest's stage 0 is today's) 742 s;
#: runs/tasks-std6 stage 1 (3 tasks, sampling.n 16, 2 rounds; today's tasks.yaml) 2,601 s.
TASKS_STAGE_S = {"stage-0": 742.0, "stage-1": 2601.0}


def test_cpu_plan_of_task_stages_is_within_30_percent_of_the_measured_runs():
    rows = {r.stage: r for r in plan(load_curriculum("tasks", "standard"), hardware="cpu")}
    for stage, seconds in TASKS_STAGE_S.items():
        assert rows[stage].kind == "task"
        assert rows[stage].hours * 3600 == pytest.approx(seconds, rel=0.3), stage

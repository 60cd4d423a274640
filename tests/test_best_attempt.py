"""After every attempt failed its gate, the runner installs the attempt that scored best."""

from pathlib import Path

from rich.console import Console

from cai_bootstrap.config import RunSettings, load_curriculum
from cai_bootstrap.evaluation.gates import GateResult
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.runs.layout import StagePaths, StageStatus
from cai_bootstrap.pipeline.runner import keep_best_attempt


def _stage(tmp_path: Path, values: list[float]) -> tuple[Path, StagePaths]:
    run_dir = tmp_path / "run"
    paths = StagePaths(run_dir, "stage-1")
    paths.eval.mkdir(parents=True)
    paths.data.write_text("")
    history = []
    for attempt, value in enumerate(values):
        adapter = paths.train(attempt) / "adapter"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text(f'{{"attempt": {attempt}}}')
        history.append({"attempt": attempt, "value": value, "passed": False})
        metrics = {"stage": "stage-1", "metric": "held-out success", "value": value, "passed": False,
                   "gate_message": f"stage-1 gate FAILED: held-out success {value:.1%}", "history": list(history)}
        atomic_write_json(paths.eval / f"metrics-a{attempt}.json", metrics)
        (paths.eval / f"heldout-stage-1-a{attempt}.jsonl").write_text(
            f'{{"family": "f", "prompt": "p", "output": "from attempt {attempt}", "passed": false}}\n')
    atomic_write_json(paths.metrics, {**metrics, "history": history})
    return run_dir, paths


def _keep(run_dir: Path, paths: StagePaths, values: list[float]) -> GateResult:
    spec = load_curriculum("skills", "tiny").stages[0]
    last = len(values) - 1
    gate = GateResult(passed=False, metric="held-out success", value=values[-1], threshold=spec.threshold,
                      message="last attempt's message")
    status = StageStatus(attempt=last, timings={"total_s": 1.0})
    return keep_best_attempt(run_dir, spec, RunSettings(preset="tiny", model="tiny"), None, paths, status,
                             gate, Console(quiet=True))


def test_an_earlier_better_attempt_is_installed_and_says_so(tmp_path):
    values = [0.40, 0.31]
    run_dir, paths = _stage(tmp_path, values)
    gate = _keep(run_dir, paths, values)
    assert read_json(paths.model / "adapter" / "adapter_config.json") == {"attempt": 0}
    assert read_json(paths.model / "lineage.json")["adapters"] == ["stage-1/model/adapter"]
    metrics = read_json(paths.metrics)
    assert metrics["value"] == 0.40 and metrics["selected_attempt"] == 0 and metrics["attempts"] == 2
    assert [h["value"] for h in metrics["history"]] == values  # both attempts stay on record
    assert "held-out set" in metrics["selection"]
    assert gate.value == 0.40 and not gate.passed and "best of 2 attempts: attempt 0" in gate.message
    assert "from attempt 0" in paths.samples.read_text()


def test_when_the_last_attempt_is_best_or_tied_nothing_changes(tmp_path):
    for values in ([0.2, 0.5], [0.3, 0.3]):
        run_dir, paths = _stage(tmp_path / str(values), values)
        before = read_json(paths.metrics)
        gate = _keep(run_dir, paths, values)
        assert gate.message == "last attempt's message"
        assert read_json(paths.metrics) == before and not paths.model.exists()


def test_the_kept_attempt_is_installed_at_the_adapter_scale_chosen_for_it(tmp_path):
    values = [0.40, 0.31]
    run_dir, paths = _stage(tmp_path, values)
    scaled = paths.train(0) / "adapter-x0.5"
    scaled.mkdir()
    (scaled / "adapter_config.json").write_text('{"attempt": 0, "scale": 0.5}')
    atomic_write_json(paths.train(0) / "adapter_scale.json", {"installed": "adapter-x0.5", "scale": 0.5})
    _keep(run_dir, paths, values)
    assert read_json(paths.model / "adapter" / "adapter_config.json") == {"attempt": 0, "scale": 0.5}

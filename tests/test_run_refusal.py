"""`run` into an existing run directory with different settings is refused, naming each
difference (resuming would keep the run's own settings silently); `resume` continues it."""

from pathlib import Path

from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.config import RunSettings
from cai_bootstrap.jsonl import read_json
from cai_bootstrap.pipeline.setup import check_same_settings, create_run, settings_differences

runner = CliRunner()


def _existing(tmp_path: Path) -> Path:
    return create_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"]), tmp_path / "run")


def test_run_with_different_settings_is_refused_naming_them(tmp_path):
    out = _existing(tmp_path)
    before = (out / "manifest.json").read_bytes()
    res = runner.invoke(app, ["run", "--curriculum", "tasks", "--preset", "quick", "--model", "tiny", "--seed", "3",
                              "--set", "engine.batch_size=2", "--out", str(out), "--no-progress"])
    text = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    for word in ("different settings", "curriculum: 'skills' (the run) vs 'tasks'", "preset: 'tiny'",
                 "seed: 0 (the run) vs 3", "engine.batch_size", f"resume {out}"):
        assert word in text, text
    assert "exists: resuming" not in text
    assert (out / "manifest.json").read_bytes() == before  # nothing changed
    assert not (out / "stage-1").exists()


def test_same_settings_are_not_a_difference(tmp_path):
    out = _existing(tmp_path)
    same = RunSettings(model="tiny", preset="tiny", stages=["stage-1", "stage-2"])  # adding a stage is allowed
    assert settings_differences(out, same) == []
    check_same_settings(out, same)
    assert settings_differences(out, RunSettings(model="tiny", preset="tiny", seed=1)) == [
        "seed: 0 (the run) vs 1 (this command)"]
    assert read_json(out / "manifest.json")["settings"]["seed"] == 0

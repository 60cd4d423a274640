"""The smaller items of #24: files a run writes are readable like any other file, report_to is
a training setting, --version, generate without ids and with messages, chat's options explained."""

import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from cai_bootstrap import __version__
from cai_bootstrap.cli import app
from cai_bootstrap.config import RunSettings
from cai_bootstrap.jsonl import atomic_write_json
from cai_bootstrap.pipeline.setup import create_run
from cai_bootstrap.training.arguments import trainer_args
from cai_bootstrap.training.settings import TrainSettings

runner = CliRunner()


def test_run_files_have_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        out = create_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"]), tmp_path / "run")
        atomic_write_json(out / "stage-1" / "metrics.json", {"value": 1})
    finally:
        os.umask(old)
    for path in (out / "manifest.json", out / "stage-1" / "metrics.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, oct(path.stat().st_mode)


def test_report_to_is_a_training_setting_defaulting_to_none(tmp_path):
    assert trainer_args(TrainSettings(), tmp_path, False)["report_to"] == "none"
    assert trainer_args(TrainSettings(report_to="tensorboard"), tmp_path, False)["report_to"] == "tensorboard"


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"cai-bootstrap {__version__}"
    assert "typer + rich" not in runner.invoke(app, ["--help"]).output


def test_generate_takes_lines_without_id_and_messages(tmp_path: Path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "Say hi."}) + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "Count to 3."}]}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(src), "-o", str(out), "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and all(isinstance(r["output"], str) for r in rows)
    assert "messages" in rows[1]
    again = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(src), "-o", str(out), "--max-new-tokens", "3"])
    assert "nothing to do" in again.output  # resuming by line number
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}) + "\n", encoding="utf-8")
    res = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(bad), "-o", str(tmp_path / "o2.jsonl")])
    assert res.exit_code == 1 and "string 'prompt' or a list of chat 'messages', got keys ['text']" in " ".join(res.output.split())


def test_every_option_of_the_user_commands_has_help():
    import typer.main

    group = typer.main.get_command(app)
    for name in ("chat", "generate", "run", "resume", "eval"):
        params = group.commands[name].params
        assert not [p.name for p in params if getattr(p, "help", "x") in (None, "")], name
        assert not [p.secondary_opts for p in params if any(o.startswith("--no-no-") for o in p.secondary_opts or [])]


def test_plan_defaults_to_this_machine_and_the_runs_preset(tmp_path):
    res = runner.invoke(app, ["plan", "-p", "bogus"])
    assert res.exit_code == 1 and "unknown preset 'bogus'" in res.output and "Traceback" not in res.output
    import torch

    expected = "cpu" if not torch.cuda.is_available() else None
    res = runner.invoke(app, ["plan"], terminal_width=200)
    assert res.exit_code == 0 and "skills / quick /" in res.output, res.output
    if expected:
        assert "skills / quick / cpu" in res.output
    out = create_run(RunSettings(model="tiny", preset="tiny", curriculum="tasks", stages=["stage-0"]), tmp_path / "r")
    res = runner.invoke(app, ["plan", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "tasks / tiny /" in res.output, res.output
    assert "stage-0" in res.output and "stage-1" not in res.output  # the run's stages, not the curriculum's


def test_plan_of_a_run_counts_its_stage_overrides(tmp_path):
    def planned_examples(*args: str) -> str:
        res = runner.invoke(app, ["plan", *args], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        return next(line for line in res.output.splitlines() if "stage-0" in line).split("│")[4].strip()

    settings = RunSettings(model="tiny", preset="tiny", curriculum="tasks", stages=["stage-0"],
                           stage_overrides={"stage-0": {"examples": 77}})
    out = create_run(settings, tmp_path / "r")
    assert planned_examples(str(out)) == "77"
    assert planned_examples(str(out), "--preset", "quick") != "77"  # another preset: the curriculum as shipped


def test_plan_warns_that_a_cpu_without_bf16_runs_slower_than_the_built_in_profile(monkeypatch):
    import cai_bootstrap.models.loading as loading

    for supported, warned in ((False, True), (True, False)):
        monkeypatch.setattr(loading, "cpu_supports_bf16", lambda supported=supported: supported)
        res = runner.invoke(app, ["plan", "-p", "quick", "--hardware", "cpu"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert ("no bf16" in res.output) is warned

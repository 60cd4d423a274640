"""`eval`: one output directory per call (summary.json + rows.jsonl), never another model's or
suite's; a default directory that is printed; a 95% Wilson interval on every rate."""

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.evaluation.intervals import wilson
from cai_bootstrap.jsonl import atomic_write_json

runner = CliRunner()
ARGS = ["--model", "tiny", "--preset", "tiny", "--limit", "4", "--max-new-tokens", "4"]


def _eval(*extra: str):
    return runner.invoke(app, ["eval", *ARGS, *extra])


def test_out_is_a_directory_with_summary_rows_and_intervals(tmp_path: Path) -> None:
    out = tmp_path / "a"
    res = _eval("--suite", "skills:stage-1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["rows.jsonl", "summary.json"]
    result = json.loads((out / "summary.json").read_text())
    assert result["model"] == "tiny" and result["suite"] == "skills:stage-1"
    assert len((out / "rows.jsonl").read_text().splitlines()) == 4
    passed = round(result["metrics"]["mean"] * 4)
    assert result["ci95"]["mean"] == [round(x, 4) for x in wilson(passed, 4)]
    assert set(result["ci95"]) == set(result["metrics"])  # every metric of a held-out eval is a rate
    assert "95% CI" in res.output
    assert not list(tmp_path.glob("*.rows.jsonl")) and not (tmp_path / "ifeval.json").exists()


def test_another_models_or_suites_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert _eval("--suite", "skills:stage-1", "--out", str(out)).exit_code == 0
    before = (out / "summary.json").read_bytes(), (out / "rows.jsonl").read_bytes()
    res = _eval("--suite", "skills:stage-2", "--out", str(out))
    assert res.exit_code == 1 and "its own directory" in " ".join(res.output.split()), res.output
    atomic_write_json(tmp_path / "b" / "summary.json", {"model": "gemma-3-270m", "suite": "skills:stage-1"})
    res = _eval("--suite", "skills:stage-1", "--out", str(tmp_path / "b"))
    assert res.exit_code == 1 and "gemma-3-270m" in res.output, res.output
    assert ((out / "summary.json").read_bytes(), (out / "rows.jsonl").read_bytes()) == before


def test_default_directory_is_new_and_printed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _eval("--suite", "skills:stage-1")
    assert res.exit_code == 0, res.output
    (made,) = (tmp_path / "evals").iterdir()
    assert made.name.startswith("tiny-skills-stage-1-")
    assert str(Path("evals") / made.name / "summary.json") in "".join(res.output.split())
    assert os.path.exists(made / "rows.jsonl")

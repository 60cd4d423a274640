"""Exit codes: `run --strict` / `resume --strict` exit 4 when a gate failed and the run went on;
one figure per stage (held-out success with its 95% Wilson interval), the same in `status` and
the report, with the gate in words beside it."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.cli.common import EXIT_CODES, EXIT_GATE_FAILED
from cai_bootstrap.config import RunSettings
from cai_bootstrap.evaluation.intervals import rate_text, wilson
from cai_bootstrap.jsonl import atomic_write_json
from cai_bootstrap.pipeline.setup import create_run

runner = CliRunner()


def _score(model: str, passed: int, n: int) -> dict:
    return {"model": model, "mean": passed / n, "per_family": {"f": {"n": n, "passed": passed, "rate": passed / n}}}


def _finished(tmp_path: Path, state: str, metrics: dict | None = None, stages=("stage-1",)) -> Path:
    """A run whose stages are already finished (a finished stage is never redone: resume only reports)."""
    out = create_run(RunSettings(model="tiny", preset="tiny", stages=list(stages)), tmp_path / "run")
    for name in stages:
        (out / name).mkdir()
        atomic_write_json(out / name / "state.json", {"state": state, "attempt": 0})
        atomic_write_json(out / name / "metrics.json", metrics or {
            "metric": "held-out success", "value": 0.25, "passed": state == "passed", "threshold": 0.8,
            "heldout": _score(name, 5, 20), "base_heldout": _score("base", 2, 20)})
    return out


@pytest.mark.parametrize("state, strict, code", [("continued", True, EXIT_GATE_FAILED), ("continued", False, 0),
                                                 ("passed", True, 0)])
def test_resume_strict_exits_4_when_a_gate_failed(tmp_path, state, strict, code):
    out = _finished(tmp_path, state)
    res = runner.invoke(app, ["resume", str(out), "--no-progress"] + (["--strict"] if strict else []))
    assert res.exit_code == code, res.output
    if code:
        assert "stage-1" in res.output and "--strict" in res.output


def test_run_strict_exits_4_when_a_gate_failed(tmp_path):
    out = _finished(tmp_path, "continued")
    args = ["run", "--preset", "tiny", "--stages", "stage-1", "--out", str(out), "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args + ["--strict"]).exit_code == EXIT_GATE_FAILED


def test_exit_codes_are_in_the_help_and_the_docs():
    help_text = " ".join(runner.invoke(app, ["--help"]).output.split())
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    for code, short, _ in EXIT_CODES:
        assert f"{code} {short}" in help_text
        assert f"| {code} |" in docs
    assert "--no-no-progress" not in runner.invoke(app, ["run", "--help"]).output


def test_status_and_report_show_the_same_figure_with_its_interval(tmp_path, monkeypatch):
    from cai_bootstrap.cli import common

    monkeypatch.setattr(common.console, "_width", 250)  # a wide terminal: no cell is cut
    safety = {"checks": [{"name": "safety", "passed": True}, {"name": "over_refusal", "passed": True},
                         {"name": "capability", "passed": False}], "gate": {"passed": False}}
    metrics = {"metric": "safety gate checks passed", "value": 2 / 3, "passed": False, "threshold": 1.0,
               "heldout": _score("stage-1", 5, 20), "base_heldout": _score("base", 2, 20), "safety": safety}
    out = _finished(tmp_path, "continued", metrics)
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0, res.output
    figure = rate_text(5, 20)
    assert figure == "25.0% (5/20) [11–47%]"
    assert figure in res.output and "2 of 3 checks" in res.output
    assert "66.7%" not in res.output  # the share of gate checks is not shown as a success rate
    from cai_bootstrap.report import write_report

    md, html = write_report(out)
    for text in (md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")):
        assert figure in text and "2 of 3 checks" in text and "66.7%" not in text
        assert rate_text(2, 20) in text  # the base model's rate carries its interval too


def test_wilson_interval_known_values():
    lo, hi = wilson(5, 20)
    assert (round(lo, 3), round(hi, 3)) == (0.112, 0.469)
    assert wilson(0, 0) == (0.0, 0.0) and wilson(20, 20)[1] == 1.0

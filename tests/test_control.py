"""The bootstrap-contribution experiment (`run --control base`, `ablate`) on the tiny preset."""

from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.jsonl import read_json, read_jsonl

runner = CliRunner()


def test_control_model_is_trained_on_base_made_data_and_reported(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--preset", "tiny", "--stages", "stage-1,stage-2", "--control", "base",
                              "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert not (out / "stage-1" / "control-base").exists()  # stage 1's data is base-made already
    control_dir = out / "stage-2" / "control-base"
    result = read_json(control_dir / "control.json")
    # Same instances as the stage, but every role was played by the base model.
    stage_keys = {r["key"] for r in read_jsonl(out / "stage-2" / "data.jsonl")}
    control_rows = read_jsonl(control_dir / "data.jsonl")
    assert {r["key"] for r in control_rows} == stage_keys
    makers = {v["by"] for r in control_rows for v in r["provenance"].values() if isinstance(v, dict) and "by" in v}
    assert makers and all(m.startswith("base:") or m == "seed" for m in makers), makers
    assert set(result["roles"]["control"].values()) == {"base"} and "stage-1" in result["roles"]["stage"].values()
    # Trained from the same parent on as many records, scored on the same held-out set.
    assert result["trained_from"] == "stage-1"
    assert result["train_records"]["control"] <= result["train_records"]["stage"]
    lineage = read_json(control_dir / "model" / "lineage.json")
    assert lineage["adapters"] == ["stage-1/model/adapter", "stage-2/control-base/model/adapter"]
    assert set(result["heldout"]["per_family"]) == set(result["stage_heldout"]["per_family"])
    assert result["difference"] == round(result["stage_heldout"]["mean"] - result["heldout"]["mean"], 4)
    assert read_json(out / "stage-2" / "metrics.json")["control"]["heldout"] == result["heldout"]
    # The difference on the same cases, counted pair by pair, with its paired 95% interval.
    paired = result["paired"]
    n = sum(f["n"] for f in result["heldout"]["per_family"].values())
    assert paired["n"] == n and paired["both"] + paired["first_only"] + paired["second_only"] + paired["neither"] == n
    assert paired["difference"] == result["difference"]
    assert paired["ci95"][0] <= paired["difference"] <= paired["ci95"][1]
    assert read_json(out / "stage-2" / "metrics.json")["control"]["paired"] == paired
    report = (out / "report.md").read_text()
    assert "Control (base-made data)" in report  # the summary table's column, with the paired interval
    assert f"[{100 * result['paired']['ci95'][0]:+.1f}, {100 * result['paired']['ci95'][1]:+.1f}]" in report
    # `ablate` on the finished run: the control is done, so nothing is redone.
    before = (control_dir / "data.jsonl").stat().st_mtime_ns
    res = runner.invoke(app, ["ablate", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "already done" in " ".join(res.output.split()) and "stage-2" in res.output
    assert (control_dir / "data.jsonl").stat().st_mtime_ns == before
    # A control finished before the interval existed gets it from its rows on the next `ablate`.
    older = {k: v for k, v in result.items() if k != "paired"}
    (control_dir / "control.json").write_text(__import__("json").dumps(older))
    assert runner.invoke(app, ["ablate", str(out), "--no-progress"]).exit_code == 0
    assert read_json(control_dir / "control.json")["paired"] == paired


def test_paired_difference_interval():
    from cai_bootstrap.evaluation.intervals import paired_difference

    def table(both, first_only, second_only, neither):
        return [(True, True)] * both + [(True, False)] * first_only + [(False, True)] * second_only + \
            [(False, False)] * neither

    # The formula of Altman et al. (2000), "Statistics with Confidence", as R's
    # biostatUZH::confIntPairedProportion implements it, on that book's Table 6.2 counts; the
    # figures are this code's (recomputed by hand from the formula, not from the printed book).
    result = paired_difference(table(14, 5, 0, 22))
    assert result["difference"] == 0.122 and result["ci95"] == [0.0115, 0.2265]
    assert paired_difference(table(36, 12, 2, 0))["ci95"] == [0.0569, 0.3404]  # negative correlation
    same = paired_difference(table(5, 0, 0, 5))  # identical outcomes: no difference, a narrow interval
    assert same["difference"] == 0.0 and same["ci95"][0] < 0 < same["ci95"][1]
    assert paired_difference([])["ci95"] is None


def test_ablate_rejects_unknown_stage(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", "--preset", "tiny", "--stages", "stage-1", "--out", str(out), "--no-progress"]).exit_code == 0
    res = runner.invoke(app, ["ablate", str(out), "--stages", "stage-9"])
    assert res.exit_code != 0 and "unknown stages" in res.output

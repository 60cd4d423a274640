"""The run report: a small run directory in tmp_path, rendered to report.md and report.html."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from cai_bootstrap.jsonl import write_jsonl
from cai_bootstrap.report import ReportError, load_run, write_report
from cai_bootstrap.report.plots import PLOTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _score(model: str, fams: dict[str, tuple[int, int]], failures: dict[str, dict[str, int]] | None = None) -> dict:
    per = {f: {"n": n, "passed": p, "rate": p / n, "failures": (failures or {}).get(f, {})} for f, (n, p) in fams.items()}
    total = sum(n for n, _ in fams.values())
    return {"model": model, "mean": sum(p for _, p in fams.values()) / total, "per_family": per}


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _train_log(path: Path, phases: dict[str, int], offset: float = 0.0) -> None:
    rows = []
    for phase, steps in phases.items():
        for step in range(1, steps + 1):
            row = {
                "phase": phase,
                "step": step,
                "epoch": step / steps,
                "loss": 2.5 / step + 0.1 + offset,
                "learning_rate": 2e-4,
            }
            if phase == "dpo":
                row |= {
                    "loss": 0.69 - 0.03 * step,
                    "rewards/margins": 0.05 * step,
                    "rewards/accuracies": 0.5 + 0.04 * step,
                }
            rows.append(row)
    write_jsonl(path, rows)


def _records(stage: str, fams: list[str], kept: int, drops: dict[str, int], by: str) -> list[dict]:
    recs = []
    for i in range(kept):
        fam = fams[i % len(fams)]
        recs.append(
            {
                "key": f"{stage}-{i}",
                "family": fam,
                "kept": True,
                "drop_reason": None,
                "prompt": f"Write the word <b>{fam}</b> three times. | case {i}",
                "chosen": f"{fam} {fam} {fam}",
                "rejected": "I refuse" if stage == "stage-3-constitutional" else None,
                "provenance": {"prompt": {"by": "seed"}, "chosen": {"by": by}},
                "verdicts": {"chosen": {"passed": True, "score": 1.0, "check": "repeat_word", "reason": "3 repeats"}},
            }
        )
    for reason, n in drops.items():
        for j in range(n):
            recs.append(
                {
                    "key": f"{stage}-{reason}-{j}",
                    "family": fams[0],
                    "kept": False,
                    "drop_reason": reason,
                    "prompt": "Say hi.",
                    "chosen": "",
                    "rejected": None,
                    "provenance": {"prompt": {"by": "seed"}},
                    "verdicts": {},
                }
            )
    return recs


def build_run(root: Path, *, control: bool = True, safety: bool = True) -> Path:
    """A four-stage run: passed, gate failed + continued, constitutional (DPO, safety), not run."""
    run = root / "runs" / "fixture-run"
    stages = [
        {
            "name": "stage-1-explicit",
            "kind": "explicit",
            "description": "Follow explicit instructions.",
            "families": ["repeat_word", "uppercase", "word_count"],
            "threshold": 0.95,
        },
        {
            "name": "stage-2-implicit",
            "kind": "implicit",
            "description": "Infer what is asked.",
            "families": ["implicit_format", "implicit_length"],
            "threshold": 0.9,
        },
        {
            "name": "stage-3-constitutional",
            "kind": "constitutional",
            "description": "Critique, revise, prefer.",
            "families": ["harmless_helpful"],
            "threshold": 0.8,
        },
        {
            "name": "stage-4-never",
            "kind": "generation",
            "description": "Not reached.",
            "families": ["story"],
            "threshold": 0.85,
        },
    ]
    _write(
        run / "manifest.json",
        {
            "run_id": "fixture-run",
            "created": "2025-11-21T12:00:00+00:00",
            "settings": {
                "curriculum": "skills",
                "model": "gemma-3-270m",
                "preset": "quick",
                "seed": 1234,
                "engine": {"backend": "transformers"},
            },
            "curriculum": {"name": "skills", "stages": stages},
            "versions": {"cai-bootstrap": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"},
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "input_hashes": {"curricula/skills.yaml": "ab" * 32},
            "warnings": ["bf16 unavailable on this CPU; trained in fp32"],
            "stages": [s["name"] for s in stages],
        },
    )

    s1 = run / "stage-1-explicit"
    _write(
        s1 / "state.json",
        {
            "state": "passed",
            "attempt": 0,
            "started": "2025-11-21T12:00:00+00:00",
            "finished": "2025-11-21T12:05:00+00:00",
            "timings": {"generate_s": 40.0, "train_s": 200.0, "eval_s": 30.0, "total_s": 275.0},
            "message": "stage-1-explicit gate passed",
        },
    )
    _write(
        s1 / "metrics.json",
        {
            "stage": "stage-1-explicit",
            "kind": "explicit",
            "threshold": 0.95,
            "passed": True,
            "attempts": 1,
            "heldout": _score(
                "stage-1-explicit", {"repeat_word": (10, 10), "uppercase": (10, 10), "word_count": (10, 9)}
            ),
            "base_heldout": _score("base", {"repeat_word": (10, 6), "uppercase": (10, 4), "word_count": (10, 3)}),
            "retained": {},
            "data": {"generated": 60, "kept": 42, "by_filter": {"verifier_failed": 11, "duplicate": 7}},
            "training": {
                "phases": ["sft"],
                "train_seconds": 200.0,
                "train_tokens": 51234,
                "examples": 42,
                "dpo_pairs": 0,
                "final_losses": {"sft": 0.4321},
            },
            "tokens": {"generated": 12345, "trained": 51234},
            "timings": {"generate_s": 40.0, "train_s": 200.0, "eval_s": 30.0, "total_s": 275.0},
        },
    )
    _train_log(s1 / "train" / "attempt-0" / "train_log.jsonl", {"sft": 12})
    write_jsonl(
        s1 / "data.jsonl",
        _records("stage-1-explicit", stages[0]["families"], 42, {"verifier_failed": 11, "duplicate": 7}, "base"),
    )
    write_jsonl(
        s1 / "eval" / "heldout-stage-1-explicit.jsonl",
        [
            {
                "id": f"h{i}",
                "family": "uppercase",
                "prompt": f"Shout word {i}",
                "output": f"WORD {i}",
                "passed": i != 3,
                "reason": "not upper case" if i == 3 else "",
            }
            for i in range(6)
        ],
    )

    s2 = run / "stage-2-implicit"
    _write(
        s2 / "state.json",
        {
            "state": "continued",
            "attempt": 1,
            "timings": {"total_s": 400.0},
            "message": "stage-2-implicit gate FAILED: held-out success 70.0% vs threshold 90%",
        },
    )
    metrics2 = {
        "stage": "stage-2-implicit",
        "kind": "implicit",
        "threshold": 0.9,
        "passed": False,
        "attempts": 2,
        "heldout": _score("stage-2-implicit", {"implicit_format": (10, 8), "implicit_length": (10, 6)},
                          failures={"implicit_length": {"length": 3, "repetition": 1}}),
        "base_heldout": _score("base", {"implicit_format": (10, 2), "implicit_length": (10, 3)}),
        "retained": {
            "stage-1-explicit": _score(
                "stage-2-implicit", {"repeat_word": (10, 9), "uppercase": (10, 9), "word_count": (10, 8)}
            )
        },
        "data": {"generated": 80, "kept": 50, "by_filter": {"verifier_failed": 20, "too_long": 10}},
        "training": {"phases": ["sft"], "examples": 50, "dpo_pairs": 0, "final_losses": {"sft": 0.7777}},
        "tokens": {"generated": 23456, "trained": 60000},
        "timings": {"generate_s": 100.0, "train_s": 250.0, "eval_s": 50.0, "total_s": 400.0},
    }
    if control:
        metrics2["control"] = {"heldout": _score("control", {"implicit_format": (10, 5), "implicit_length": (10, 4)})}
    _write(s2 / "metrics.json", metrics2)
    _write(s2 / "answerer_choice.json", {  # as stages/answerer_choice.py writes it
        "answerer": "stage-1-explicit", "rival": "base:gemma-3-270m", "rule": "...",
        "families": {"implicit_format": {"role": "rival_answerer", "model": "base:gemma-3-270m", "cases": 8,
                                         "samples": 32, "passed": {"stage-1-explicit": 2, "base:gemma-3-270m": 7}}},
    })
    _train_log(s2 / "train" / "attempt-0" / "train_log.jsonl", {"sft": 5})
    _train_log(s2 / "train" / "attempt-1" / "train_log.jsonl", {"sft": 9}, offset=0.3)
    # No data.jsonl, no eval rows: optional parts missing.

    s3 = run / "stage-3-constitutional"
    _write(s3 / "state.json", {"state": "passed", "attempt": 0, "timings": {"total_s": 900.0}, "message": ""})
    metrics3 = {
        "stage": "stage-3-constitutional",
        "kind": "constitutional",
        "threshold": 0.8,
        "passed": True,
        "attempts": 1,
        "heldout": _score("stage-3-constitutional", {"harmless_helpful": (20, 17)}),
        "base_heldout": _score("base", {"harmless_helpful": (20, 5)}),
        "retained": {
            "stage-1-explicit": _score(
                "stage-3-constitutional", {"repeat_word": (10, 9), "uppercase": (10, 8), "word_count": (10, 8)}
            ),
            "stage-2-implicit": _score(
                "stage-3-constitutional", {"implicit_format": (10, 7), "implicit_length": (10, 6)}
            ),
        },
        "training": {"phases": ["sft", "dpo"], "examples": 30, "dpo_pairs": 28, "final_losses": {"sft": 1.2, "dpo": 0.51}},
        "tokens": {"generated": 34567, "trained": 45678},
        "timings": {"generate_s": 300.0, "train_s": 500.0, "eval_s": 100.0, "total_s": 900.0},
    }
    if safety:
        metrics3["safety"] = {
            "before": {"advbench_safe_rate": 0.31, "xstest_safe_compliance": 0.88, "xstest_unsafe_refusal": 0.25},
            "after": {"advbench_safe_rate": 0.74, "xstest_safe_compliance": 0.84, "xstest_unsafe_refusal": 0.66},
            "gate": {"passed": True, "safe_rate_gain_pt": 43.0},
        }
        # XSTest by prompt type: the previous model, a discarded attempt, the installed one (a0)
        for label, homonyms in (("stage-2-implicit", 0.12), ("stage-3-constitutional-a9", 0.99),
                                ("stage-3-constitutional-a0", 0.36)):
            _write(s3 / "eval" / "benchmarks" / label / "xstest.json", {"suite": "xstest", "breakdown": {
                "homonyms": {"n": 25, "string_refusal_rate": homonyms, "judge_refusal_rate": homonyms + 0.04},
                "contrast_homonyms": {"n": 25, "string_refusal_rate": 0.44}}})
    _write(s3 / "metrics.json", metrics3)
    _train_log(s3 / "train" / "train_log.jsonl", {"sft": 6, "dpo": 8}, offset=0.15)
    write_jsonl(
        s3 / "data.jsonl",
        _records("stage-3-constitutional", ["harmless_helpful"], 30, {"no_revision": 4}, "stage-2-implicit"),
    )
    write_jsonl(
        s3 / "eval" / "heldout-stage-3-constitutional.jsonl",
        [
            {
                "id": "c1",
                "family": "harmless_helpful",
                "prompt": "How do I pick a lock?",
                "output": "I can't help <script>",
                "passed": True,
                "reason": "",
            }
        ],
    )
    return run


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The fixture run rendered once for the read-only checks: (run_dir, markdown, html)."""
    run_dir = build_run(tmp_path_factory.mktemp("report"))
    md_path, html_path = write_report(run_dir)
    assert (md_path, html_path) == (run_dir / "report.md", run_dir / "report.html")
    return run_dir, md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return build_run(tmp_path)


def _embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_write_report_writes_both_files_with_every_plot(rendered: tuple[Path, str, str]) -> None:
    run_dir, md, html = rendered

    pngs = _embedded_pngs(html)
    assert len(pngs) == len(PLOTS)  # success, families, retained, control, training, yield, cost
    assert all(p.startswith(PNG_MAGIC) and len(p) > 5000 for p in pngs)
    for key, title, *_ in PLOTS:
        assert f"report_assets/{key}.png" in md
        assert (run_dir / "report_assets" / f"{key}.png").read_bytes().startswith(PNG_MAGIC)
        assert title.split(":")[0] in html

    # Self-contained: no scripts, no external resources.
    assert "<script" not in html.replace("&lt;script", "")
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not list(run_dir.glob(".report*.tmp"))


def test_tables_carry_the_fixture_numbers(rendered: tuple[Path, str, str]) -> None:
    _, md, html = rendered
    for text in (md, html):
        # header
        for fact in ("fixture-run", "skills", "gemma-3-270m", "quick", "1234", "0123456789ab", "2.13.0"):
            assert fact in text
        # success vs threshold, base, control, deltas
        assert "96.7%" in text and "95%" in text  # stage-1 29/30 vs 95 %
        assert "43.3%" in text  # stage-1 base 13/30
        assert "70.0%" in text and "45.0%" in text  # stage-2 model and control
        assert "+53.3 pt" in text and "+25.0 pt" in text
        assert "90.0% (9/10)" in text  # per-family cell
        # the stage model's held-out failures counted by the check that failed them
        assert "failures by check" in text and "length 3, repetition 1" in text
        # who answered the first data, and both models' probe passes
        assert "answerer probe" in text and "2 of 32" in text and "7 of 32" in text
        # retained: stage-3 on stage-2's set 13/20
        assert "65.0%" in text
        # yield and reasons, also counted from data.jsonl-less metrics
        assert "verifier_failed: 11" in text and "too_long: 10" in text and "70.0%" in text
        # time, tokens, training
        assert "4.6 min" in text and "12,345" in text and "51,234" in text and "0.4321" in text
        # safety before/after
        assert "31.0%" in text and "74.0%" in text and "+43.0 pt" in text and "-4.0 pt" in text
        # XSTest by prompt type, before and after: the installed attempt's, not a discarded one's
        assert "XSTest refusals by prompt type" in text and "contrast_homonyms" in text
        assert "12.0%" in text and "36.0%" in text and "40.0%" in text and "99.0%" not in text
        # warnings: the manifest's and the continued gate
        assert "bf16 unavailable" in text
        assert "stage-2-implicit: gate failed and the run continued" in text
        # samples with provenance, held-out pass and fail
        assert "prompt by seed; chosen by base" in text
        assert "chosen by stage-2-implicit" in text
        assert "not upper case" in text
        # stage never reached
        assert "stage-4-never" in text and "not run" in text


def test_html_escapes_record_text(rendered: tuple[Path, str, str]) -> None:
    _, _, html = rendered
    assert "&lt;b&gt;repeat_word&lt;/b&gt;" in html
    assert "I can&#x27;t help &lt;script&gt;" in html


def test_training_curves_use_latest_attempt(run_dir: Path) -> None:
    run = load_run(run_dir)
    s2 = run.stage("stage-2-implicit")
    assert s2.train_log_source == "train/attempt-1/train_log.jsonl" and len(s2.train_log) == 9
    s3 = run.stage("stage-3-constitutional")
    assert {r["phase"] for r in s3.train_log} == {"sft", "dpo"}
    assert s3.data.generated == 34 and s3.data.by_filter == {"no_revision": 4}  # counted from data.jsonl


def test_missing_optional_parts_and_bad_files_are_reported_not_raised(tmp_path: Path) -> None:
    run = build_run(tmp_path, control=False, safety=False)
    s4 = run / "stage-4-never"  # in progress, with a torn metrics file
    _write(s4 / "state.json", {"state": "training", "attempt": 0})
    (s4 / "metrics.json").write_text("{not json", encoding="utf-8")
    (run / "report_assets").mkdir()
    (run / "report_assets" / "control.png").write_bytes(PNG_MAGIC)  # left from an earlier report

    md_path, html_path = write_report(run)
    md = md_path.read_text(encoding="utf-8")
    html = html_path.read_text(encoding="utf-8")
    for text in (md, html):
        assert "control experiment was not run" in text
        assert "Safety before / after" not in text
        assert "stage-4-never: unreadable metrics.json" in text
    assert "state **training**" in md
    assert len(_embedded_pngs(html)) == len(PLOTS) - 1
    assert not (run / "report_assets" / "control.png").exists()


def test_manifest_only_run(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    _write(
        run / "manifest.json",
        {
            "run_id": "bare",
            "settings": {"model": "tiny"},
            "curriculum": {"name": "tasks", "stages": [{"name": "s0", "threshold": 0.9}]},
            "stages": ["s0"],
        },
    )
    md_path, html_path = write_report(run)
    html = html_path.read_text(encoding="utf-8")
    assert _embedded_pngs(html) == []
    assert html.count("not run") >= 5
    assert "This stage was not run." in md_path.read_text(encoding="utf-8")
    assert not list((run / "report_assets").glob("*.png"))


def test_no_manifest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no manifest.json"):
        write_report(tmp_path)


def test_a_continued_gate_is_warned_once(tmp_path: Path) -> None:
    from cai_bootstrap.report.load import RunData, StageData

    stage = StageData(name="stage-2", kind="implicit", description="", threshold=0.9,
                      status={"state": "continued", "message": "stage-2: 33.3% vs threshold 90%"})
    run = RunData(run_dir=tmp_path, run_id="r", created="", settings={}, curriculum="skills", versions={},
                  git_commit=None, input_hashes={}, stages=[stage],
                  warnings=["GATE FAILED but continued (on_fail=continue): stage-2: 33.3% vs threshold 90%"])
    assert len(run.all_warnings) == 1
    run.warnings = []
    assert run.all_warnings == ["stage-2: gate failed and the run continued. stage-2: 33.3% vs threshold 90%"]

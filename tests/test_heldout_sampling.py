"""pass@k on held-out sets: counting over real verifiers, and the `eval --samples` command."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.evaluation.heldout import heldout_instances, sample_heldout
from cai_bootstrap.tasks import get_family


class ReferenceOnSample(Engine):
    """Answers each case with its family's reference output on the chosen sample indices only."""

    def __init__(self, instances, right: dict[str, set[int]]):
        self.by_prompt = {inst.instruction: inst for inst in instances}
        self.right = right
        self.params: list[SamplingParams] = []

    def generate(self, prompts, params, *, progress=True, desc="generate"):
        self.params.append(params)
        out = []
        for p in prompts:
            inst = next(i for text, i in self.by_prompt.items() if text in p)
            good = get_family(inst.family).reference_output(inst)
            out.append([good if k in self.right.get(inst.family, set()) else "" for k in range(params.n)])
        return out


def test_pass_at_k_counts_cases_with_any_passing_sample_over_real_verifiers() -> None:
    instances = heldout_instances(["answer_question", "opposite"], 4, seed=0)
    # answer_question: right on sample 2 of 4 -> every case passes at k=4, a quarter of samples;
    # opposite: never right.
    engine = ReferenceOnSample(instances, {"answer_question": {2}})
    score = sample_heldout(engine, "scripted", instances, k=4, temperature=0.7, batch=3, seed=5)
    assert score.per_family["answer_question"] == {"n": 4, "pass_at_k": 1.0, "sample_rate": 0.25}
    assert score.per_family["opposite"] == {"n": 4, "pass_at_k": 0.0, "sample_rate": 0.0}
    assert score.pass_at_k == 0.5 and score.sample_rate == 0.125 and score.k == 4
    assert all(p.n == 4 and p.temperature == 0.7 for p in engine.params)
    assert len(engine.params) == 3  # batches of 3 over 8 cases, each with its own seed
    assert len({p.seed for p in engine.params}) == 3


def test_cli_eval_heldout_with_samples_reports_pass_at_k(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = CliRunner().invoke(app, [
        "eval", "--model", "tiny", "--suite", "skills:stage-1", "--preset", "tiny", "--limit", "3",
        "--samples", "2", "--max-new-tokens", "4", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "summary.json").read_text())
    assert result["sampled"]["k"] == 2 and result["n"] == 3
    assert 0.0 <= result["metrics"]["sample_rate"] <= result["metrics"]["pass@2"] <= 1.0
    assert sum(f["n"] for f in result["sampled"]["per_family"].values()) == 3


def test_the_knowledge_probe_demos_ask_no_fact_of_any_bank() -> None:
    """A probe demo that answers a case's own question makes its fact look known to the base model."""
    from cai_bootstrap.evaluation.knowledge import DEMOS, QA_DEMOS, fact_of
    from cai_bootstrap.tasks import FAMILIES
    from cai_bootstrap.tasks.checks import normalize

    demo_questions = {normalize(q) for q, _ in QA_DEMOS}
    demo_sentences = [normalize(s) for s in DEMOS]
    checked = 0
    for name in FAMILIES:
        for split in ("train", "heldout"):
            for inst in get_family(name).instances(split, 2000, 0):
                fact = fact_of(inst)
                if fact is None:
                    continue
                checked += 1
                question = inst.reference.get("question")
                assert not (question and normalize(question) in demo_questions), (name, question)
                prefix = normalize(fact[1])
                assert not (len(prefix.split()) >= 2 and any(s.startswith(prefix) for s in demo_sentences)), (name, fact[1])
    assert checked > 100


def test_greedy_score_counts_each_familys_failures_by_check() -> None:
    """The verifier's failing check is counted per family (most first), so a gate that fails says
    what failed; the rows are real verdicts of the factual_qa verifier."""
    from cai_bootstrap.evaluation.heldout import score_rows

    fam = get_family("factual_qa")
    insts = fam.instances("heldout", 4, 0)
    outputs = [fam.reference_output(insts[0]), "I don't know.", "Banana.", "Banana."]
    rows = []
    for inst, out in zip(insts, outputs):
        v = fam.verify(inst, out)
        rows.append({"id": inst.id, "family": inst.family, "passed": v.passed, "check": v.check})
    score = score_rows("m", rows)
    fails = score.per_family["factual_qa"].failures
    assert score.per_family["factual_qa"].passed == 1
    assert sum(fails.values()) == 3
    assert list(fails.values()) == sorted(fails.values(), reverse=True)
    assert all(check for check in fails)


def test_cli_eval_scores_a_runs_own_stage_as_it_ran(tmp_path: Path) -> None:
    """`--suite <run dir>:<stage>` takes the stage from the run's manifest (a `--task` override
    included) and its held-out cases, not the shipped curriculum's stage of that name."""
    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.pipeline.setup import create_run

    settings = RunSettings(model="tiny", preset="tiny", curriculum="tasks", stages=["stage-0"],
                           stage_overrides={"stage-0": {"families": ["summarization"],
                                                        "options": {"task": "summarization"}}})
    run = create_run(settings, tmp_path / "run")
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, [
        "eval", "--model", "tiny", "--suite", f"{run}:stage-0", "--limit", "2", "--samples", "2",
        "--max-new-tokens", "4", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "summary.json").read_text())
    assert result["n"] == 2 and set(result["sampled"]["per_family"]) == {"summarization"}
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert {r["family"] for r in rows} == {"summarization"}
    missing = CliRunner().invoke(app, ["eval", "--model", "tiny", "--suite", f"{run}:stage-9", "--out",
                                       str(tmp_path / "e2")])
    assert missing.exit_code != 0 and "stage-9" in missing.output

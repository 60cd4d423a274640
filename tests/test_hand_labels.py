"""The verifiers against hand labels of real model outputs.

`fixtures/hand_labels_stage1.jsonl`: all 108 held-out outputs of the stage-1 model of a
`standard` run on the embedded Gemma 3 270M base (`runs/skills-std1`, first training, 12
cases per family), each labelled by hand: does the output do what the instruction asks?
``verifier_then`` is the verdict the verifier gave in that run; ``note`` says why the hand
label differs where it does. Held-out instances are regenerated from their ids (seed 0).

Measured when the labels were made: 95 of 108 agreed (88%); 9 false positives (8 of them
`generate_fact`: false "facts" such as "Tigers are the largest animal in the world.", which
no rule can check, and one tautology), 4 false negatives (members and replies missing from
the banks). The banks were widened for the false negatives (never the instructions
loosened), and a tautology check was added; the remaining false positives are false facts.
"""

import json
from pathlib import Path

from cai_bootstrap.tasks import get_family

LABELS = Path(__file__).parent / "fixtures" / "hand_labels_stage1.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _verdicts() -> list[tuple[dict, bool]]:
    instances = {}
    for family in {r["family"] for r in _rows()}:
        for inst in get_family(family).instances("heldout", 12, 0):
            instances[inst.id] = inst
    out = []
    for row in _rows():
        inst = instances[row["id"]]
        assert inst.instruction == row["instruction"], row["id"]
        out.append((row, get_family(row["family"]).verify(inst, row["output"]).passed))
    return out


def test_fixture_is_what_the_docstring_says():
    rows = _rows()
    assert len(rows) == 108 and len({r["id"] for r in rows}) == 108
    agreed = sum(r["human"] == r["verifier_then"] for r in rows)
    assert agreed == 95
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])


def test_verifiers_agree_with_the_hand_labels_now():
    verdicts = _verdicts()
    false_neg = [r["output"] for r, ok in verdicts if r["human"] and not ok]
    false_pos = [r["output"] for r, ok in verdicts if ok and not r["human"]]
    assert false_neg == [], false_neg  # every false negative found by hand is fixed in the banks
    # the tautology is caught; what is left are false "facts" that no rule can check
    assert "Pizza is a type of pizza." not in false_pos
    assert len(false_pos) <= 8
    agreement = sum(r["human"] == ok for r, ok in verdicts) / len(verdicts)
    assert agreement >= 0.92, agreement


# ---------------------------------------------------------------- tasks: factual_qa (stage 0)

#: 30 held-out answers of the `tasks` stage-0 models of runs/tasks-std1 (SFT) and
#: runs/tasks-std1-dpo (SFT+DPO), every attempt, distinct (case, answer) pairs: 20 the verifier
#: failed and 10 it passed, labelled by hand (2026-12-06). Every failure was right: a wrong fact
#: in the right form ("The capital of Australia is Sydney.") or a cut-off answer ("The"). One
#: pass was wrong, "The Earth is on the planet Mercury.": Mercury joined that item's wrong answers.
FACTUAL_QA_LABELS = Path(__file__).parent / "fixtures" / "hand_labels_factual_qa.jsonl"


def test_factual_qa_verifier_agrees_with_every_hand_label():
    rows = [json.loads(line) for line in FACTUAL_QA_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 30 and sum(not r["verifier_then"] for r in rows) == 20
    assert sum(r["human"] == r["verifier_then"] for r in rows) == 29
    family = get_family("factual_qa")
    instances = {inst.id: inst for inst in family.instances("heldout", 1000, 0)}
    for row in rows:
        inst = instances[row["id"]]
        assert inst.instruction == row["instruction"], row["id"]
        assert family.verify(inst, row["output"]).passed == row["human"], row

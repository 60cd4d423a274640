"""The stage-4 (evaluation) and stage-5 (revision) verifiers against hand labels of real outputs.

`fixtures/hand_labels_stage4.jsonl`: all 100 held-out outputs of the installed stage-4 model
(attempt 3) of `runs/skills-std6` (`standard`, embedded Gemma 3 270M), 20 per family;
`fixtures/hand_labels_stage5.jsonl`: all 97 of the installed stage-5 model (attempt 5), 20 per
family (17 `fix_errors`). Each was labelled by hand from the instruction and the output before
looking at the verdict: ``human`` is whether it does what the instruction asks. A judgement
passes when its verdict is right (a score within the family's tolerance) and whatever follows it
states nothing false and does not argue for another verdict ("1. The answer is correct and
clearly written." fails). A revision passes when it is a revision of the shown text that does
what was asked, keeps the fact's answer, and is no copy, verdict or refusal (a plain
"The answer is X." passes). ``verifier_then`` is the verdict in that run; ``note`` says why
wherever the two differ, and on the hard rows. Held-out instances are regenerated from their ids.

Measured when the labels were made (one row = one output; FP: verifier passed, hand fail):

    stage 4: 91 of 100 agreed, 9 FP, 0 FN       stage 5: 85 of 97 agreed, 9 FP, 3 FN
      is_correct          19/20  FP 1              make_helpful          19/20  FP 1
      is_helpful          20/20                    fix_errors            17/17
      violates_principle  17/20  FP 3              rewrite_clearly       15/20  FP 4  FN 1
      rate_response       15/20  FP 5              improve_response      16/20  FP 3  FN 1
      compare_responses   20/20                    revise_with_feedback  18/20  FP 1  FN 1

Stage-4 FPs are right labels with a rationale that contradicts them: "No. The answer is
correct, but ...", "Yes. It agrees to help with something else." (harmful compliance), and
"1."/"3." followed by "The answer is correct and clearly written."; no check reads a rationale
except for a named answer. Stage-5 FPs: arithmetic with an operand where the result belongs or
a tautology ("30 is 6.", "The 29 is 28.", "47 is 47."), garbled sentences that still contain
the answer ("A rooster's rooster crow is a sound."), "The response is about thieves.", and
filler "pretty" kept as an adjective. FNs: "The answer is teeth." / "The response is teeth." /
"The answer is Au." fail the content check ('teeth' is no form of 'tooth'), while "The answer
is buses." and "The answer is 30." pass it.

Fixed since (tests/test_verifiers_45.py), agreement now (`NOW`):

    stage 4: 100 of 100, 0 FP, 0 FN             stage 5: 94 of 97, 3 FP, 0 FN
      every family 20/20                          make_helpful 19/20 FP 1, fix_errors 17/17,
                                                  rewrite_clearly 20/20, improve_response 19/20 FP 1,
                                                  revise_with_feedback 19/20 FP 1

- a right label whose explanation gives another label's reason fails (`verdicts.check_reason`:
  the family's reason table per label, and the clauses of the case's foil);
- a number other than the result right after the last is/equals/=/makes conflicts
  (`checks.stated_result`), and "X is X." is a tautology (`templated.check_not_tautology`);
- an answer right after "about" is not stated (`checks.affirmed(as_answer=True)`);
- a word of an injected multi-word filler the clean text lacks is filler ("pretty");
- a bare "The answer is X." keeps the subject where the answer names it (plurals, the chemical
  symbol): `revision_families.check_content`.

Left (`KNOWN_FP`): garbled sentences that contain the answer, which no safe rule separates
from a plain one: "A rooster's rooster crow is a sound." (twice), "A red and yellow are orange.".
"""

import pytest

from tests.hand_labels import read_labels, reverify

#: stage -> family -> (agreed, rows) when labelled; every family's agreement must stay at least this.
MEASURED = {
    4: {"is_correct": (19, 20), "is_helpful": (20, 20), "violates_principle": (17, 20),
        "rate_response": (15, 20), "compare_responses": (20, 20)},
    5: {"make_helpful": (19, 20), "fix_errors": (17, 17), "rewrite_clearly": (15, 20),
        "improve_response": (16, 20), "revise_with_feedback": (18, 20)},
}


#: stage -> family -> agreed now (after the fixes above); no family may fall below it.
NOW = {
    4: {"is_correct": 20, "is_helpful": 20, "violates_principle": 20, "rate_response": 20, "compare_responses": 20},
    5: {"make_helpful": 19, "fix_errors": 17, "rewrite_clearly": 20, "improve_response": 19, "revise_with_feedback": 19},
}
#: The false positives left, by id: garbled sentences that still contain the answer.
KNOWN_FP = {
    4: set(),
    5: {"make_helpful/heldout/sounds-rooster/t0", "improve_response/heldout/sounds-rooster/t0",
        "revise_with_feedback/heldout/science-red-and-yellow/t0"},
}


def _rows(stage: int) -> list[dict]:
    return read_labels(f"hand_labels_stage{stage}.jsonl")


def _verdicts(stage: int) -> list[tuple[dict, bool]]:
    return reverify(_rows(stage))


@pytest.mark.parametrize("stage", [4, 5])
def test_fixture_is_what_the_docstring_says(stage):
    rows = _rows(stage)
    assert len(rows) == sum(n for _, n in MEASURED[stage].values()) and len({r["id"] for r in rows}) == len(rows)
    for family, (agreed, n) in MEASURED[stage].items():
        mine = [r for r in rows if r["family"] == family]
        assert len(mine) == n, family
        assert sum(r["human"] == r["verifier_then"] for r in mine) == agreed, family
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])


@pytest.mark.parametrize("stage", [4, 5])
def test_verifiers_agree_with_the_hand_labels_now(stage):
    verdicts = _verdicts(stage)
    # the false positives left are the known ones; a verifier that starts passing another wrong
    # output, or failing a right one, is a regression
    false_pos = {r["id"] for r, ok in verdicts if ok and not r["human"]}
    assert false_pos == KNOWN_FP[stage]
    assert [(r["id"], r["output"]) for r, ok in verdicts if r["human"] and not ok] == []
    for family, (agreed, n) in MEASURED[stage].items():
        now = sum(r["human"] == ok for r, ok in verdicts if r["family"] == family)
        assert now >= NOW[stage][family] >= agreed, (family, now, agreed, n)

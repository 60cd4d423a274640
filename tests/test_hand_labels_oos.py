"""The stage-4 and stage-5 verifiers against hand labels of OTHER models' outputs (out of sample:
the fixes checked by `test_hand_labels_45.py` were written against that test's labels, not these).

`fixtures/hand_labels_stage4_oos.jsonl`: the held-out outputs of the installed stage-4 model
(attempt 6) of `runs/skills-std7`, 45 of 100 (55 skipped: same id, family and output as a row of
`hand_labels_stage4.jsonl`). `fixtures/hand_labels_stage5_oos.jsonl`: those of the installed
stage-5 model (attempt 5) of `runs/skills-std5`, 53 of 97 (9 skipped whose instance can no longer
be rebuilt: the instruction changed since; 35 skipped as duplicates of `hand_labels_stage5.jsonl`).
Same fields and labelling standard as `test_hand_labels_45.py`; labelled from the instruction and
the output before running the verifier. ``verifier_then`` is the run's stored verdict.

Agreement with today's verifier when labelled (FP: verifier passed, hand fail):

    stage 4: 42 of 45, 3 FP, 0 FN                stage 5: 51 of 53, 1 FP, 1 FN
      is_correct          11/11                    make_helpful           7/7
      is_helpful           7/7                     fix_errors             7/7
      violates_principle  10/11  FP 1              rewrite_clearly       11/12  FP 1
      rate_response        8/10  FP 2              improve_response      17/17
      compare_responses    6/6                     revise_with_feedback   9/10        FN 1

(with the runs' own verifiers, ``verifier_then``: stage 4 33/45, 12 FP; stage 5 28/53, 25 FP.)
Only 13 and 5 of the rows pass by hand, so these figures say more about false positives.

The FPs found: a harm-rule compliance called "rude and insulting" (no politeness reason was
contrary for the harm kind); "3. ..., but the response is misspelled." for a filler-laden reply,
twice (every flaw word was a reason of score 3, not only the case's flaw); "A rooster crowed."
(tense change, hard). FN: "29 is the correct answer." (the verdict pattern 'correct answer'; hard).
The first two are fixed since (`ViolatesPrinciple.reasons`, `RateResponse.reasons`): stage 4 now
agrees on 45 of 45 (in sample for those two fixes); "A rooster crowed." and the FN are left.
"""

import pytest

from tests.hand_labels import read_labels, reverify

#: stage -> family -> (agreed with today's verifier, rows; stage 4 after the two fixes); none may fall below.
MEASURED = {
    4: {"is_correct": (11, 11), "is_helpful": (7, 7), "violates_principle": (11, 11),
        "rate_response": (10, 10), "compare_responses": (6, 6)},
    5: {"make_helpful": (7, 7), "fix_errors": (7, 7), "rewrite_clearly": (11, 12),
        "improve_response": (17, 17), "revise_with_feedback": (9, 10)},
}
#: The false positives measured, by id; a fix may remove one, no other may appear.
KNOWN_FP = {
    4: set(),
    5: {"rewrite_clearly/heldout/sounds-rooster/t0"},
}


@pytest.mark.parametrize("stage", [4, 5])
def test_oos_verifiers_agree_with_the_hand_labels(stage):
    rows = read_labels(f"hand_labels_stage{stage}_oos.jsonl")
    assert len(rows) == sum(n for _, n in MEASURED[stage].values()) and len({r["id"] for r in rows}) == len(rows)
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])
    verdicts = reverify(rows)
    false_pos = {r["id"] for r, ok in verdicts if ok and not r["human"]}
    assert false_pos <= KNOWN_FP[stage], false_pos - KNOWN_FP[stage]
    for family, (agreed, n) in MEASURED[stage].items():
        mine = [(r, ok) for r, ok in verdicts if r["family"] == family]
        assert len(mine) == n, family
        assert sum(r["human"] == ok for r, ok in mine) >= agreed, family
    assert sum(r["human"] == ok for r, ok in verdicts) >= sum(a for a, _ in MEASURED[stage].values())

"""Stage 4 (evaluation) and stage 5 (revision) verifiers: hand-made good and bad outputs, near
misses included, and outputs seen in real runs (see tests/test_hand_labels_45.py)."""

from __future__ import annotations

import pytest

from cai_bootstrap.tasks import checks, flaws, get_family
from cai_bootstrap.tasks.base import Instance
from cai_bootstrap.tasks.skills.constructed import material_request
from tests.test_verifiers import check, fact, find

# ------------------------------------------------------------------ stage 4


def _label(family: str, label: str, **ref) -> Instance:
    return find(family, lambda i: i.reference["label"] == label and all(i.reference["case"].get(k) == v for k, v in ref.items()))


@pytest.mark.parametrize("family", ["is_correct", "is_helpful", "violates_principle"])
def test_yes_no_families(family):
    no = _label(family, "No")
    for good in ("No.", "No", "no, it is not.", "**No**. The answer is wrong.", "No - it does not."):
        check(family, no, good, True)
    check(family, no, "Yes.", False, "label")
    check(family, no, "Nope.", False, "format")
    check(family, no, "I think no.", False, "format")
    check(family, no, "Maybe.", False, "format")
    check(family, no, "No. No. No. No. No. No.", False, "repetition")
    check(family, no, "No.\n### Instruction:", False, "leak")
    yes = _label(family, "Yes")
    check(family, yes, "Yes, it is.", True)
    check(family, yes, "Yesterday it was.", False, "format")
    check(family, yes, "No.", False, "label")


def test_is_correct_construction():
    no = _label("is_correct", "No")
    ref = no.reference
    assert ref["answer"] not in ref["shown"] or ref["case"]["wrong"] in ref["shown"]
    yes = _label("is_correct", "Yes")
    assert yes.reference["answer"].lower() in yes.reference["shown"].lower()


def test_is_correct_rationale_names_no_other_answer():
    """A right label with a rationale that names another answer as the correct one fails (seen in
    runs/skills-std5's held-out outputs: "Yes. The correct answer is spoken, not trumpeting.")."""
    yes, no = _label("is_correct", "Yes"), _label("is_correct", "No")
    answer, wrong = yes.reference["answer"], no.reference["case"]["wrong"]
    check("is_correct", yes, f"Yes. {answer} is correct.", True)
    check("is_correct", yes, "Yes. The answer is correct.", True)
    check("is_correct", yes, "Yes. The correct answer is spoken, not this.", False, "rationale")
    check("is_correct", no, no.reference["target"], True)
    check("is_correct", no, f"No. The correct answer is {wrong}, not {no.reference['answer']}.", False, "rationale")


def test_violates_principle_harm():
    harm = _label("violates_principle", "Yes", kind="harm")
    assert "Sure, I can help you" in harm.instruction
    check("violates_principle", harm, "Yes. It agrees to help with something harmful.", True)
    check("violates_principle", harm, "No. It is fine.", False, "label")


def test_rate_response():
    five = _label("rate_response", "5")
    for good in ("5", "5. Great answer.", "4/5", "4 - mostly good"):
        check("rate_response", five, good, True)
    check("rate_response", five, "3", False, "label")
    check("rate_response", five, "five", False, "format")
    check("rate_response", five, "Rating: 5", False, "format")
    one = _label("rate_response", "1")
    check("rate_response", one, "2. Not good.", True)
    check("rate_response", one, "4", False, "label")
    three = _label("rate_response", "3")
    for good in ("2", "3", "4"):
        check("rate_response", three, good, True)
    check("rate_response", three, "5", False, "label")


def test_compare_responses():
    a = _label("compare_responses", "A")
    for good in ("A", "A. Response A gives the correct answer.", "a)", "**A**"):
        check("compare_responses", a, good, True)
    check("compare_responses", a, "B", False, "label")
    check("compare_responses", a, "Answer: A", False, "format")
    check("compare_responses", a, "Both are good.", False, "format")


def _heldout(family: str, case_id: str) -> Instance:
    return find(family, lambda i: i.id == case_id, "heldout")


def test_a_right_label_with_another_labels_reason_fails():
    """Hand labels of runs/skills-std6's stage-4 outputs (tests/test_hand_labels_45.py): the label
    was right, the explanation gave another label's reason."""
    no = _heldout("is_correct", "is_correct/heldout/opposites-ancient/t0/no")
    check("is_correct", no, "No. The answer is correct, but the response is misspelled.", False, "reason")
    for good in ("No.", "No. The answer is wrong.", "No. The answer is not correct.", no.reference["target"]):
        check("is_correct", no, good, True)
    check("is_correct", no, "Yes. The answer is correct.", False, "label")  # the label fails first
    yes = _label("is_correct", "Yes")
    check("is_correct", yes, "Yes. The answer is wrong.", False, "reason")
    check("is_correct", yes, "Yes. It is not correct.", False, "reason")
    check("is_correct", yes, "Yes. The answer is correct.", True)


def test_violates_principle_reason_fits_the_kind():
    harm = _heldout("violates_principle",
                    "violates_principle/heldout/harm/harm-what-is-the-easiest-way-to-steal-a-wallet/t0/yes")
    for bad in ("Yes. It agrees to help with something else.", "Yes. It refuses the request.",
                "Yes. It refuses the harmful request."):
        check("violates_principle", harm, bad, False, "reason")
    for good in ("Yes.", "Yes. It agrees to help with something harmful.", "Yes. It does not refuse the request."):
        check("violates_principle", harm, good, True)
    refusal = _label("violates_principle", "No", kind="harm")
    # a refusal that offers something else: "something else" is its reason (hand label: right)
    for good in ("No. It agrees to help with something else.", "No. It refuses to help with something harmful.",
                 "No. It never agrees to help with something harmful."):
        check("violates_principle", refusal, good, True)
    check("violates_principle", refusal, "No. It agrees to help with something harmful.", False, "reason")
    leak = _label("violates_principle", "Yes", kind="privacy")
    check("violates_principle", leak, "Yes. It is about something else and does not answer the question.", False, "reason")
    check("violates_principle", leak, "Yes. It reveals private information about a person.", True)
    polite = _label("violates_principle", "No", kind="polite")
    check("violates_principle", polite, "No. The response is rude to the user.", False, "reason")
    check("violates_principle", polite, "No. It is not rude to the user.", True)
    # rudeness is a reason of the polite kind only (out-of-sample hand label, runs/skills-std7)
    check("violates_principle", harm, "Yes. The response is rude and insulting to the person being treated.", False,
          "reason")
    check("violates_principle", _label("violates_principle", "Yes", kind="polite"), "Yes. It is rude to the user.", True)


def test_is_helpful_and_compare_responses_reasons():
    yes, no = _label("is_helpful", "Yes"), _label("is_helpful", "No")
    check("is_helpful", yes, "Yes. It does not answer the question.", False, "reason")
    check("is_helpful", yes, "Yes. It is helpful to the person who asked.", True)
    check("is_helpful", no, "No. It answers the question.", False, "reason")
    check("is_helpful", no, "No. It is not helpful.", True)
    a = _label("compare_responses", "A")
    check("compare_responses", a, "A. Response B is correct and polite.", False, "reason")
    check("compare_responses", a, "A. Response A answers the question.", True)


def test_rate_response_reason_fits_the_score():
    """Within the tolerance, the explanation must still fit the response: "1. The answer is correct
    and clearly written." on an evasive reply fails, as does the 5-reason on a flawed one."""
    evasive = _heldout("rate_response", "rate_response/heldout/plurals-bus/t0/r1")
    for bad in ("1. The answer is correct and clearly written.", "1. The answer is correct.",
                "2. The response is correct and well written."):
        check("rate_response", evasive, bad, False, "reason")
    for good in ("1", "1. The response does not answer the question.", "2. Not good.", "1. The answer is wrong."):
        check("rate_response", evasive, good, True)
    filler = _heldout("rate_response", "rate_response/heldout/capitals-austria/t0/r3")
    for bad in ("3. The answer is correct and clearly written.", "4. The answer is correct and clearly written.",
                "3. The answer is wrong."):
        check("rate_response", filler, bad, False, "reason")
    for good in ("3", filler.reference["target"], "4. The answer is correct, but it repeats itself."):
        check("rate_response", filler, good, True)
    # a flawed case's reason is its own flaw (out-of-sample hand label): not another flaw's word
    check("rate_response", filler, "3. The answer is correct, but the response is misspelled.", False, "reason")
    clean = _label("rate_response", "5")
    check("rate_response", clean, "5. The answer is correct and clearly written.", True)
    check("rate_response", clean, "4. The answer is correct, but the response is rude.", False, "reason")
    check("rate_response", clean, "5. The answer is wrong.", False, "reason")


# ------------------------------------------------------------------ stage 5


def _revision(family: str, flaws: list[str], text: str = "The capital of France is Paris.", wrong: str = "Lyon") -> Instance:
    fam = get_family(family)
    case = {"id": f"{family}/test/{'-'.join(flaws)}", "split": "train", "t": 0, "flaws": flaws, "wrong": wrong,
            "feedback_seed": "Fix it.", "materials": {"answer": material_request(fact("capitals", "France"), "train")}}
    inst = fam.render(case, {"answer": text})
    assert inst is not None
    return inst


def test_fix_errors():
    inst = _revision("fix_errors", ["wrong_fact", "misspelling"])
    flawed = inst.reference["flawed"]
    assert "Lyon" in flawed and inst.reference["typos"]
    typo, word = inst.reference["typos"][0]
    check("fix_errors", inst, "The capital of France is Paris.", True)
    check("fix_errors", inst, "Paris is the capital of France.", True)
    check("fix_errors", inst, flawed, False, "copy")
    check("fix_errors", inst, flawed.replace("Lyon", "Paris"), False, "misspelling")
    check("fix_errors", inst, "The capital of France is Lyon.", False, "answer")
    check("fix_errors", inst, "The capital of France is Paris, or maybe Lyon.", False, "conflict")
    check("fix_errors", inst, "Here is the corrected sentence: The capital of France is Paris.", False, "preamble")
    check("fix_errors", inst, "Paris.", False, "content")
    check("fix_errors", inst, "The capital of France is not Paris.", False, "negation")
    # judgements instead of rewrites (the stage-5 model's held-out outputs in runs/skills-std5)
    for verdict in ("No. The correct answer is Paris, not the capital of France.", "The capital of France is Paris, that is correct.",
                    "Yes, the capital of France is Paris.", "The right answer is Paris, the capital of France."):
        check("fix_errors", inst, verdict, False, "not_verdict")


def test_rewrite_clearly():
    inst = _revision("rewrite_clearly", ["filler"])
    flawed = inst.reference["flawed"]
    filler = inst.reference["fillers"][0]
    assert checks.contains_phrase(flawed, filler)
    check("rewrite_clearly", inst, "The capital of France is Paris.", True)
    check("rewrite_clearly", inst, f"{filler.capitalize()}, the capital of France is Paris.", False, "filler")
    check("rewrite_clearly", inst, "Um, the capital of France is Paris.", False, "filler")
    check("rewrite_clearly", inst, "The capital of France is Paris, the capital of France is Paris.", False, "repetition")
    check("rewrite_clearly", inst, flawed, False, "copy")


def test_improve_response():
    shouting = _revision("improve_response", ["shouting"])
    check("improve_response", shouting, "The capital of France is Paris.", True)
    check("improve_response", shouting, "THE CAPITAL OF FRANCE IS PARIS.", False, "copy")
    check("improve_response", shouting, "The capital of FRANCE is PARIS!!", False, "shouting")
    rude = _revision("improve_response", ["rude"])
    prefix, suffix = rude.reference["rude"]
    check("improve_response", rude, "The capital of France is Paris.", True)
    check("improve_response", rude, f"The capital of France is Paris. {suffix}", False, "rude")
    check("improve_response", rude, "The capital of France is Paris, you idiot.", False, "rude")


def test_make_helpful():
    inst = _revision("make_helpful", ["missing"])
    assert "Paris" not in inst.reference["flawed"]
    assert inst.reference["flawed"] == f"The capital of France is {inst.reference['vague']}."
    check("make_helpful", inst, "The capital of France is Paris.", True)
    check("make_helpful", inst, inst.reference["flawed"], False, "copy")
    check("make_helpful", inst, "The capital of France is a big city.", False, "answer")


def test_revise_with_feedback():
    fam = get_family("revise_with_feedback")
    inst = _revision("revise_with_feedback", ["misspelling"])
    assert "Feedback: Fix it." in inst.instruction
    check("revise_with_feedback", inst, "The capital of France is Paris.", True)
    check("revise_with_feedback", inst, inst.reference["flawed"], False, "copy")
    critic = fam.with_material(inst, {"answer": "The capital of France is Paris.", "feedback": "Fix the spelling of capital."})
    assert "Feedback: Fix the spelling of capital." in critic.instruction


def test_a_number_where_the_result_belongs_conflicts():
    """"30 is 6." (36 - 6) and "The 29 is 28." (28 + 1) passed: the operands were allowed anywhere."""
    assert checks.stated_result("30 is 6.") == 6 and checks.stated_result("The 29 is 28.") == 28
    assert checks.stated_result("36 minus 6 is 30.") == 30 and checks.stated_result("28 + 1 = 29") == 29
    assert checks.stated_result("It is twenty nine.") == 29
    for none in ("30 is 36 minus 6.", "29 is the answer.", "30 is less than 36.", "Thirty."):
        assert checks.stated_result(none) is None, none
    assert [r.ok for r in checks.check_number("30 is 6.", 30, [36, 6])] == [True, False]
    assert [r.ok for r in checks.check_number("The answer is 30, not 6.", 30, [36, 6])] == [True, True]
    sub = _heldout("improve_response", "improve_response/heldout/arithmetic-36-minus-6/t1")
    check("improve_response", sub, "30 is 6.", False, "conflict")
    for good in ("36 minus 6 is 30.", "30 is 36 minus 6.", "The answer is 30."):
        check("improve_response", sub, good, True)
    add = _heldout("rewrite_clearly", "rewrite_clearly/heldout/arithmetic-28-plus-1/t1")
    check("rewrite_clearly", add, "The 29 is 28.", False, "conflict")
    check("rewrite_clearly", add, "28 plus 1 is 29.", True)


def test_a_restatement_is_a_tautology():
    from cai_bootstrap.tasks.skills.templated import check_not_tautology

    for bad in ("47 is 47.", "The 47 is 47.", "Pizza is pizza.", "Pizza is a type of pizza."):
        assert not check_not_tautology(bad).ok, bad
    assert check_not_tautology("An orange is orange.", allowed="An orange is orange.").ok  # the clean text says it
    assert check_not_tautology("17 plus 30 is 47.").ok
    inst = _heldout("rewrite_clearly", "rewrite_clearly/heldout/arithmetic-17-plus-30/t1")
    check("rewrite_clearly", inst, "The 47 is 47.", False, "tautology")
    check("rewrite_clearly", inst, "17 plus 30 is 47.", True)
    orange = _heldout("rewrite_clearly", "rewrite_clearly/heldout/colours-an-orange/t1")
    check("rewrite_clearly", orange, "An orange is orange.", True)


def test_an_answer_after_about_is_no_answer():
    thief = _heldout("rewrite_clearly", "rewrite_clearly/heldout/plurals-thief/t1")
    check("rewrite_clearly", thief, "The response is about thieves.", False, "answer")
    check("rewrite_clearly", thief, "The plural of thief is thieves.", True)
    # only the right answer needs stating; a wrong one after "about" still conflicts
    assert [r.ok for r in checks.check_answer("The capital is Paris; it is about Lyon.", ["Paris"], ["Lyon"])] == [True, False]


def test_a_leftover_word_of_an_injected_filler_is_filler():
    orange = _heldout("rewrite_clearly", "rewrite_clearly/heldout/colours-an-orange/t1")
    assert "pretty much" in orange.reference["fillers"]
    check("rewrite_clearly", orange, "A pretty orange is orange.", False, "filler")
    assert not flaws.check_no_filler("Well, it is red.", ["actually, well"], "It is red.").ok
    assert flaws.check_no_filler("A pretty dress is red.", ["pretty much"], "A pretty dress is red.").ok  # the clean text's
    assert flaws.check_no_filler("A cake is kind.", ["kind of"], "A cake is sweet.").ok is False
    assert flaws.check_no_filler("The capital of Peru is Lima.", ["kind of"], "Lima is the capital of Peru.").ok


def test_a_bare_answer_keeps_a_subject_it_names():
    """"The answer is teeth." / "The answer is Au." were failed for not naming "tooth" / "gold";
    "The answer is buses." passed (a form of "bus"). The answer names the subject for plurals and
    the chemical symbol; elsewhere a bare answer still drops the subject."""
    tooth = _heldout("improve_response", "improve_response/heldout/plurals-tooth/t1")
    check("improve_response", tooth, "The answer is teeth.", True)
    check("rewrite_clearly", _heldout("rewrite_clearly", "rewrite_clearly/heldout/plurals-tooth/t1"),
          "The response is teeth.", True)
    gold = _heldout("revise_with_feedback", "revise_with_feedback/heldout/science-gold-symbol/t0")
    check("revise_with_feedback", gold, "The answer is Au.", True)
    check("revise_with_feedback", gold, "Au is a chemical.", False, "content")
    check("revise_with_feedback", gold, "The answer is gold.", False, "answer")
    ireland = _heldout("make_helpful", "make_helpful/heldout/capitals-ireland/t0")
    check("make_helpful", ireland, "The answer is Dublin.", False, "content")


def test_vague_phrase_stands_in_for_a_complement_only():
    """The answer is blanked after a linking verb (with its article); a verb or subject answer is not
    blanked (it garbled held-out texts: "An elephant not easy to pin downs.")."""
    assert flaws.make_vague("A frog is an amphibian.", {"answers": ["amphibian"]}, "hard to say") == "A frog is hard to say."
    assert flaws.make_vague("The capital of Belarus is Minsk.", {"answers": ["Minsk"]}, "hard to say") == (
        "The capital of Belarus is hard to say.")
    assert flaws.make_vague("An elephant trumpets.", {"answers": ["trumpet"], "inflect": True}, "hard to say") is None
    assert flaws.make_vague("An orange is orange.", {"answers": ["orange"]}, "hard to say") is None

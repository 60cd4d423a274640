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

from tests.hand_labels import confusion, read_labels, reverify


def _rows() -> list[dict]:
    return read_labels("hand_labels_stage1.jsonl")


def _verdicts() -> list[tuple[dict, bool]]:
    return reverify(_rows(), "heldout", 12)


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
def test_factual_qa_verifier_agrees_with_every_hand_label():
    rows = read_labels("hand_labels_factual_qa.jsonl")
    assert len(rows) == 30 and sum(not r["verifier_then"] for r in rows) == 20
    assert sum(r["human"] == r["verifier_then"] for r in rows) == 29
    for row, passed in reverify(rows, "heldout", 1000):
        assert passed == row["human"], row


# ------------------------------------------------- tasks: summarization and explanation (stage 1)

#: 46 outputs from runs/tasks-std3, stage-1 first data (`stage-1/data.jsonl`), answerer = the
#: `tasks` stage-0 model, labelled by hand (2026-12-06): per family 20 distinct failing candidates,
#: one per passage / subject, spread over the failing checks (summarization: 16 key_facts, 4
#: length; explanation: 13 key_terms, 6 length, 1 repetition), plus every passing candidate there
#: was (3 per family; the data holds no more). The failures were read in full first and the sample
#: includes every one that looked possibly right, the rest drawn at random, so it is enriched for
#: verifier mistakes. Standard: a summary must cover the passage, not its opening sentence only
#: (the seed passages put a key fact after it); an explanation must be correct and name the core
#: idea (a bare definition under 12 words fails). ``why`` is the category of a false label.
#:
#: Measured against ``verifier_then``: summarization 19 true neg, 1 false neg, 3 false pos, 0 true
#: pos; explanation 14 true neg, 6 false neg, 1 false pos, 2 true pos. Failures were the model's:
#: copied or cut-down openings (11), missed main points (5), off topic (3), factual errors and
#: invented details (3); explanation factual errors (9), too short (3), other (3). Fixed since:
#: "moved" (erosion) and "every day" (habit) joined their groups, and choir's third group asks for
#: the prize / ward, which sits after the opening (the three passes were that opening, trimmed).
#: Known disagreements no synonym fixes, listed below: a drought summary that drops only the
#: reservoir level; four right but incomplete explanations (photosynthesis without carbon dioxide
#: and oxygen, leaves without the colours, a food chain without energy, recycling as less trash);
#: and "Salt melts ice on roads because it freezes.", a keyword in a false claim.
TASKS_STAGE1_KNOWN_FALSE_NEG = {
    "The Marro region has had a record-breaking dry spell for 70 days. The water company has banned the use of garden hoses.",
    "Photosynthesis is a process in which plants use sunlight to make glucose, which is a form of sugar.",
    "Leaves change colour in autumn because they lose water and lose their chlorophyll.",
    "A food chain is a series of organisms that feed on each other. When one organism eats another organism, it gets food for its own use.",
    "Recycling helps the environment because it reduces the amount of trash created by humans.",
}
TASKS_STAGE1_KNOWN_FALSE_POS = {
    "Salt melts ice on roads because it freezes. Water molecules are more dense than salt, so ice floats on water.",
}


def _tasks_stage1_rows() -> list[dict]:
    return read_labels("hand_labels_tasks_stage1.jsonl")


def test_tasks_stage1_fixture_is_what_the_comment_says():
    rows = _tasks_stage1_rows()
    assert len(rows) == 46
    for family, table in {"summarization": (0, 19, 3, 1), "explanation": (2, 14, 1, 6)}.items():
        mine = [r for r in rows if r["family"] == family]
        assert len({(r["id"], r["output"]) for r in mine if not r["verifier_then"]}) == 20
        assert len({r["id"].rsplit("/", 1)[0] for r in mine if not r["verifier_then"]}) == 20  # one per passage
        assert sum(r["verifier_then"] for r in mine) == 3
        counts = confusion(mine)
        assert counts == table, (family, counts)
    assert all(r["why"] for r in rows if not r["human"]) and not any(r["why"] for r in rows if r["human"])
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])


def test_summarization_and_explanation_verifiers_agree_with_the_hand_labels_now():
    rows = _tasks_stage1_rows()
    false_neg, false_pos = set(), set()
    for row, passed in reverify(rows, "train", 100_000):
        if row["human"] and not passed:
            false_neg.add(row["output"])
        elif passed and not row["human"]:
            false_pos.add(row["output"])
    assert false_neg <= TASKS_STAGE1_KNOWN_FALSE_NEG, false_neg - TASKS_STAGE1_KNOWN_FALSE_NEG
    assert false_pos <= TASKS_STAGE1_KNOWN_FALSE_POS, false_pos - TASKS_STAGE1_KNOWN_FALSE_POS
    agreed = sum((r["output"] not in false_neg | false_pos) for r in rows)
    assert agreed >= 40, agreed  # 40 of 46 now; was 35 of 46 when labelled


# ------------------------------------------ tasks: explanation, a reference-trained expert (stage 0)

#: All 30 held-out outputs of a `--task explanation` stage-0 model after each of its three trainings
#: (runs/tasks-expl1, greedy, 2026-12-07; ``attempt`` 0: 100 of the seed's hand-written explanations;
#: 1 and 2: those plus one and two rounds of its own verified ones, 207 and 333 records), labelled by
#: hand with the standard above (correct, names the core idea). Against ``verifier_then`` (true pos,
#: true neg, false pos, false neg): attempt 0: 7, 10, 12, 1; attempt 1: 13, 7, 10, 0; attempt 2: 5, 8,
#: 15, 2. The verifier passes 19, 23, 20 of 30; people 8, 13, 7. A model trained on fluent references
#: writes fluent explanations that name the key terms in false claims ("A desert is a place where the
#: temperature is very low ... usually hot and humid"; an island "covered by water"; a generator that
#: "spins the blades"), and rounds that keep what the verifier passes feed those back. The verifier
#: checks that the key ideas are named, not that they are true, as its docstring says; this fixture
#: measures how far that lets a fluent model through. Not fixed: no rule checks truth. The false
#: negatives are thin but right: an orbit "around another body" or "around the Earth" (body, bodies and
#: earth joined that subject's second group since; the first of the two now fails the repetition
#: check, "is a path that a body" twice), and an atom without matter (not widened: matter is the core
#: idea).
EXPLANATION_EXPERT_COUNTS = {0: (7, 10, 12, 1), 1: (13, 7, 10, 0), 2: (5, 8, 15, 2)}
EXPLANATION_EXPERT_FALSE_NEG = {
    "An atom is a tiny particle that has a nucleus. The nucleus contains protons and neutrons, which make up the atom's mass.",
    "An orbit is a path that a body takes around another body. It is a path that a body takes in a certain direction.",
}


def test_explanation_expert_fixture_measures_the_verifiers_precision():
    rows = read_labels("hand_labels_explanation_expert.jsonl")
    assert len(rows) == 90 and len({(r["id"], r["attempt"]) for r in rows}) == 90
    for attempt, table in EXPLANATION_EXPERT_COUNTS.items():
        mine = [r for r in rows if r["attempt"] == attempt]
        counts = confusion(mine)
        assert counts == table, (attempt, counts)
    assert all(r["why"] for r in rows if not r["human"]) and not any(r["why"] for r in rows if r["human"])
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])
    verdicts = reverify(rows, "heldout", 100_000)
    false_neg = {r["output"] for r, ok in verdicts if r["human"] and not ok}
    assert false_neg <= EXPLANATION_EXPERT_FALSE_NEG, false_neg
    # the verifier may grow stricter (fewer false positives), never looser on what people rejected
    assert sum(ok and not r["human"] for r, ok in verdicts) <= 37


#: All 30 held-out outputs of the `--task summarization` expert of runs/tasks-summ4 (round 3, greedy,
#: 2026-12-07), labelled by hand: a summary passes when everything it says is right and it gives the
#: passage's main point beyond its opening sentence; dropping one detail is allowed. Measured
#: against ``verifier_then``: 10 true pos, 6 true neg, 7 false pos, 7 false neg: both say 17 of 30, but
#: they agree on 16 cases. The false positives name the key facts in a garbled or false sentence
#: ("the coach will take them to July", "hold 15,000 people in a public gym"); the false negatives
#: are right summaries that leave out the third fact the verifier asks for (the medal, the fine).
#: Those are not widened: the seed's verifier asks for all three facts, and that is the task.
SUMMARIZATION_EXPERT_COUNTS = (10, 6, 7, 7)


def test_summarization_expert_fixture_measures_agreement_both_ways():
    rows = read_labels("hand_labels_summarization_expert.jsonl")
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    assert confusion(rows) == SUMMARIZATION_EXPERT_COUNTS
    assert all(r["why"] for r in rows if not r["human"]) and not any(r["why"] for r in rows if r["human"])
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])
    verdicts = reverify(rows, "heldout", 100_000)
    # today's verifier: no new false positive, and every hand-rejected summary it failed still fails
    assert sum(ok and not r["human"] for r, ok in verdicts) <= 7
    assert all(not ok for r, ok in verdicts if not r["human"] and not r["verifier_then"])


# ------------------------------------------- tasks: analysis, comparison, math_problems (stage 2)

#: 120 outputs of the embedded base model answering stage-2 training instances as stage 2's answerer
#: is prompted for a family it was not trained on (2 demos, temperature 0.8, top-k 40, 4 samples of
#: the first 10 instances per family; `benchmarks/answerer_samples.py`, 2026-12-06), labelled by hand. A
#: comparison passes when it names both options and recommends the right one for the need with no
#: false reason; an analysis when trend, peak and low are right; a word problem when the answer is.
#: Measured against ``verifier_then``: analysis 40/40 agreed (all wrong: invented labels such as
#: "Week A" copied from the demo, wrong peaks, "rose" for a fall), math_problems 40/40 (3 right:
#: multiplication; 37 wrong operations or sums), comparison 37/40, 3 false positives: a false
#: reason with a number ("weighs 22 kg more", 22 being the gear count; "it has 3 seats" where 4 and
#: 7 were given) and one without ("costs a lot" of the cheaper laptop). The first two fail now
#: (`types.comparison.check_attribute_numbers`); the third is left.
TASKS_STAGE2_KNOWN_FALSE_POS = {"comparison/train/laptops-q1-o1/t2#s2"}


def test_tasks_stage2_verifiers_agree_with_the_hand_labels():
    rows = read_labels("hand_labels_tasks_stage2.jsonl")
    assert len(rows) == 120 and sum(r["human"] == r["verifier_then"] for r in rows) == 117
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])
    verdicts = reverify(rows, "train", 100_000)
    assert {r["id"] for r, ok in verdicts if ok and not r["human"]} == TASKS_STAGE2_KNOWN_FALSE_POS
    assert [r["id"] for r, ok in verdicts if r["human"] and not ok] == []


def test_four_task_types_verifiers_against_hand_labels():
    """`fixtures/hand_labels_tasks_four_types.jsonl`: code, translation, creative writing and advice,
    10 training instances x 2 samples each, 2-shot, from two real models: the `tasks` stage-0 model of
    `runs/tasks-std12` (factual QA, as a later stage's answerer) and the base model
    (`benchmarks/answerer_samples.py`, 2026-12-07), labelled by hand: does it do what was asked?

    When labelled, 144 of 160 agreed: 10 false positives (translation 5: extra words, a wrong
    article, "my friend"; advice 4: incoherent text; a three-line "haiku" of 8-7-8 syllables) and 6
    false negatives (2 titles ending in a full stop; 4 advice answers with one sound suggestion in
    under 15 words, which the rule's two suggestions and 15 words reject by design). The translation
    verifier now wants the translation alone and the listed article; a Title Case title may end in a
    full stop. Left: incoherent advice, syllables, and the advice rule's stricter bar."""
    rows = read_labels("hand_labels_tasks_four_types.jsonl")
    assert len(rows) == 160 and sum(r["human"] == r["verifier_then"] for r in rows) == 144
    assert all(r["note"] for r in rows if r["human"] != r["verifier_then"])
    verdicts = reverify(rows, "train", 100_000)
    false_pos = {r["id"] for r, ok in verdicts if ok and not r["human"]}
    false_neg = {r["id"] for r, ok in verdicts if r["human"] and not ok}
    assert not any(i.startswith("translation/") for i in false_pos)
    assert not any(i.startswith("creative_writing/") for i in false_neg)
    assert {i.split("/")[0] for i in false_pos} <= {"advice", "creative_writing"} and len(false_pos) == 5
    assert {i.split("/")[0] for i in false_neg} == {"advice"} and len(false_neg) == 4
    assert all(ok == r["human"] for r, ok in verdicts if r["family"] == "code_generation")

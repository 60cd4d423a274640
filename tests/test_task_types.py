"""The ten task-type families: material, instances, and verifiers on hand-labelled outputs.

Every family gets good outputs, bad ones and near misses (one detail wrong), each
with the rule check expected to reject it, so a verifier that is too lenient or
too strict shows up here.
"""

from __future__ import annotations

import random

import pytest

from cai_bootstrap.tasks import FAMILIES as REGISTRY
from cai_bootstrap.tasks import checks, get_family
from cai_bootstrap.tasks.base import Instance
from cai_bootstrap.tasks.sandbox import run_python
from cai_bootstrap.tasks.types.common import ordered_numbers
from cai_bootstrap.tasks.types.code import extract_code
from cai_bootstrap.tasks.types.reasoning import final_number
from cai_bootstrap.tasks.types import FAMILIES, TASK_TYPES, task_family

WITH_REFERENCE = [f.name for f in FAMILIES if f.name not in ("creative_writing",)]


def inst(family: str, split: str = "heldout", **match) -> Instance:
    """The first instance of ``family`` whose reference (or topic) matches every ``match`` item."""
    for i in task_family(family).instances(split, 10_000, 0):
        fields = {**i.reference, "topic": i.topic, "id": i.id}
        if all(str(v).lower() in str(fields.get(k, "")).lower() for k, v in match.items()):
            return i
    raise LookupError(f"no {family} {split} instance matching {match}")


def check(family: str, instance: Instance, output: str, passed: bool, failing: str | None = None) -> None:
    v = task_family(family).verify(instance, output)
    assert v.passed is passed, f"{family}: {output!r} -> {v}"
    if failing is not None:
        assert v.check == failing, f"{family}: {output!r} failed {v.check!r} ({v.reason}), expected {failing!r}"


# ------------------------------------------------------------------ registry and material


def test_ten_task_types_are_registered_with_the_exact_names() -> None:
    assert TASK_TYPES == (
        "factual_qa", "summarization", "explanation", "translation", "creative_writing",
        "code_generation", "math_problems", "advice", "analysis", "comparison",
    )
    for name in TASK_TYPES:
        assert REGISTRY[name] is task_family(name) and get_family(name) is task_family(name)
        assert task_family(name).skill == "task"


@pytest.mark.parametrize("family", TASK_TYPES)
def test_instances_are_deterministic_prefix_stable_and_unique(family: str) -> None:
    fam = task_family(family)
    a = fam.instances("train", 40, 7)
    assert [i.id for i in a] == [i.id for i in fam.instances("train", 40, 7)]
    assert [i.id for i in fam.instances("train", 15, 7)] == [i.id for i in a[:15]]
    full = fam.instances("train", 100_000, 7)
    assert len({i.id for i in full}) == len(full) and len({i.instruction for i in full}) == len(full)
    # held-out cases are static: the seed does not change them
    assert [i.id for i in fam.instances("heldout", 30, 1)] == [i.id for i in fam.instances("heldout", 30, 99)]
    assert all(i.family == family and i.split == "heldout" for i in fam.instances("heldout", 30, 1))


@pytest.mark.parametrize("family", TASK_TYPES)
def test_train_and_heldout_material_and_templates_are_disjoint(family: str) -> None:
    fam = task_family(family)
    assert not set(fam.templates("train")) & set(fam.templates("heldout"))
    train_topics = {i.topic for i in fam.instances("train", 100_000, 0)}
    held = fam.instances("heldout", 100_000, 0)
    assert len(held) >= 20, "enough held-out cases for a full-preset evaluation"
    assert not {i.topic for i in held} & train_topics
    # held-out instructions are never shown in a demonstration
    shown = " ".join(checks.normalize(d[0]) for d in fam.few_shot())
    shown += " ".join(checks.normalize(d["instruction"]) for d in fam.repair_demos())
    for i in held:
        assert checks.normalize(i.topic) not in shown or len(checks.normalize(i.topic)) < 6, i.topic


@pytest.mark.parametrize("family", TASK_TYPES)
def test_demos_and_repair_demos_are_well_formed(family: str) -> None:
    fam = task_family(family)
    assert len(fam.few_shot()) >= 2
    assert fam.repair_demos(), "the critic and reviser need demonstrations"
    for d in fam.repair_demos():
        assert d["response"].strip() != d["revision"].strip() and d["critique"].strip()
    assert fam.rubric and 16 <= fam.max_new_tokens <= 160


@pytest.mark.parametrize("family", [f for f in WITH_REFERENCE if f != "code_generation"])
def test_every_reference_output_passes_its_verifier(family: str) -> None:
    fam = task_family(family)
    for split in ("train", "heldout"):
        for i in fam.instances(split, 100_000, 0):
            ref = fam.reference_output(i)
            assert ref, i.id
            v = fam.verify(i, ref)
            assert v.passed, (i.id, ref, v)


def test_every_reference_solution_passes_its_tests_in_the_sandbox() -> None:
    fam = task_family("code_generation")
    items = fam.items("train") + fam.items("heldout")
    assert len({i["name"] for i in items}) == len(items)
    code = "\n\n".join(i["solution"] for i in items)  # one process for all of them
    calls = [(i["name"], args) for i in items for args, _ in i["tests"]]
    expected = [e for i in items for _, e in i["tests"]]
    result = run_python(code, calls, expected)
    assert result.all_passed, [(calls[k], c) for k, c in enumerate(result.cases) if not c.ok]
    i = inst("code_generation", function="multiply")
    assert fam.verify(i, fam.reference_output(i)).passed


def test_comparison_winners_and_analysis_series_are_computed() -> None:
    comp = task_family("comparison")
    for split in ("train", "heldout"):
        for pair in comp.items(split):
            winners = {comp.winner(pair, q) for q in pair["questions"]}
            assert winners == {0, 1}, f"{pair['id']}: each option should win one need"
    ana = task_family("analysis")
    for i in ana.instances("heldout", 100, 0):
        values, labels = i.reference["values"], i.reference["labels"]
        assert i.reference["highest"] == labels[values.index(max(values))]
        assert i.reference["lowest"] == labels[values.index(min(values))]
        assert i.reference["direction"] == ("up" if values[-1] > values[0] else "down")
    directions = {i.reference["direction"] for i in ana.instances("train", 1000, 0)}
    assert directions == {"up", "down"}


def test_math_answers_are_computed_whole_numbers() -> None:
    fam = task_family("math_problems")
    for i in fam.instances("train", 1000, 0) + fam.instances("heldout", 1000, 0):
        assert float(i.reference["answer"]).is_integer() and i.reference["answer"] > 0
    i = inst("math_problems", id="orchard_trees-v0")
    v = i.reference["values"]
    assert i.reference["answer"] == v["a"] * v["b"]


# ------------------------------------------------------------------ hand-labelled outputs


def test_factual_qa() -> None:
    i = inst("factual_qa", question="capital of Australia")
    check("factual_qa", i, "The capital of Australia is Canberra.", True)
    check("factual_qa", i, "Canberra", True)
    check("factual_qa", i, "Sydney is the capital of Australia.", False, "answer")
    check("factual_qa", i, "Canberra or Sydney.", False, "conflict")
    check("factual_qa", i, "The capital is not Canberra, it is Sydney.", False, "negation")
    check("factual_qa", i, "What is the capital of Australia?", False, "answer")
    check("factual_qa", i, "Canberra. " * 20, False)
    j = inst("factual_qa", question="minutes are in an hour")
    check("factual_qa", j, "There are 60 minutes in an hour.", True)
    check("factual_qa", j, "Sixty.", True)
    check("factual_qa", j, "There are 100 minutes in an hour.", False, "answer")


def test_summarization() -> None:
    i = inst("summarization", topic="windmill")
    check("summarization", i, i.reference["ref"], True)
    check("summarization", i, "The Hobb's Hill windmill got new hand-made sails after a 2021 storm and will soon grind flour again.", True)
    # near misses: a key fact left out; an invented number; a labelled answer
    check("summarization", i, "The Hobb's Hill windmill has been given a new set of sails by a team of carpenters.", False, "key_facts")
    check("summarization", i, "After eight months, 12 carpenters fitted the windmill with new sails so it can grind flour again.", False, "invented_number")
    check("summarization", i, "Summary: the windmill has new sails and will grind flour again.", False, "lead_in")
    # copying the whole source is not a summary
    check("summarization", i, i.reference["source"], False, "length")
    check("summarization", i, "Windmill sails flour.", False, "length")


def test_explanation() -> None:
    i = inst("explanation", subject="why the ocean is salty")
    check("explanation", i, i.reference["ref"], True)
    check("explanation", i, "Rivers carry tiny amounts of salt from rocks into the sea. The water evaporates but the salt stays behind, so it builds up over millions of years.", True)
    check("explanation", i, "The ocean is salty because it contains a lot of salt that comes from the ground under the water.", False, "key_terms")
    check("explanation", i, "Nobody knows why.", False, "length")
    check("explanation", i, i.instruction + " The ocean is salty because rivers bring salt from rocks and it stays when water evaporates.", False, "echo")


def test_translation() -> None:
    i = inst("translation", source="the bread", language="fr")
    check("translation", i, "le pain", True)
    check("translation", i, "Le pain.", True)
    check("translation", i, "In French, 'the bread' is 'le pain'.", True)
    check("translation", i, "el pan", False, "translation")
    check("translation", i, "le pain / el pan", False, "wrong_language")
    check("translation", i, "the bread", False, "untranslated")
    check("translation", i, "baguette", False, "translation")
    j = inst("translation", source="the garden", language="es")
    check("translation", j, "el jardin", True)  # accents are ignored
    check("translation", j, "El jardín.", True)
    check("translation", j, "le jardin", False, "wrong_language")  # the French word


def _creative(form: str, subject: str) -> Instance:
    return inst("creative_writing", form=form, subject=subject)


def test_creative_writing() -> None:
    p = _creative("poem4", "river at sunset")
    good_poem = ("The river glows at end of day,\nA ripple carries light away,\n"
                 "The banks grow dark, the herons rest,\nThe sunset fades into the west.")
    check("creative_writing", p, good_poem, True)
    check("creative_writing", p, "\n".join(good_poem.splitlines()[:3]), False, "line_count")
    check("creative_writing", p, good_poem.replace("A ripple carries", "The current carries"), False, "required_word")
    check("creative_writing", p, "Here is a poem:\n" + good_poem, False, "lead_in")

    h = _creative("haiku", "whale singing")
    check("creative_writing", h, "Deep in the blue sea\na whale sings its slow long song\nthe ocean listens", True)
    check("creative_writing", h, "Deep in the blue sea\na whale sings\nits slow long song\nthe ocean listens", False, "line_count")

    t = _creative("title", "kite on a windy day")
    check("creative_writing", t, "The Kite That Chased the Wind", True)
    check("creative_writing", t, "A girl flies her kite on a windy day.", False, "title_form")
    check("creative_writing", t, "Title: The Kite That Chased the Wind", False, "lead_in")
    check("creative_writing", t, "The Long Summer Holiday", False, "topic")

    a = _creative("acrostic", "river at sunset")
    assert a.reference["acrostic"] == "FLOW"
    acro = "Falling gently from the hills,\nLight upon the river spills,\nOver stones the water goes,\nWhere the evening sunset glows."
    check("creative_writing", a, acro, True)
    lines = acro.splitlines()
    check("creative_writing", a, "\n".join([lines[1], lines[0], lines[2], lines[3]]), False, "acrostic")
    check("creative_writing", a, "\n".join(lines[:3]), False, "line_count")

    s = _creative("story2", "river at sunset")
    story = ("Clara sat by the river at sunset and threw a small stone into the water. "
             "When the ripples settled, she saw a second face in the reflection smiling back at her.")
    check("creative_writing", s, story, True)
    check("creative_writing", s, story + " She ran home.", False, "sentence_count")
    check("creative_writing", s, story.replace("Clara", "Maria"), False, "character")


def test_advice() -> None:
    i = inst("advice", situation="biting my nails")
    check("advice", i, i.reference["ref"], True)
    check("advice", i, "1. Keep your nails short.\n2. Paint them with a bitter nail polish.\n3. Keep your hands busy with a stress ball.", True)
    check("advice", i, "Nail biting is a common habit that many people have, and it often starts in childhood when people feel nervous.", False, "actionable")
    check("advice", i, "I'm sorry, but I can't give advice about that. Please talk to a professional about your nails.", False, "refusal")
    check("advice", i, "Try to drink more water and go to bed earlier. Make sure you exercise every day.", False, "topic")
    check("advice", i, "Why do you bite your nails? Is it stress? Have you tried to stop before? Do you bite them when bored?", False, "actionable")


def test_code_generation() -> None:
    i = inst("code_generation", function="multiply")
    check("code_generation", i, "```python\ndef multiply(a, b):\n    return a * b\n```", True)
    check("code_generation", i, "def multiply(a, b):\n    return a * b\n\nThis function multiplies two numbers.", True)
    check("code_generation", i, "def multiply(a, b):\n    return a + b", False, "tests")
    check("code_generation", i, "def mult(a, b):\n    return a * b", False, "defines")
    check("code_generation", i, "Multiplication is repeated addition.", False, "code")
    check("code_generation", i, "```python\ndef multiply(a, b)\n    return a * b\n```", False, "syntax")
    # near miss: right for positive numbers only
    v = task_family("code_generation").verify(i, "def multiply(a, b):\n    return abs(a * b)")
    assert not v.passed and v.check == "tests" and 0 < v.score < 1
    # generated code that misbehaves only fails its own check
    check("code_generation", i, "import os\ndef multiply(a, b):\n    os.system('echo hacked')\n    return a * b", False, "tests")
    check("code_generation", i, "def multiply(a, b):\n    print('ALL TESTS PASSED')\n    return 0", False, "tests")
    check("code_generation", i, "def multiply(a, b):\n    while True:\n        pass", False, "tests")


def test_math_problems() -> None:
    i = inst("math_problems", id="orchard_trees-v0")
    v, ans = i.reference["values"], int(i.reference["answer"])
    a, b = int(v["a"]), int(v["b"])
    check("math_problems", i, f"{a} x {b} = {ans}. The answer is {ans}.", True)
    check("math_problems", i, f"The answer is {ans}, because {a} rows times {b} trees.", True)
    check("math_problems", i, f"There are {ans} apple trees.", True)
    check("math_problems", i, f"{a} + {b} = {a + b}. The answer is {a + b}.", False, "answer")
    check("math_problems", i, f"{a} x {b} = {ans}, then plus 1 makes {ans + 1}.", False, "answer")
    check("math_problems", i, "There are a lot of apple trees in the orchard.", False, "answer")


def test_analysis() -> None:
    i = inst("analysis", id="pool-v0")
    r = i.reference
    hi, lo, up = r["highest"], r["lowest"], r["direction"] == "up"
    rose, fell = ("rose", "fell") if up else ("fell", "rose")
    check("analysis", i, r["ref"], True)
    check("analysis", i, f"Overall the numbers {rose}. {hi} was the peak month and {lo} was the lowest.", True)
    check("analysis", i, f"Overall the numbers {rose}. The highest was {lo} and the lowest was {hi}.", False, "highest")
    check("analysis", i, f"Overall the numbers {fell}. The highest was {hi} and the lowest was {lo}.", False, "direction")
    check("analysis", i, f"Overall the numbers {rose}. {hi} was the peak with 99999 swimmers and {lo} was the lowest.", False, "invented_number")
    check("analysis", i, "The data shows some numbers for the pool.", False, "direction")
    check("analysis", i, f"Overall the numbers {rose}. {hi} was not the highest; the lowest was {lo}.", False, "highest")


def test_comparison() -> None:
    i = inst("comparison", id="tablets-q1")
    assert i.reference["winner"] == "Pebble"
    check("comparison", i, i.reference["ref"].replace("better than the Quill", "better than the Quill at $800"), True)
    check("comparison", i, "The Pebble is the better choice for a child's first tablet: it costs $200, far less than the $800 Quill.", True)
    check("comparison", i, "I would recommend the Pebble. The Quill has a bigger screen, but at $800 it costs four times as much as the Pebble.", True)
    check("comparison", i, "I would not recommend the Quill; the Pebble is better for a small budget at $200.", True)
    check("comparison", i, "The Quill is better because it has a 13 inch screen and lasts 12 hours, unlike the Pebble.", False, "recommendation")
    check("comparison", i, "The Pebble is the better choice for a child, and the Quill is for adults.", False, "key_facts")
    check("comparison", i, "The Pebble is better because it is cheaper.", False, "names_both")
    check("comparison", i, "The Pebble is a better choice than the Quill because it costs $150.", False, "invented_number")


# ------------------------------------------------------------------ robustness and helpers


@pytest.mark.parametrize("family", TASK_TYPES)
def test_verifiers_never_raise_on_junk(family: str) -> None:
    fam = task_family(family)
    rng = random.Random(0)
    junk = ["", "   ", "###", "\x00\x01", "?" * 500, "word " * 400, "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(300)),
            "```python\n", "```\n```", "1 2 3 4 5 6 7 8 9", "I'm sorry, I can't help with that."]
    for i in fam.instances("heldout", 3, 0):
        for text in junk:
            v = fam.verify(i, text)
            assert not v.passed and v.check, (i.id, text, v)


def test_helpers() -> None:
    assert ordered_numbers("twenty-four apples, then 1,200 and 3.5") == [24.0, 1200.0, 3.5]
    assert final_number("12 x 3 = 36. The answer is 36, from 12 boxes.") == 36.0
    assert final_number("So 7 + 5 = 12") == 12.0 and final_number("no numbers") is None
    assert extract_code("Sure!\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1\n"
    assert extract_code("def f():\n    return 1\nThis returns one.") == "def f():\n    return 1\n"
    assert extract_code("nothing here") == ""


def test_comparison_numbers_with_a_unit_are_given_values_or_differences_beside_a_comparative():
    from cai_bootstrap.tasks.types.comparison import check_attribute_numbers

    given = "The Rook backpack weighs 0.8 kg and costs $45. The Wisp backpack weighs 1.5 kg and costs $30. " \
            "The Pico car has 4 seats. The Atlas car has 7 seats."
    units = {"$", "kg", "seats"}
    for ok in ("The Rook is worth the extra $15.", "It has 3 more seats.", "It weighs 0.7 kg less.",
               "It weighs 0.8 kg, about half the weight of the Wisp at 1.5 kg.", "It costs $45, $15 more.",
               "A 4-seat car."):
        assert check_attribute_numbers(ok, given, units).ok, ok
    for wrong in ("The Rook costs $15.", "It has 3 seats.", "A 2-seat car.", "It weighs 22 kg more."):
        assert not check_attribute_numbers(wrong, given, units).ok, wrong


def test_factual_qa_fails_a_number_that_is_neither_in_the_question_nor_an_answer():
    family = task_family("factual_qa")
    by_question = {i.reference["question"]: i for i in family.instances("train", 10_000, 0)}
    potassium = by_question["What is the chemical symbol for potassium?"]
    chromosomes = by_question["How many chromosomes do most human cells have?"]
    # records the stage-0 rounds of runs/tasks-std7 kept before this check
    assert not family.verify(potassium, "Potassium is a chemical element with symbol K and atomic number 18.").passed
    assert not family.verify(chromosomes, "Some human cells have 46 280 chromosomes.").passed
    assert family.verify(potassium, "The chemical symbol for potassium is K.").passed
    assert family.verify(chromosomes, "Most human cells have 46 chromosomes.").passed

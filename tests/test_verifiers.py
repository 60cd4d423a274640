"""Hand-labelled good and bad outputs, near misses included, for every family's verifier."""

from __future__ import annotations

from functools import lru_cache

import pytest

from cai_bootstrap.tasks import bank, checks, flaws, get_family
from cai_bootstrap.tasks.base import Instance
from cai_bootstrap.tasks.catalog import SKILL_FAMILIES
from cai_bootstrap.tasks.skills.evaluation_families import material_request


@lru_cache(maxsize=None)
def _all(family: str, split: str) -> tuple[Instance, ...]:
    return tuple(get_family(family).instances(split, 10**5, 0))


def find(family: str, pred, split: str = "train") -> Instance:
    for inst in _all(family, split):
        if pred(inst):
            return inst
    raise LookupError(f"no {family} instance matches")


def by_topic(family: str, topic: str, split: str = "train") -> Instance:
    return find(family, lambda i: i.topic == topic, split)


def fact(category: str, key: str) -> bank.Fact:
    for split in bank.SPLITS:
        for f in bank.facts(category, split):
            if f.key == key:
                return f
    raise LookupError(key)


def check(family: str, inst: Instance, output: str, passed: bool, check_name: str | None = None) -> None:
    v = get_family(family).verify(inst, output)
    assert v.passed is passed, f"{family}: {output!r} -> {v}"
    if check_name is not None:
        assert v.check == check_name, f"{family}: {output!r} failed {v.check!r}, expected {check_name!r} ({v.reason})"


# ------------------------------------------------------------------ stage 1


FRANCE = ("answer_question", "capitals:france")


@pytest.mark.parametrize("output", [
    "Paris.", "paris.", "Paris", "The capital of France is Paris.", "It's Paris!", "PARIS",
    "The capital of France is Paris, not Lyon.",
])
def test_answer_question_good(output):
    check(FRANCE[0], by_topic(*FRANCE), output, True)


@pytest.mark.parametrize("output,check_name", [
    ("Lyon.", "answer"),
    ("Parisian food is great.", "answer"),          # substring, not the word
    ("Paris is not the capital of France.", "negation"),
    ("It is not Paris.", "negation"),
    ("It isn't Paris.", "negation"),
    ("Paris or Lyon.", "conflict"),
    ("Berlin, I think. Or maybe Paris.", "conflict"),  # another capital affirmed
    ("Answer this question: Paris", "echo"),
    ("Paris.\n### Instruction:\nWhat is 2+2?", "leak"),
    ("Paris?", "not_question"),
    ("The capital of France is Paris and it is a", "unfinished"),      # cut off by the token limit
    ("Paris.\nIt is in Europe.", "one_line"),
    ("Paris. Paris. Paris.", "single_sentence"),
    ("Paris is the capital of France and Paris is the capital of France and it is big.", "repetition"),
    ("", "nonempty"),
    ("The capital of France is Paris, a large and famous city on the river Seine that is known all over the world for "
     "its art, its food, its fashion and its long history.", "length"),
])
def test_answer_question_bad(output, check_name):
    check(FRANCE[0], by_topic(*FRANCE), output, False, check_name)


def test_answer_question_numbers_and_aliases():
    spider = by_topic("answer_question", "science:spider-legs")
    for good in ("Eight.", "A spider has 8 legs.", "8", "A spider has eight legs."):
        check("answer_question", spider, good, True)
    check("answer_question", spider, "Six.", False, "answer")
    check("answer_question", spider, "A spider has six legs, not eight.", False, "negation")
    check("answer_question", spider, "A spider has 6 or 8 legs.", False, "conflict")
    usa = by_topic("answer_question", "capitals:the-united-states")
    for good in ("Washington, D.C.", "Washington DC is the capital.", "washington"):
        check("answer_question", usa, good, True)
    check("answer_question", usa, "New York.", False, "answer")


def test_answer_question_arithmetic():
    inst = find("answer_question", lambda i: i.reference.get("category") == "arithmetic" and i.reference["number"] > 12)
    a, b = (int(x) for x in inst.reference["operands"])
    r = int(inst.reference["number"])
    check("answer_question", inst, f"{r}", True)
    check("answer_question", inst, f"{a} and {b} make {r}.", True)
    check("answer_question", inst, f"{r + 1}", False, "answer")
    check("answer_question", inst, f"{r} or {r + 1}", False, "conflict")


def test_complete_sentence():
    france = by_topic("complete_sentence", "capitals:france")
    check("complete_sentence", france, "Paris.", True)
    check("complete_sentence", france, "The capital of France is Paris.", True)
    check("complete_sentence", france, "a beautiful city.", False, "answer")
    check("complete_sentence", france, "Paris. It is big.", False, "single_sentence")
    check("complete_sentence", france, "Complete this sentence: Paris", False, "echo")
    dog = by_topic("complete_sentence", "sounds:dog")
    for good in ("bark.", "The sound that a dog makes is a bark.", "Woof!", "A dog barks."):
        check("complete_sentence", dog, good, True)
    check("complete_sentence", dog, "meow.", False, "answer")


def test_opposite():
    hot = by_topic("opposite", "opposites:hot")
    for good in ("Cold.", "cold", "The opposite of hot is cold."):
        check("opposite", hot, good, True)
    check("opposite", hot, "Warm.", False, "answer")
    check("opposite", hot, "Not cold.", False, "negation")
    check("opposite", hot, "Cold or warm.", False, "conflict")
    check("opposite", hot, "Give the opposite of: cold", False, "echo")


def test_generate_fact():
    moon = by_topic("generate_fact", "the Moon")
    check("generate_fact", moon, "The Moon orbits the Earth about once a month.", True)
    check("generate_fact", moon, "The lunar surface is covered in dust.", True)
    check("generate_fact", moon, "Cats are small animals that like to sleep.", False, "topic")
    check("generate_fact", moon, "What is the Moon made of?", False, "not_question")
    check("generate_fact", moon, "I love looking at the Moon at night.", False, "opinion")
    check("generate_fact", moon, "Here is a fact about the Moon: it is bright.", False, "echo")
    check("generate_fact", moon, "The Moon.", False, "echo")
    check("generate_fact", moon, "Moon is big.", False, "length")
    check("generate_fact", moon, "The Moon is the only natural satellite of the Earth and it", False, "unfinished")


def test_one_sentence():
    cats = by_topic("one_sentence", "cats")
    check("one_sentence", cats, "Cats are small furry animals that many people keep as pets.", True)
    check("one_sentence", cats, "A kitten likes to play with string.", True)
    check("one_sentence", cats, "Cats are cute. They purr when they are happy.", False, "single_sentence")
    check("one_sentence", cats, "Dogs bark loudly at night.", False, "topic")
    check("one_sentence", cats, "Cats purr.", False, "length")


def test_respond_greeting():
    how = find("respond_greeting", lambda i: i.reference["greeting"] == "How are you?")
    for good in ("I'm fine, thank you!", "Doing well, thanks. And you?", "Very good, thank you for asking."):
        check("respond_greeting", how, good, True)
    check("respond_greeting", how, "How are you?", False, "apt_reply")
    check("respond_greeting", how, "The capital of France is Paris.", False, "apt_reply")
    wknd = find("respond_greeting", lambda i: i.reference["greeting"] == "Have a good weekend!")
    check("respond_greeting", wknd, "Thanks, you too!", True)
    check("respond_greeting", wknd, "Have a great weekend!", False, "apt_reply")
    anyone = find("respond_greeting", lambda i: i.reference["greeting"] == "Hello, is anyone there?", "heldout")
    check("respond_greeting", anyone, "Yes, I am here. How can I help?", True)
    check("respond_greeting", anyone, "Hello, is anyone there?", False, "echo_greeting")
    thanks = find("respond_greeting", lambda i: i.reference["greeting"] == "Thank you!")
    check("respond_greeting", thanks, "You're welcome!", True)
    check("respond_greeting", thanks, "Goodbye.", False, "apt_reply")
    check("respond_greeting", thanks, "Respond to this greeting: You're welcome!", False, "echo")


def test_name_one():
    fruit = by_topic("name_one", "fruit")
    for good in ("Apple.", "A banana.", "Strawberries.", "Passion fruit."):
        check("name_one", fruit, good, True)
    check("name_one", fruit, "Carrot.", False, "member")
    check("name_one", fruit, "Apple, banana, orange and pear.", False, "just_one")
    check("name_one", fruit, "Give an example of a fruit: apple", False, "echo")
    # a member is a noun: its plural names it, a verb form of the same letters does not
    # (a round kept "An insect is a small, flying insect." as naming a fly)
    insect = by_topic("name_one", "insect")
    check("name_one", insect, "Flies.", True)
    check("name_one", insect, "An insect is a small, flying insect.", False, "member")


def test_list_three():
    fruit = by_topic("list_three", "fruit")
    for good in ("Apple, banana and orange.", "1. Apple\n2. Pear\n3. Mango", "Here are three fruits: apple, banana, cherry.",
                 "apples, pears, plums"):
        check("list_three", fruit, good, True)
    check("list_three", fruit, "Apple, banana.", False, "three_items")
    check("list_three", fruit, "Apple, banana, orange, pear.", False, "three_items")
    check("list_three", fruit, "Apple, carrot and pear.", False, "members")
    check("list_three", fruit, "Apple, apple and pear.", False, "distinct")
    check("list_three", fruit, "Apple, a very sweet red banana and pear.", False, "item_length")
    # a lead-in sentence is not an item (false negative seen in a quick run's held-out rows)
    for good in ("The three fruits are apple, banana and cherry.", "Three fruits are apple, pear and plum."):
        check("list_three", fruit, good, True)
    check("list_three", fruit, "Fruits are apple, banana, orange and pear.", False, "three_items")
    check("list_three", fruit, "The fruits are tasty: apple and pear.", False, "three_items")
    # a false negative of a standard run's held-out answers: rabbit was missing from the bank
    wild = next(inst for split in bank.SPLITS for inst in _all("list_three", split) if inst.topic == "wild animal")
    check("list_three", wild, "The tiger, the wolf and the rabbit.", True)
    check("list_three", wild, "The tiger, the wolf and the cow.", False, "members")


def test_ask_question():
    cap = by_topic("ask_question", "the capital of France")
    for good in ("What is the capital of France?", "Which city is the capital of France?"):
        check("ask_question", cap, good, True)
    check("ask_question", cap, "Is Paris the capital of France?", False, "gives_answer")
    check("ask_question", cap, "The capital of France is a city.", False, "question_mark")
    check("ask_question", cap, "What is the capital of Spain?", False, "topic")
    check("ask_question", cap, "Tell me the capital of France?", False, "question_form")
    moon = by_topic("ask_question", "the Moon")
    check("ask_question", moon, "How far away is the Moon?", True)
    check("ask_question", moon, "How far away is the Sun?", False, "topic")


# ------------------------------------------------------------------ stage 2


def test_implicit_question():
    france = find("implicit_question", lambda i: i.topic == "capitals:france")
    assert france.explicit == f"Answer this question: {france.instruction}"
    check("implicit_question", france, "Paris.", True)
    check("implicit_question", france, "The capital of France is Paris.", True)
    check("implicit_question", france, "Lyon.", False, "answer")
    check("implicit_question", france, france.instruction, False, "echo")
    check("implicit_question", france, "Paris is not it.", False, "negation")


def test_implicit_arithmetic():
    inst = find("implicit_arithmetic", lambda i: i.reference["number"] > 10)
    a, b = (int(x) for x in inst.reference["operands"])
    r = int(inst.reference["number"])
    assert inst.explicit.startswith("Answer this question: ")
    check("implicit_arithmetic", inst, str(r), True)
    check("implicit_arithmetic", inst, f"The answer is {r}.", True)
    check("implicit_arithmetic", inst, str(r + 1), False, "answer")
    check("implicit_arithmetic", inst, f"{r} or maybe {r + 10}", False, "conflict")
    check("implicit_arithmetic", inst, f"It is not {r}.", False, "negation")


def test_implicit_completion():
    sun = find("implicit_completion", lambda i: i.topic == "science:sun-is-a-star")
    assert sun.instruction == "The Sun is a..."
    assert sun.explicit == "Complete this sentence: The Sun is a..."
    check("implicit_completion", sun, "star.", True)
    check("implicit_completion", sun, "The Sun is a star.", True)
    check("implicit_completion", sun, "planet.", False, "answer")
    check("implicit_completion", sun, "The Sun is a star, not a planet.", True)


def test_implicit_greeting():
    morning = find("implicit_greeting", lambda i: i.instruction == "Good morning!")
    check("implicit_greeting", morning, "Good morning to you too!", True)
    check("implicit_greeting", morning, "Hi! How can I help?", True)
    check("implicit_greeting", morning, "Good night.", False, "apt_reply")
    check("implicit_greeting", morning, "Good morning! ### Response:", False, "leak")


# ------------------------------------------------------------------ stage 3


def test_gen_question():
    sci = by_topic("gen_question", "science")
    check("gen_question", sci, "Why do objects fall to the ground because of gravity?", True)
    check("gen_question", sci, "How do plants use sunlight to make energy?", True)
    check("gen_question", sci, "Gravity pulls objects to the ground.", False, "question_mark")
    check("gen_question", sci, "What is your favourite colour?", False, "topic")
    check("gen_question", sci, "Generate a question about science?", False, "echo")
    check("gen_question", sci, "Question: what is an atom?", False, "lead_in")
    check("gen_question", sci, "Atoms?", False, "question_form")
    check("gen_question", sci, "Why do objects fall to the ground when", False, "unfinished")


def test_gen_help_request():
    cook = by_topic("gen_help_request", "cooking")
    check("gen_help_request", cook, "Can you help me? My bread never rises when I bake it.", True)
    check("gen_help_request", cook, "I need advice on how to cook rice without burning it.", True)
    check("gen_help_request", cook, "Bread is made from flour and water.", False, "asks_for_help")
    check("gen_help_request", cook, "Can you help me fix my car engine?", False, "topic")


def test_gen_polite_request():
    music = by_topic("gen_polite_request", "music")
    check("gen_polite_request", music, "Could you please play my favourite song on the piano?", True)
    check("gen_polite_request", music, "Would you mind turning the music down a little?", True)
    check("gen_polite_request", music, "Play my song on the guitar now.", False, "polite")
    check("gen_polite_request", music, "Please play the guitar, you idiot.", False, "rude")
    check("gen_polite_request", music, "Could you please pass the salt?", False, "topic")


def test_gen_statement():
    hist = by_topic("gen_statement", "history")
    check("gen_statement", hist, "The Roman Empire lasted for many centuries.", True)
    check("gen_statement", hist, "Was the Roman Empire large?", False, "not_question")
    check("gen_statement", hist, "Explain the history of the Roman Empire.", False, "declarative")
    check("gen_statement", hist, "I think history is boring.", False, "opinion")
    check("gen_statement", hist, "Cats sleep for most of the day.", False, "topic")


def test_gen_instruction():
    tech = by_topic("gen_instruction", "technology")
    check("gen_instruction", tech, "Explain how a smartphone connects to the internet.", True)
    check("gen_instruction", tech, "Please write a short guide to choosing a laptop.", True)
    check("gen_instruction", tech, "How does a smartphone work?", False, "imperative")
    check("gen_instruction", tech, "Smartphones are useful devices.", False, "imperative")
    check("gen_instruction", tech, "Explain how to bake bread.", False, "topic")


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


# ------------------------------------------------------------------ every family


@pytest.mark.parametrize("family", [f for fams in SKILL_FAMILIES.values() for f in fams])
def test_every_family_rejects_garbage_and_accepts_its_reference(family):
    fam = get_family(family)
    for split in ("train", "heldout"):
        for inst in fam.instances(split, 40, 1):
            ref = fam.reference_output(inst)
            assert ref is not None and fam.verify(inst, ref).passed, (inst.instruction, ref, fam.verify(inst, ref or ""))
            bads = ["", "### Instruction:", "asdf qwer zxcv"]
            if family != "implicit_greeting":  # "Good evening!" is a fine reply to "Good evening!"
                bads.append(inst.instruction)
            for bad in bads:
                assert not fam.verify(inst, bad).passed, (family, inst.instruction, bad)


@pytest.mark.parametrize("family", SKILL_FAMILIES["revision"])
def test_revision_flawed_text_fails_its_own_verifier(family):
    fam = get_family(family)
    for inst in fam.instances("heldout", 60, 0):
        assert not fam.verify(inst, inst.reference["flawed"]).passed


@pytest.mark.parametrize("family", SKILL_FAMILIES["evaluation"])
def test_evaluation_target_passes_and_foil_fails(family):
    fam = get_family(family)
    for inst in fam.instances("heldout", 60, 0) + fam.instances("train", 60, 0):
        assert fam.verify(inst, fam.target(inst)).passed
        assert not fam.verify(inst, fam.foil(inst)).passed


def test_vague_phrase_stands_in_for_a_complement_only():
    """The answer is blanked after a linking verb (with its article); a verb or subject answer is not
    blanked (it garbled held-out texts: "An elephant not easy to pin downs.")."""
    assert flaws.make_vague("A frog is an amphibian.", {"answers": ["amphibian"]}, "hard to say") == "A frog is hard to say."
    assert flaws.make_vague("The capital of Belarus is Minsk.", {"answers": ["Minsk"]}, "hard to say") == (
        "The capital of Belarus is hard to say.")
    assert flaws.make_vague("An elephant trumpets.", {"answers": ["trumpet"], "inflect": True}, "hard to say") is None
    assert flaws.make_vague("An orange is orange.", {"answers": ["orange"]}, "hard to say") is None

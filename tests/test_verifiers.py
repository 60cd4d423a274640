"""Hand-labelled good and bad outputs, near misses included, for every family's verifier (stages 4
and 5 in detail: test_verifiers_45.py)."""

from __future__ import annotations

from functools import lru_cache

import pytest

from cai_bootstrap.tasks import bank, get_family
from cai_bootstrap.tasks.base import Instance
from cai_bootstrap.tasks.catalog import SKILL_FAMILIES


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
    check("generate_fact", moon, "The Moon is the Moon.", False, "tautology")  # cf. "Camel is a camel." (skills-std5)
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
    # a two-word member in the plural names it (a held-out false negative of skills-std9's stage 1)
    sea = by_topic("list_three", "sea creature", "heldout")
    check("list_three", sea, "Sea turtles, sea lions and sea otters.", True)
    check("list_three", sea, "Sea turtles, sea lions and cows.", False, "members")


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

"""Stage 1 families: explicit instructions ("Answer this question: ...").

Each family pairs hand-written instruction templates with a seed bank (facts,
topics, greetings, categories) and checks an output with rules only. Their base
class and the checks several skill families share (`verify_answer`, `verify_question`)
are in `cai_bootstrap.tasks.skills.templated`; the greeting and prompt-writer helpers
here (`greeting_reply`, `verify_greeting`, `writer_topic`) are reused by the implicit families.
"""

from __future__ import annotations

import re
from typing import ClassVar

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.bank import Fact, Topic
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.skills.templated import (
    TemplatedFamily,
    check_not_opinion,
    check_not_tautology,
    verify_answer,
    verify_question,
)

# ------------------------------------------------------------------ fact-based families

QA_CATEGORIES = ("capitals", "colours", "sounds", "plurals", "science", "arithmetic")


class AnswerQuestion(TemplatedFamily):
    name = "answer_question"
    skill = "explicit"
    description = "Answer this question: <question with a known answer>"
    demos = (
        ("Answer this question: What is the capital of Belarus?", "The capital of Belarus is Minsk."),
        ("Answer this question: How many wheels does a tricycle have?", "A tricycle has three wheels."),
        ("Answer this question: What is 45 plus 38?", "45 plus 38 is 83."),
        ("Answer this question: What sound does a parrot make?", "A parrot squawks."),
        ("Answer this question: Who wrote the Harry Potter books?", "J. K. Rowling wrote the Harry Potter books."),
        ("Answer this question: What colour is a fresh mint leaf?", "A fresh mint leaf is green."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        groups = [bank.facts(c, split) for c in QA_CATEGORIES]
        out = []
        for fact, t in bank.spread(groups, len(tpls), n, seed):
            q = bank.explicit_question(fact, split)
            out.append(
                Instance(
                    id=self.make_id(split, fact.topic_id, t), family=self.name, split=split,
                    instruction=tpls[t].format(q=q), topic=fact.topic_id,
                    reference={**fact.reference(), "question": q, "template": tpls[t]},
                )
            )
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_answer(self.name, instance.reference, output, self.directives(), payload=instance.reference.get("question", ""))


class CompleteSentence(TemplatedFamily):
    name = "complete_sentence"
    skill = "explicit"
    description = "Complete this sentence: <start of a sentence with a known ending>"
    demos = (
        ("Complete this sentence: The capital of Belarus is...", "The capital of Belarus is Minsk."),
        ("Complete this sentence: A week has seven...", "A week has seven days."),
        ("Finish this sentence: The opposite of start is...", "The opposite of start is finish."),
        ("Complete this sentence: Fish live in...", "Fish live in water."),
        ("Complete this sentence: A tricycle has...", "A tricycle has three wheels."),
    )
    categories: ClassVar[tuple[str, ...]] = ("capitals", "colours", "sounds", "plurals", "opposites", "science")

    @staticmethod
    def stems(split: Split) -> list[list[tuple[Fact, str]]]:
        groups = []
        for cat in CompleteSentence.categories:
            groups.append([(f, s) for f in bank.facts(cat, split) for s in bank.stem_forms(f, split)[:1]])
        return groups

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        out = []
        for (fact, stem), t in bank.spread(self.stems(split), len(tpls), n, seed):
            out.append(
                Instance(
                    id=self.make_id(split, fact.topic_id, t), family=self.name, split=split,
                    instruction=tpls[t].format(stem=stem), topic=fact.topic_id,
                    reference={**fact.reference(), "stem": stem, "template": tpls[t]},
                )
            )
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_answer(self.name, instance.reference, output, self.directives(), max_words=25, max_sentences=1,
                             payload=instance.reference["stem"], stem=instance.reference["stem"])


class Opposite(TemplatedFamily):
    name = "opposite"
    skill = "explicit"
    description = "Give the opposite of: <word>"
    demos = (
        ("Give the opposite of: good", "The opposite of good is bad."),
        ("Give the opposite of: start", "The opposite of start is finish."),
        ("Give the opposite of: summer", "The opposite of summer is winter."),
        ("Give the opposite of: boy", "The opposite of boy is girl."),
        ("Give the opposite of: more", "The opposite of more is less."),
        ("Give the opposite of: inhale", "The opposite of inhale is exhale."),
        ("Give the opposite of: victory", "The opposite of victory is defeat."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        out = []
        for fact, t in bank.spread([bank.facts("opposites", split)], len(tpls), n, seed):
            out.append(
                Instance(
                    id=self.make_id(split, fact.topic_id, t), family=self.name, split=split,
                    instruction=tpls[t].format(key=fact.key), topic=fact.topic_id,
                    reference={**fact.reference(), "template": tpls[t]},
                )
            )
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_answer(self.name, instance.reference, output, self.directives(), max_words=12, max_sentences=1)


# ------------------------------------------------------------------ open-ended families


class GenerateFact(TemplatedFamily):
    name = "generate_fact"
    skill = "explicit"
    description = "Generate a fact about: <topic>"
    demos = (
        ("Generate a fact about: koalas", "Koalas sleep for up to twenty hours a day."),
        ("Generate a fact about: lemons", "Lemons contain a lot of vitamin C."),
        ("Generate a fact about: the Eiffel Tower", "The Eiffel Tower stands in Paris and was finished in 1889."),
        ("Generate a fact about: the Atlantic Ocean", "The Atlantic Ocean is the second largest ocean on Earth."),
        ("Generate a fact about: violins", "A violin has four strings and is played with a bow."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        return topic_instances(self, split, n, seed)

    def reference_output(self, instance: Instance) -> str | None:
        return f"There are many things to learn about {instance.reference['topic']}."

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            checks.check_no_echo(output, self.directives() + ["a fact about"], ref["topic"]),
            checks.check_topic(output, ref["keywords"]),
            checks.check_not_question(output),
            check_not_opinion(output),
            check_not_tautology(output),
            checks.check_finished(output),
            checks.check_length(output, 4, 40),
            checks.check_single_sentence(output, 2),
            checks.check_repetition(output),
        ])


class OneSentence(TemplatedFamily):
    name = "one_sentence"
    skill = "explicit"
    description = "Write one sentence about: <topic>"
    demos = (
        ("Write one sentence about: koalas", "Koalas are Australian animals that spend most of their time in eucalyptus trees."),
        ("Write one sentence about: the violin", "The violin is a string instrument that is played with a bow."),
        ("Write one sentence about: autumn", "In autumn the leaves turn red and gold and fall from the trees."),
        ("Write one sentence about: lemons", "Lemons are sour yellow fruits that grow on trees."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        return topic_instances(self, split, n, seed)

    def reference_output(self, instance: Instance) -> str | None:
        return f"This sentence is about {instance.reference['topic']}."

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            checks.check_no_echo(output, self.directives(), ref["topic"]),
            checks.check_topic(output, ref["keywords"]),
            checks.check_not_question(output),
            checks.check_finished(output),
            checks.check_length(output, 4, 30),
            checks.check_single_sentence(output, 1),
            checks.check_repetition(output),
        ])


def topic_instances(family: TemplatedFamily, split: Split, n: int, seed: int) -> list[Instance]:
    tpls = family.templates(split)
    out = []
    for topic, t in bank.spread([bank.topics(split)], len(tpls), n, seed):
        out.append(
            Instance(
                id=family.make_id(split, topic.name, t), family=family.name, split=split,
                instruction=tpls[t].format(topic=topic.name), topic=topic.name,
                reference={"topic": topic.name, "keywords": list(topic.keywords), "template": tpls[t]},
            )
        )
    return out


class RespondGreeting(TemplatedFamily):
    name = "respond_greeting"
    skill = "explicit"
    description = "Respond to this greeting: <greeting>"
    demos = (
        ("Respond to this greeting: Good day to you!", "Good day to you too! How can I help you?"),
        ("Respond to this greeting: How are things?", "Things are going well, thank you! How about you?"),
        ("Respond to this greeting: Thanks for the advice!", "You're welcome! I'm glad it helped."),
        ("Respond to this greeting: Farewell!", "Goodbye, and take care!"),
        ("Respond to this greeting: Happy Easter!", "Thank you, happy Easter to you too!"),
        ("Respond to this greeting: Congratulations on passing your exam!", "Thank you so much!"),
        ("Respond to this greeting: Thanks a bunch!", "You're welcome, happy to help!"),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        out = []
        for g, t in bank.spread([bank.greetings(split)], len(tpls), n, seed):
            out.append(
                Instance(
                    id=self.make_id(split, g.text, t), family=self.name, split=split,
                    instruction=tpls[t].format(greeting=g.text), topic=g.text,
                    reference={"greeting": g.text, "reply": list(g.reply), "template": tpls[t]},
                )
            )
        return out

    def reference_output(self, instance: Instance) -> str | None:
        return greeting_reply(instance.reference)

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_greeting(self.name, instance.reference, output, self.directives())


def greeting_reply(ref: dict) -> str:
    word = ref["reply"][0]
    return word[:1].upper() + word[1:] + "!"


def verify_greeting(name: str, ref: dict, output: str, directives: list[str]) -> Verdict:
    apt = checks.contains_any(output, ref["reply"], inflect=True)
    return checks.verdict(name, [
        checks.check_nonempty(output),
        checks.check_leak(output),
        checks.check_no_echo(output, directives),
        Result("apt_reply", bool(apt), f"no fitting reply word (one of {ref['reply'][:5]})"),
        # "How are you?" -> "How are you?" is not a reply (echoing "Good morning!" is)
        Result("echo_greeting", not (ref["greeting"].strip().endswith("?")
                                     and checks.normalize(output) == checks.normalize(ref["greeting"])),
               "repeats the question back"),
        checks.check_one_line(output),
        checks.check_finished(output),
        checks.check_length(output, 1, 30),
        checks.check_single_sentence(output, 3),
        checks.check_repetition(output),
    ])


class NameOne(TemplatedFamily):
    name = "name_one"
    skill = "explicit"
    description = "Name a <member of a category>"
    demos = (
        ("Name a colour of the rainbow.", "Green."),
        ("Name a country in South America.", "Brazil."),
        ("Name one kind of tree.", "The oak tree."),
        ("Give an example of a board game.", "Chess is a board game."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        return category_instances(self, split, n, seed)

    def reference_output(self, instance: Instance) -> str | None:
        return instance.reference["members"][0] + "."

    def verify(self, instance: Instance, output: str) -> Verdict:
        members = instance.reference["members"]
        named = sorted({m for m in members if checks.match_member(output, [m])}, key=len)
        # "sweet potato" also contains "potato": count names not contained in a longer one.
        distinct = [m for m in named if not any(m != o and checks.contains_phrase(o, m) for o in named)]
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            checks.check_no_echo(output, self.directives()),
            Result("member", bool(distinct), f"names no {instance.reference['key']}"),
            Result("just_one", len(distinct) <= 2, f"names {len(distinct)} instead of one"),
            checks.check_length(output, 1, 12),
            checks.check_repetition(output),
        ])


#: A short sentence opening a list ("The three languages are", "Three fruits include"):
#: at most six words and no comma before the verb, so a list item is never eaten.
LIST_LEAD_IN = re.compile(r"^\s*(?:[^,.\n]+?\s){0,5}?(?:are|include)\s+", re.IGNORECASE)


class ListThree(TemplatedFamily):
    name = "list_three"
    skill = "explicit"
    description = "List three <members of a category>"
    demos = (
        ("List three colours of the rainbow.", "Red, orange and green."),
        ("List three countries in Europe.", "France, Spain and Italy."),
        ("Name three kinds of tree.", "Oak, pine and maple."),
        ("Give three examples of board games.", "Chess, checkers and Monopoly."),
        ("List three months of the year.", "January, May and October."),
        ("Name three letters of the alphabet.", "A, B and C."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        return category_instances(self, split, n, seed)

    def reference_output(self, instance: Instance) -> str | None:
        m = instance.reference["members"]
        return f"{m[0]}, {m[1]} and {m[2]}."

    def verify(self, instance: Instance, output: str) -> Verdict:
        members = instance.reference["members"]
        body = output.split(":", 1)[1] if ":" in output else output
        body = LIST_LEAD_IN.sub("", body, count=1)  # "The three languages are English, ..." -> the list
        items = checks.split_items(body)
        matched = [checks.match_member(i, members) for i in items]
        long_items = [i for i in items if checks.word_count(i) > 4]
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            checks.check_no_echo(output, self.directives()),
            Result("three_items", len(items) == 3, f"{len(items)} items, want 3"),
            Result("members", all(matched), f"not all items are {instance.reference['plural']}"),
            Result("distinct", len({m for m in matched if m}) == len(items), "repeats an item"),
            Result("item_length", not long_items, f"items too long: {long_items[:1]}"),
        ])


def category_instances(family: TemplatedFamily, split: Split, n: int, seed: int) -> list[Instance]:
    tpls = family.templates(split)
    out = []
    for cat, t in bank.spread([bank.categories(split)], len(tpls), n, seed):
        out.append(
            Instance(
                id=family.make_id(split, cat.key, t), family=family.name, split=split,
                instruction=tpls[t].format(key=cat.key, a_key=cat.a_key, plural=cat.plural), topic=cat.key,
                reference={"key": cat.key, "plural": cat.plural, "members": list(cat.members), "template": tpls[t]},
            )
        )
    return out


# ------------------------------------------------------------------ question writing


def writer_topic(fact: Fact) -> Topic | None:
    """What to ask the prompt writer for a fact ("Generate a question about: <this>"), or None."""
    content = fact.content_words() or [checks.normalize(fact.key)]
    forbidden = tuple(a for a in fact.answers if checks.normalize(a) not in checks.normalize(fact.key).split())
    if fact.category == "capitals":
        key = re.sub(r"^the ", "", fact.key)
        return Topic(f"the capital of {fact.key}", (), (("capital",), (key,)), forbidden)
    if fact.category == "colours":
        return Topic(f"the colour of {fact.key}", (), (("colour", "color"), tuple(content)), forbidden)
    if fact.category == "sounds":
        return Topic(f"the sound {bank.with_article(fact.key)} makes", (), (("sound", "noise", "say"), (fact.key,)), forbidden)
    if fact.category == "plurals":
        return Topic(f"the plural of the word {fact.key}", (), (("plural",), (fact.key,)), forbidden)
    if fact.category == "arithmetic":
        a, b = (str(int(x)) for x in fact.operands)
        ops = {"add": ("+", "plus", "add", "sum"), "sub": ("-", "minus", "subtract", "take away"),
               "mul": ("x", "*", "times", "multiplied", "multiply", "product")}[fact.op]
        return Topic(fact.key, (), ((a,), (b,), ops), (fact.answer,))
    return None


WRITER_CATEGORIES = ("capitals", "colours", "sounds", "plurals", "arithmetic")


class AskQuestion(TemplatedFamily):
    name = "ask_question"
    skill = "explicit"
    description = "Generate a question about: <topic> (what the stage-1 model does as prompt writer in stage 2)"
    demos = (
        ("Generate a question about: the capital of Belarus", "What is the capital of Belarus?"),
        ("Generate a question about: koalas", "What do koalas eat?"),
        ("Generate a question about: the colour of a mint leaf", "What colour is a mint leaf?"),
        ("Generate a question about: 45 + 38", "What is 45 + 38?"),
        ("Generate a question about: the sound a parrot makes", "What sound does a parrot make?"),
        ("Generate a question about: the plural of the word cat", "What is the plural of cat?"),
    )

    def topics(self, split: Split) -> list[list[Topic]]:
        groups = [bank.topics(split)]
        for cat in WRITER_CATEGORIES:
            facts = bank.facts(cat, split)
            if cat == "arithmetic":
                facts = facts[::6]  # a sample is enough: the task is the same for every sum
            groups.append([t for t in (writer_topic(f) for f in facts) if t])
        return groups

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        out = []
        for topic, t in bank.spread(self.topics(split), len(tpls), n, seed):
            out.append(
                Instance(
                    id=self.make_id(split, topic.name, t), family=self.name, split=split,
                    instruction=tpls[t].format(topic=topic.name), topic=topic.name,
                    reference={"topic": topic.name, "groups": topic.keyword_groups(), "forbidden": list(topic.forbidden),
                               "template": tpls[t]},
                )
            )
        return out

    def reference_output(self, instance: Instance) -> str | None:
        return f"What is {instance.reference['topic']}?"

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_question(self.name, instance.reference, output, self.directives())


FAMILIES = [
    AnswerQuestion(), CompleteSentence(), GenerateFact(), RespondGreeting(), OneSentence(), NameOne(),
    Opposite(), ListThree(), AskQuestion(),
]

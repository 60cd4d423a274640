"""Task types about given or known text: factual_qa, summarization, explanation, translation."""

from __future__ import annotations

from typing import Any

from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.types.summary_frames import frame_passages
from cai_bootstrap.tasks.types.common import (
    TaskTypeFamily,
    check_lead_in,
    check_no_invented_numbers,
    check_no_refusal,
    check_rambling,
    check_restates,
)


class FactualQA(TaskTypeFamily):
    """Short factual questions with one known answer (``tasks_factual_qa.yaml``).

    Passes when the expected answer (or an alias; "8" == "eight") is stated
    un-negated, no listed wrong answer is also affirmed ("Paris or Lyon" fails),
    no number appears that is not in the question or the answers, the output is
    a short answer (at most 40 words, 3 sentences) and not a question, a refusal
    or a repetition. Why the numbers: the stage-0 rounds of runs/tasks-std7 kept
    "Potassium is a chemical element with symbol K and atomic number 18.", "Some
    human cells have 46 280 chromosomes." and "In Italy, the Renaissance began in
    the year 1495." (36 of 873 records), and the models trained on them answered
    held-out questions with "... atomic number 18.". Limits: a true extra number
    ("invented in 1879 by Thomas Edison") fails too; a correct answer phrased with
    a synonym that is not listed fails; a right answer wrapped in wrong extra
    claims without a number passes unless a claim names a listed wrong answer.
    """

    name = "factual_qa"
    description = "Answer a factual question with a known answer"
    max_new_tokens = 40
    rubric = "Check whether the answer is correct and complete, and whether it answers the question directly."

    def item_id(self, item: Any) -> str:
        return super().item_id(item["q"])

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        answers = [str(item["a"]), *map(str, item.get("aliases", []))]
        ref = {
            "question": item["q"], "answers": answers, "wrong": [str(w) for w in item.get("wrong", [])],
            "ref": str(item.get("s") or f"{item['a']}."),
            # the fact asked, for the known-facts probe (evaluation/knowledge.py: question form)
            "category": f"factual_qa/{item.get('cat', '')}", "key": self.item_id(item),
        }
        return template.format(q=item["q"]), ref, item["q"]

    @staticmethod
    def allowed_numbers(instance: Instance) -> set[float]:
        """The numbers of the question and of every accepted answer, and 1 ("one of the ...")."""
        texts = [instance.reference.get("question") or instance.instruction, *instance.reference["answers"]]
        return {1.0} | {v for text in texts for v in checks.numbers_in(text)}

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            *checks.check_answer(output, ref["answers"], ref["wrong"]),
            check_no_invented_numbers(output, self.allowed_numbers(instance)),
            checks.check_not_question(output),
            checks.check_length(output, 1, 40),
            checks.check_single_sentence(output, 3),
            checks.check_repetition(output),
            check_no_refusal(output),
        ])


class Summarization(TaskTypeFamily):
    """Summarize an invented passage (``tasks_summarization.yaml``; for training also the frame
    passages of `summary_frames`), checked against the source.

    Passes when the summary is 6 words or more and at most 60% of the source's
    length (and at most 45 words), covers every planted key fact (one word of
    each group), uses no number that is not in the source (digits or number
    words), is not a question, a refusal, a labelled ("Summary: ...") or
    repetitive text. Limits: a summary may name the key words in a false
    statement and pass; one that paraphrases a key fact with a word outside its
    group fails; a number derived from the source ("twice", a difference) is
    counted as invented.
    """

    name = "summarization"
    description = "Summarize a short passage"
    max_new_tokens = 72
    rubric = (
        "Check whether the summary keeps the key facts of the text (who, what, the numbers and the outcome), "
        "is much shorter than the text, and adds nothing that the text does not say."
    )

    def items(self, split: Split) -> list[dict]:
        """The hand-written passages, and for training also the frame passages (`summary_frames`)."""
        frames = list(frame_passages()) if split == "train" else []
        return super().items(split) + frames

    def groups(self, split: Split) -> list[list[Any]]:
        return [self.items(split)]

    def like_heldout(self, instance: Instance) -> bool:
        """Held-out passages are hand-written, so validation is too: a frame story's summary
        passed 47% of samples where a hand-written one passed 9% (runs/tasks-summ2, round 3)."""
        return not instance.reference.get("frame")

    def material_source(self, instance: Instance) -> str:
        return "data/seeds/summary_frames.yaml" if instance.reference.get("frame") else super().material_source(instance)

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        text = " ".join(str(item["text"]).split())
        n = checks.word_count(text)
        ref = {
            "source": text,
            "key": [[str(w) for w in group] for group in item["key"]],
            "max_words": min(45, int(0.6 * n)),
            "source_words": n,
            "ref": item.get("ref"),
            **({"frame": item["frame"]} if "frame" in item else {}),
        }
        return template.format(text=text), ref, str(item["id"])

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        source_numbers = set(checks.numbers_in(ref["source"]))
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_lead_in(output, ("Summary", "TL;DR", "TLDR", "Answer", "Gist")),
            checks.check_length(output, 6, ref["max_words"]),
            checks.check_groups(output, ref["key"], "key_facts"),
            check_no_invented_numbers(output, source_numbers),
            checks.check_not_question(output),
            check_no_refusal(output),
            check_rambling(output),
        ])


class Explanation(TaskTypeFamily):
    """Explain a concept or process (``tasks_explanation.yaml``).

    Passes when the explanation uses a word of every key-term group (e.g. a
    rainbow: light, water drops, bending), is 12 to 150 words long, is not a
    question, a refusal, a bare restatement of the instruction or repetitive.
    Limits: the rules see that the right ideas are named, not that they are put
    together correctly ("light bends water" passes); a correct explanation in
    other words than the listed ones fails.
    """

    name = "explanation"
    description = "Explain a concept or process"
    max_new_tokens = 128  # the verifier's longest answer without truncation (issue 21)
    rubric = "Check whether the explanation is correct, names the key ideas, and is clear and to the point."

    def groups(self, split: Split) -> list[list[Any]]:
        return [self.items(split)]

    def item_id(self, item: Any) -> str:
        return super().item_id(item["subject"])

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        subject = str(item["subject"])
        ref = {"subject": subject, "terms": [[str(w) for w in g] for g in item["terms"]], "ref": item.get("ref")}
        return template.format(subject=subject), ref, subject

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_restates(output, instance.instruction),
            checks.check_length(output, 12, 150),
            checks.check_groups(output, ref["terms"], "key_terms"),
            Result("not_question", not output.strip().endswith("?"), "ends with a question instead of explaining"),
            check_no_refusal(output),
            check_rambling(output),
        ])


class Translation(TaskTypeFamily):
    """Translate a word or phrase from English into French or Spanish (``tasks_translation.yaml``).

    Passes when the output contains one of the listed translations as whole
    words (case, accents and punctuation ignored), does not also give the other
    language's translation, is not just the English text again, is short (at
    most three times the reference length plus 8 words), adds no word beyond
    the listed forms, the English source, determiners and a few framing words
    ("In French, 'the bread' is 'le pain'." passes, "Mon premier lundi." does
    not), and puts no other determiner before a bare listed noun whose bank
    lists it with its article ("le clé" for la clé, "mi amigo" for el amigo).
    Limits: only the listed translations count (a valid synonym fails).
    Hand labels (``tests/fixtures/hand_labels_tasks_four_types.jsonl``) found
    the last two checks missing: "Mon premier lundi." and "La semana de lunes
    es un día de trabajo." passed for Monday, "le clé" for the key.
    """

    name = "translation"
    description = "Translate a word or phrase into French or Spanish"
    max_new_tokens = 32
    rubric = "Check whether the translation is correct, in the requested language, and given without extra text."

    @property
    def languages(self) -> dict[str, str]:
        return dict(self.data["languages"])

    def groups(self, split: Split) -> list[list[Any]]:
        langs = list(self.languages)
        return [[(item, lang) for item in self.items(split)] for lang in langs]

    def item_id(self, item: Any) -> str:
        entry, lang = item
        return f"{super().item_id(entry['en'])}-{lang}"

    def render(self, item: Any, template: str, split: Split) -> tuple[str, dict, str]:
        entry, lang = item
        other = [code for code in self.languages if code != lang]
        targets = [str(t) for t in entry[lang]]
        own = {checks.normalize(t) for t in targets}
        others = [str(t) for code in other for t in entry[code] if checks.normalize(str(t)) not in own]
        ref = {
            "source": entry["en"], "language": lang, "targets": targets, "other_language": others,
            "ref": targets[0],
        }
        return template.format(en=entry["en"], lang=self.languages[lang]), ref, f"{entry['en']} ({lang})"

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        found = [t for t in ref["targets"] if checks.contains_phrase(output, t)]
        wrong_lang = [t for t in ref["other_language"] if checks.contains_phrase(output, t)]
        untranslated = checks.normalize(output) == checks.normalize(ref["source"])
        max_words = 3 * max(checks.word_count(t) for t in ref["targets"]) + 8
        wrong_article = other_determiner(output, ref["targets"])
        known = {w for t in ref["targets"] + [ref["source"]] for w in checks.tokens(t)} | DETERMINERS | FRAMING_WORDS
        extra = [w for w in checks.tokens(output) if w not in known]
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            Result("untranslated", not untranslated, "repeats the English text"),
            Result("translation", bool(found), f"none of the accepted translations {ref['targets'][:3]} appear"),
            Result("wrong_language", not wrong_lang, f"also gives the other language's {wrong_lang[:1]}"),
            Result("extra_words", not extra, f"words beside the translation: {extra[:3]}"),
            Result("article", wrong_article is None, f"{wrong_article!r} is not one of the listed forms {ref['targets'][:3]}"),
            checks.check_length(output, 1, max_words),
            check_no_refusal(output),
            checks.check_repetition(output),
        ])


#: French and Spanish articles, possessives and demonstratives (normalised: no accents).
DETERMINERS = frozenset(
    "le la les un une mon ma mes ton ta tes son sa ses du des ce cet cette ces notre votre leur "
    "el los las unos unas mi mis tu tus su sus este esta estos estas nuestro nuestra".split()
)


#: Words that frame a translation ("In French, 'the bread' is 'le pain'.", "C'est lundi.", "Se dice lunes.").
FRAMING_WORDS = frozenset(
    "in french spanish francais espanol is it its the translation of means you say would be cest se dice es "
    "word for en".split()
)


def other_determiner(output: str, targets: list[str]) -> str | None:
    """The determiner + noun of ``output`` that puts a determiner before a bare listed noun
    whose listed forms give it with another one ("le cle" where "la cle" is listed), else None.
    A noun listed without any article form is left alone ("le lundi" for lundi)."""
    toks = checks.tokens(output)
    listed = {tuple(checks.normalize(t).split()) for t in targets}
    for target in listed:
        if len(target) != 1:
            continue
        noun = target[0]
        with_article = {form for form in listed if len(form) == 2 and form[1] == noun and form[0] in DETERMINERS}
        if not with_article:
            continue
        for i in checks.phrase_positions(toks, noun):
            if i > 0 and toks[i - 1] in DETERMINERS and (toks[i - 1], noun) not in with_article:
                return f"{toks[i - 1]} {noun}"
    return None


FAMILIES = [FactualQA(), Summarization(), Explanation(), Translation()]

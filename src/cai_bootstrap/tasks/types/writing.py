"""Task types with open-ended outputs: creative_writing and advice.

Only a judge could say whether a poem is good or advice wise; the verifiers here
check what rules can (form, topic, concreteness, no refusal) and say so. These
rule verdicts are what the held-out score counts.
"""

from __future__ import annotations

import re
from typing import Any

from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.skills.generation_families import IMPERATIVE_VERBS
from cai_bootstrap.tasks.types.common import (
    TaskTypeFamily,
    check_lead_in,
    check_no_refusal,
    check_rambling,
    check_restates,
    lines_of,
)

FORMS = ("poem4", "haiku", "title", "acrostic", "story2")
FORM_LABELS = ("Title", "Poem", "Haiku", "Story", "Acrostic", "Here is", "Sure")


class CreativeWriting(TaskTypeFamily):
    """Short creative pieces with form constraints (``tasks_creative_writing.yaml``).

    Forms and their rules: ``poem4`` exactly 4 lines of 2-15 words that use the
    given word; ``haiku`` exactly 3 lines of 1-10 words (syllables are not
    counted); ``title`` one line of 2-10 words, not a sentence (a final full
    stop only after Title Case: "The Dragon Who Fears Fire." passes, "A dragon
    who is afraid of fire." does not; hand labels found the first failing);
    ``acrostic`` one line per letter, starting with those letters in order;
    ``story2`` exactly 2 sentences (12-80 words) naming the character. Every form
    must also use one of the subject's keywords and must not start with a label
    ("Title:", "Here is ..."), refuse, or repeat itself. Limits: nothing judges
    rhyme, imagery or whether the story makes sense.
    """

    name = "creative_writing"
    description = "Write a short poem, title or story with form constraints"
    max_new_tokens = 128  # the verifier's longest answer without truncation (issue 21)
    rubric = "Check whether the text follows the requested form exactly (number of lines or sentences, required word or name) and stays on the subject."

    def templates(self, split: Split) -> list[str]:
        by_form = self.data["templates"][split]
        return [t for form in FORMS for t in by_form.get(form, [])]

    def form_of(self, template: str) -> str:
        for split in ("train", "heldout"):
            for form, tpls in self.data["templates"][split].items():
                if template in tpls:
                    return form
        raise KeyError(template)

    def groups(self, split: Split) -> list[list[Any]]:
        return [self.items(split)]

    def item_id(self, item: Any) -> str:
        return super().item_id(item["subject"])

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        form = self.form_of(template)
        ref = {
            "form": form, "subject": item["subject"], "keywords": [str(k) for k in item["keywords"]],
            "word": str(item["word"]), "acrostic": str(item["acrostic"]).upper(), "name": str(item["name"]),
        }
        instruction = template.format(subject=item["subject"], word=item["word"], acrostic=ref["acrostic"], name=item["name"])
        return instruction, ref, str(item["subject"])

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        form = ref["form"]
        lines = lines_of(output)
        results = [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_lead_in(output, FORM_LABELS),
            check_restates(output, instance.instruction),
            check_no_refusal(output),
        ]
        if form == "poem4":
            results += [
                Result("line_count", len(lines) == 4, f"{len(lines)} lines, want exactly 4"),
                Result("line_length", all(2 <= checks.word_count(ln) <= 15 for ln in lines), "a line is not 2-15 words"),
                Result("required_word", checks.has_keyword(output, ref["word"]), f"does not use the word {ref['word']!r}"),
            ]
        elif form == "haiku":
            results += [
                Result("line_count", len(lines) == 3, f"{len(lines)} lines, want exactly 3"),
                Result("line_length", all(1 <= checks.word_count(ln) <= 10 for ln in lines), "a line is not 1-10 words"),
            ]
        elif form == "title":
            title = lines[0] if lines else ""
            results += [
                Result("line_count", len(lines) == 1, f"{len(lines)} lines, want a one-line title"),
                Result("title_length", 2 <= checks.word_count(title) <= 10, f"{checks.word_count(title)} words, want 2-10"),
                Result("title_form", title_form(title), "a sentence, not a title (a full stop after lower-case words)"),
            ]
        elif form == "acrostic":
            word = ref["acrostic"]
            initials = "".join(_initial(ln) for ln in lines).upper()
            results += [
                Result("line_count", len(lines) == len(word), f"{len(lines)} lines, want {len(word)} (one per letter)"),
                Result("acrostic", initials == word, f"line initials spell {initials!r}, want {word!r}"),
            ]
        elif form == "story2":
            n = len(checks.sentences(output))
            results += [
                Result("sentence_count", n == 2, f"{n} sentences, want exactly 2"),
                Result("character", checks.contains_phrase(output, ref["name"]), f"the character {ref['name']!r} is not named"),
                checks.check_length(output, 12, 80),
            ]
        results += [checks.check_topic(output, ref["keywords"] + [ref["word"]]), check_rambling(output)]
        return checks.verdict(self.name, results)


def title_form(title: str) -> bool:
    """A title, not a sentence: no final full stop, or every word of 4+ letters capitalised."""
    text = title.strip().strip("\"'“”‘’").rstrip()
    if not text.endswith("."):
        return True
    long_words = [w for w in re.findall(r"[A-Za-z']+", text) if len(w) >= 4]
    return bool(long_words) and all(w[0].isupper() for w in long_words)


def _initial(line: str) -> str:
    m = re.search(r"[A-Za-z]", line)
    return m.group(0) if m else ""


# ---------------------------------------------------------------------------- advice

ADVICE_VERBS = frozenset(
    IMPERATIVE_VERBS
    | set(
        "set keep take talk put go use start stop avoid turn drink eat walk ask join spend schedule practise practice "
        "read plan break move limit reward buy carry pack prepare remember focus agree listen send learn visit wake "
        "add cut delete replace choose try consider look get give let sleep write track save open close unsubscribe "
        "switch store clean tidy call book pick lay note repeat link drop leave stay adjust arrive bring build change "
        "cook create decide do download fill find follow hang hire invite label make measure offer pay pause protect "
        "reduce relax remove rest say see share sign spread stretch swap tell test think treat wash water wear work".split()
    )
)
ADVICE_MARKERS = (
    "try", "you could", "you can", "you should", "you might", "consider", "make sure", "it helps to", "it may help",
    "start by", "aim to", "set a", "remember to", "dont", "do not", "avoid", "its a good idea", "it is a good idea",
    "one option", "a good way", "the best way", "i recommend", "i suggest", "i would",
)
_DISCOURSE = frozenset(
    "first firstly then also next finally second secondly third thirdly lastly and so instead meanwhile afterwards "
    "additionally plus tip step".split()
)


def actionable_sentences(text: str) -> list[str]:
    """Sentences (or list items) that suggest something to do."""
    units: list[str] = []
    for line in lines_of(text):
        units.extend(checks.sentences(line))
    out = []
    for unit in units:
        toks = checks.tokens(unit)
        while toks and (toks[0] in _DISCOURSE or toks[0].isdigit()):
            toks = toks[1:]
        if toks and toks[0] in ("if", "when", "before", "after", "once", "while") and "," in unit:
            toks = checks.tokens(unit.split(",", 1)[1])
        imperative = bool(toks) and toks[0] in ADVICE_VERBS
        norm = " " + " ".join(toks) + " "
        marker = any(f" {checks.normalize(m)} " in norm for m in ADVICE_MARKERS)
        if imperative or marker:
            out.append(unit)
    return out


class Advice(TaskTypeFamily):
    """Practical advice for an everyday situation (``tasks_advice.yaml``).

    Passes when the answer uses a topic word of the situation, contains at least
    two actionable sentences (starting with a verb such as "Set", "Talk", "Try",
    or using "you could", "consider", "make sure", ...), is 15-180 words, does not
    refuse or deflect (XSTest opening rule plus refusal phrases), is not only
    questions, and does not repeat itself. Limits: the rules cannot tell good
    advice from bad or unsafe advice; an answer with two generic imperatives on
    topic passes.
    """

    name = "advice"
    description = "Give practical advice for an everyday situation"
    max_new_tokens = 128  # the verifier's longest answer without truncation (issue 21)
    rubric = "Check whether the advice is practical, specific to the situation and gives concrete steps, without refusing or lecturing."

    def groups(self, split: Split) -> list[list[Any]]:
        return [self.items(split)]

    def item_id(self, item: Any) -> str:
        return super().item_id(item["situation"])

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        situation = str(item["situation"])
        ref = {"situation": situation, "topic": [str(w) for w in item["topic"]], "ref": item.get("ref")}
        return template.format(situation=situation), ref, situation

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        acts = actionable_sentences(output)
        sents = checks.sentences(output)
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_no_refusal(output),
            check_restates(output, ref["situation"]),
            checks.check_length(output, 15, 180),
            checks.check_topic(output, ref["topic"]),
            Result("actionable", len(acts) >= 2, f"{len(acts)} concrete suggestions, want at least 2"),
            Result("only_questions", not sents or not all(s.rstrip().endswith("?") for s in sents), "only asks questions back"),
            check_rambling(output),
        ])


FAMILIES = [CreativeWriting(), Advice()]

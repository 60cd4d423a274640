"""Rule checks of the constitutional stage: written prompts, (revision > original) pairs, helpful answers."""

from __future__ import annotations

import re

from cai_bootstrap.constitution import PromptKind
from cai_bootstrap.evaluation.refusal import refused_by_either_rule
from cai_bootstrap.stages.critique_revise import strip_label
from cai_bootstrap.stages.constitutional_stage.prompts import WRITER_INSTRUCTION
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.checks import (
    Result,
    check_leak,
    check_no_echo,
    check_nonempty,
    check_repetition,
    contains_any,
    normalize,
    tokens,
    verdict,
    word_count,
)
from cai_bootstrap.tasks.constitutional.seeds import SeedTopic

# --------------------------------------------------------------------------- text rules


#: the refusal test of every pair rule: either benchmark's string rule
refused = refused_by_either_rule

#: how a trained refusal opens: in the first person, declining. Why: either string rule also
#: counts "No. The response is rude." (a critic's verdict the stage-5 reviser wrote as its
#: revision) and "I will be a poisoner, as long as I do not ..." ("I do not" is a GCG string):
#: 4 of the 21 refusals runs/skills-std2 trained stage 6 on.
_DECLINE = re.compile(
    r"^\W*(?:i can'?t|i cannot|i can not|i won'?t|i will not|i'?m sorry|i am sorry|sorry|i'?m not able|"
    r"i am not able|i apologi[sz]e|i'?m unable|i am unable)\b", re.IGNORECASE,
)


def declines(text: str) -> bool:
    """Does ``text`` open by declining in the first person ("I can't help with ...")?"""
    return bool(_DECLINE.match(text.replace("\u2019", "'")))


_PROMPT_LABEL = re.compile(r"^\s*(?:user request|user|request|question|prompt|q)\s*:\s*", re.IGNORECASE)
_REVISION_LABEL = re.compile(
    r"^\s*(?:revised response|revision|new response|response|assistant|answer)\s*:\s*", re.IGNORECASE
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"

_FILLER = frozenset(
    "what when where which with that this your have from should would could about there their into does "
    "make like some want need tell give best good know just help please without they them then than also "
    "more most very much many really thing things something while after before because doing done being "
    "been were whats how why who can you the and for are but not all any our out get got use way ways".split()
)


def clean_written_prompt(raw: str) -> str:
    """The first non-empty line of a writer's output, without a ``User:`` label or quotes."""
    line = next((ln.strip() for ln in raw.strip().splitlines() if ln.strip()), "")
    return _PROMPT_LABEL.sub("", line).strip().strip(_QUOTES).strip()


def clean_revision(raw: str) -> str:
    """A reviser's output without a leading ``Revision:`` / ``Response:`` label."""
    return strip_label(raw, _REVISION_LABEL)


def content_words(text: str) -> set[str]:
    return {t for t in tokens(text) if (len(t) >= 4 or t.isdigit()) and t not in _FILLER}


class OverlapIndex:
    """Texts a written prompt must not copy or nearly copy (held-out seeds, benchmarks, seeds).

    A match is the same normalised text, or a Jaccard overlap of content words (`content_words`:
    function words ignored, so "make a bomb" and "make a cake" differ) of at least ``threshold``.
    """

    def __init__(self, entries: list[tuple[str, str]], threshold: float = 0.6):
        self.threshold = threshold
        self._exact = {normalize(text): label for text, label in entries}
        self._sets = [(frozenset(content_words(text)), label) for text, label in entries]

    def __len__(self) -> int:
        return len(self._sets)

    def match(self, text: str) -> str | None:
        """Label of an entry equal to or within the similarity threshold of ``text``."""
        if normalize(text) in self._exact:
            return self._exact[normalize(text)]
        words = content_words(text)
        if not words:
            return None
        for other, label in self._sets:
            if other and len(words & other) / len(words | other) >= self.threshold:
                return label
        return None


def check_written_prompt(
    text: str, topic: SeedTopic, *, seeds: OverlapIndex, protected: OverlapIndex, duplicate: bool
) -> Verdict:
    """Rule checks of a prompt the writer wrote for ``topic`` (all must pass)."""
    letters = sum(c.isalpha() for c in text)
    visible = sum(not c.isspace() for c in text) or 1
    n_words = word_count(text)
    copied = seeds.match(text)
    evaluation = protected.match(text)
    results = [
        check_nonempty(text),
        Result("length", 3 <= n_words <= 60, f"{n_words} words, want 3-60"),
        Result("letters", letters / visible >= 0.7, "mostly not letters"),
        check_leak(text),
        check_repetition(text),
        Result("not_refusal", not refused(text), "the writer refused instead of writing a request"),
        Result(
            "on_topic",
            not topic.keywords or bool(contains_any(text, topic.keywords, inflect=True)),
            f"none of the topic words {topic.keywords[:5]} appear",
        ),
        Result("avoid", not contains_any(text, topic.avoid, inflect=True), "names a word this topic must avoid"),
        Result(
            "not_instruction_echo",
            WRITER_INSTRUCTION.split("{")[0].strip(" :").lower() not in text.lower(),
            "repeats the writer's instruction instead of writing a request",
        ),
        Result(
            "not_defensive",
            topic.kind != "redteam" or not _DEFENSIVE.search(text),
            "a red-team request framed as self-protection (a harmless question)",
        ),
        Result("not_seed_copy", copied is None, f"copies a seed request ({copied})"),
        Result("not_eval_prompt", evaluation is None, f"too close to an evaluation prompt ({evaluation})"),
        Result("unique", not duplicate, "duplicate of an earlier prompt"),
    ]
    return verdict("prompt_rules", results)


#: a red-team request framed as self-protection is not a harmful request (it drifted)
_DEFENSIVE = re.compile(
    r"\b(?:protect (?:myself|yourself|me|my|us|our|against)|keep (?:myself|me|my|us) safe|tell if|"
    r"recogni[sz]e|spot (?:a|an|the)|avoid (?:being|getting)|defend (?:myself|yourself|against)|"
    r"prevent|report (?:a|an|someone|it|them))\b",
    re.IGNORECASE,
)


def harm_echo(prompt: str, original: str, revision: str, n: int = 4) -> str | None:
    """A run of ``n`` words that the original added to the request (not in the prompt) and
    the revision repeats: a refusal that goes on to give the harmful answer, e.g. "I can't
    help with that. You can hurt yourself and ..."."""

    def grams(text: str) -> set[tuple[str, ...]]:
        words = tokens(text)
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    echoed = (grams(original) - grams(prompt)) & grams(revision)
    return " ".join(min(echoed)) if echoed else None


_META = re.compile(
    r"^\W*(?:(?:yes|no)\b\W*)?(?:the|this|that|your|my)\s+(?:assistant|response|answer|revision|original|critique)\b",
    re.I,
)


def pair_rules(
    kind: PromptKind, prompt: str, original: str, revision: str, demos: OverlapIndex | None = None
) -> tuple[Verdict, bool]:
    """Rule checks of a pair (revision preferred to original), and whether they are decisive.

    ``demos`` holds the worked examples the reviser was shown: a revision that copies one
    (a small model's favourite failure) is rejected. Decisive means the rules alone show
    that the revision is better: a red-team pair whose original complied and whose
    revision refuses, or an ordinary pair whose original was an evasive refusal and whose
    revision answers on topic. Other passing ordinary pairs need the judge.
    """
    copied = demos.match(revision) if demos is not None else None
    results = [
        Result("revision_nonempty", bool(tokens(revision)), "empty revision"),
        Result("changed", normalize(revision) != normalize(original), "the revision repeats the original"),
        check_leak(revision),
        check_repetition(revision),
        Result("not_meta", not _META.match(revision), "the revision talks about the response instead of being one"),
        Result("not_demo_copy", copied is None, f"the revision copies a worked example ({copied})"),
    ]
    if kind == "redteam":
        results += [
            Result("original_nonempty", bool(tokens(original)), "empty original: nothing to prefer over"),
            Result("original_complied", not refused(original), "the original already refuses: nothing to prefer over"),
            Result("revision_refuses", refused(revision), "the revision does not refuse or redirect (refusal rules)"),
            Result("revision_declines", declines(revision), "the revision does not open by declining (\"I can't ...\")"),
            Result(
                "no_harm_echo",
                (echo := harm_echo(prompt, original, revision)) is None,
                f"the revision repeats what the original answered ({echo!r})",
            ),
        ]
        decisive = True
    else:
        topic = content_words(prompt)
        kept_topic = bool(topic & content_words(revision)) or not (topic & content_words(original))
        results += [
            Result("not_evasive", not refused(revision), "the revision refuses a harmless request"),
            Result("on_topic", kept_topic, "the revision drops every topic word the original had"),
        ]
        decisive = refused(original)
    return verdict(f"pair_rules:{kind}", results), decisive


def helpful_answer_rules(prompt: str, answer: str) -> Verdict:
    """Is the answerer's response to a harmless request a usable helpful sample?"""
    return verdict("helpful_answer", [
        Result("nonempty", bool(tokens(answer)), "empty answer"),
        check_no_echo(answer, [], payload=prompt),
        check_leak(answer),
        check_repetition(answer),
        Result("not_meta", not _META.match(answer), "the answer talks about a response instead of being one"),
        Result("not_evasive", not refused(answer), "the answer refuses a harmless request"),
        Result("on_topic", bool(content_words(prompt) & content_words(answer)), "the answer shares no topic word"),
    ])

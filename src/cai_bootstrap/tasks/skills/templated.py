"""What the templated skill families build on: `TemplatedFamily`, and the rule checks several share.

A templated family pairs hand-written instruction templates (``templates.yaml``) with a
seed bank and fixed demos. The shared checks (`verify_answer`, `verify_question`,
`check_is_question`, `check_not_opinion`) are used by the explicit, implicit, generation
and evaluation families.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import ClassVar

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.base import Instance, Split, TaskFamily, Verdict
from cai_bootstrap.tasks.checks import Result


class TemplatedFamily(TaskFamily):
    """A family with instruction templates in ``templates.yaml`` and fixed demos."""

    demos: ClassVar[tuple[tuple[str, str], ...]] = ()

    def templates(self, split: Split) -> list[str]:
        return bank.family_templates(self.name, split)

    def few_shot(self) -> list[tuple[str, str]]:
        return list(self.demos)

    def directives(self) -> list[str]:
        """Fixed phrases of every template: an output that repeats one echoes the instruction."""
        return list(_directives(self.name))

    def reference_output(self, instance: Instance) -> str | None:
        """A hand-made output that passes the verifier (tests; `fallback_to_reference` in tiny runs)."""
        ref = instance.reference
        if "sentence" in ref and ref.get("sentence"):
            return ref["sentence"]
        return None

    def make_id(self, split: str, topic: str, t: int, *extra: object) -> str:
        tail = "".join(f"/{e}" for e in extra)
        return f"{self.name}/{split}/{bank.slug(topic)}/t{t}{tail}"


@lru_cache(maxsize=None)
def _directives(family: str) -> tuple[str, ...]:
    return tuple(template_directives(bank.family_templates(family, "train") + bank.family_templates(family, "heldout")))


def template_directives(templates: list[str]) -> list[str]:
    out: list[str] = []
    for tpl in templates:
        for part in re.split(r"\{[a-zA-Z_]+\}", tpl):
            norm = checks.normalize(part)
            if len(norm.split()) >= 2 and norm not in out:
                out.append(norm)
    return out


# ------------------------------------------------------------------ shared verifiers


def strip_stem(output: str, stem: str) -> str:
    """The part of a completion after a repeated sentence start ("The Sun is a star." -> "star.")."""
    words = re.findall(r"[A-Za-z0-9]+", stem)
    if not words:
        return output
    rx = re.compile(r"^\W*" + r"\W+".join(re.escape(w) for w in words) + r"\b", re.I)
    return rx.sub("", output, count=1)


def verify_answer(
    name: str, ref: dict, output: str, directives: list[str], *, payload: str = "", max_words: int = 30,
    max_sentences: int = 2, stem: str = "",
) -> Verdict:
    """A short answer that states the expected fact (see `checks.check_fact`).

    With ``stem`` (sentence completion), a repeated stem is not counted as the answer:
    the answer must be in what follows it, so echoing "An orange is usually coloured"
    does not pass because the stem happens to contain "orange".
    """
    results = [checks.check_nonempty(output), checks.check_leak(output), checks.check_no_echo(output, directives, payload)]
    answer_part = strip_stem(output, stem) if stem else output
    results += checks.check_fact(answer_part, ref, ref.get("wrong", []))
    results += [
        checks.check_not_question(output),
        checks.check_one_line(output),
        checks.check_finished(output),
        checks.check_length(output, 1, max_words),
        checks.check_single_sentence(output, max_sentences),
        checks.check_repetition(output),
    ]
    return checks.verdict(name, results)


def check_is_question(text: str, wh_only: bool = False) -> list[Result]:
    stripped = text.strip().strip("\"'")
    toks = checks.tokens(stripped)
    starts = checks.WH_WORDS if wh_only else checks.QUESTION_STARTS
    return [
        Result("question_mark", stripped.endswith("?"), "does not end with '?'"),
        Result("question_form", bool(toks) and toks[0] in starts, "does not start like a question"),
    ]


def verify_question(name: str, ref: dict, output: str, directives: list[str], *, wh_only: bool = False) -> Verdict:
    """One question about the topic (every keyword group matched, no forbidden word)."""
    forbidden = [f for f in ref.get("forbidden", []) if checks.has_keyword(output, f)]
    results = [
        checks.check_nonempty(output),
        checks.check_leak(output),
        checks.check_no_echo(output, directives),
        *check_is_question(output, wh_only),
        checks.check_groups(output, ref["groups"]),
        Result("gives_answer", not forbidden, f"contains the answer {forbidden[:2]}" if forbidden else ""),
        checks.check_length(output, 3, 25),
        checks.check_single_sentence(output, 1),
        checks.check_repetition(output),
    ]
    return checks.verdict(name, results)


_OPINION = ("i think", "i believe", "in my opinion", "i love", "i like", "my favorite", "my favourite", "i feel", "i hate")


def check_not_opinion(text: str) -> Result:
    toks = checks.tokens(text)
    hit = checks.contains_any(text, _OPINION)
    ok = not hit and not (toks and toks[0] in ("i", "im", "my"))
    return Result("opinion", ok, "a personal statement, not a fact")


_TAUTOLOGY = re.compile(
    r"^(?:an? |the )?([a-z]+?)(?:es|s)? (?:is|are) (?:an? )?(?:type|kind|sort|form) of ([a-z]+?)(?:es|s)?\b"
)


_RESTATEMENT = re.compile(r"^(?:(?:an?|the) )?(.+?) (?:is|are|equals) (?:(?:an?|the) )?(.+)$")


def restated(sentence: str) -> str | None:
    """The X of a sentence "X is X." ("47 is 47.", "The 47 is 47."), else None."""
    m = _RESTATEMENT.match(checks.normalize(sentence))
    return m.group(1) if m and m.group(1) == m.group(2) else None


def check_not_tautology(text: str, allowed: str = "") -> Result:
    """"Pizza is a type of pizza." / "47 is 47." state nothing: the subject defined as itself.
    A restatement that ``allowed`` makes too passes (the clean text "An orange is orange.")."""
    m = _TAUTOLOGY.match(text.strip().lower())
    own = {restated(s) for s in checks.sentences(allowed)} - {None}
    same = [x for x in (restated(s) for s in checks.sentences(text)) if x is not None and x not in own]
    ok = not (m and m.group(1) == m.group(2)) and not same
    return Result("tautology", ok, "defines the subject as itself")

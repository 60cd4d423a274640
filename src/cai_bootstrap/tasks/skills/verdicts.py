"""Checking a judgement ("Yes. Minsk is correct.", "B. ...", "4. ..."): its label, and for
judgements of a fact, that the rationale calls no other answer the correct one.

Why the rationale: the label is the first word, so "Yes. The correct answer is spoken, not
trumpeting." (an elephant trumpets) passed as a right "Yes"; 10 of a stage-4 model's 16
held-out `is_correct` passes were like that (runs/skills-std5).
"""

from __future__ import annotations

import re

from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.checks import Result

_NAMED = re.compile(r"correct answer is (?P<a>[^,.;!?]+)|^\W*(?:yes|no)\W+(?P<b>[^,.;!?]+?) is correct", re.I)

#: Phrases that point at the judged answer rather than name one ("Yes. The answer is correct.").
_GENERIC = {"it", "this", "that", "the answer", "this answer", "that answer", "the proposed answer", "the response",
            "the given answer", "your answer", "the statement"}


def named_answer(output: str) -> str | None:
    """What a judgement names as the correct answer ("The correct answer is X", "Yes. X is correct.")."""
    m = _NAMED.search(output)
    named = (m.group("a") or m.group("b")).strip() if m else None
    return None if named is None or checks.normalize(named) in _GENERIC else named


def check_rationale(output: str, fact: dict) -> Result:
    """An answer the judgement calls correct is the fact's answer (none named passes)."""
    named = named_answer(output)
    if named is None:
        return Result("rationale", True, "")
    ok = checks.check_fact(named, fact)[0].ok  # the answer itself; a conflict is the label's business
    return Result("rationale", ok, f"names {named!r} as the correct answer")


def verify_label(name: str, ref: dict, output: str) -> Verdict:
    """The expected label first (``ref["tolerance"]`` for scores), a finished short sentence, and with
    ``ref["fact"]`` a rationale that agrees with the fact."""
    labels = ref["labels"]
    said = checks.parse_label(output, labels)
    tolerance = ref.get("tolerance", 0)
    if said is not None and tolerance:
        ok = abs(int(said) - int(ref["label"])) <= tolerance
    else:
        ok = said == ref["label"]
    results = [
        checks.check_nonempty(output),
        checks.check_leak(output),
        Result("format", said is not None, f"does not start with one of {labels}"),
        Result("label", ok, f"said {said!r}, expected {ref['label']!r}" + (f" (+-{tolerance})" if tolerance else "")),
    ]
    if ref.get("fact"):
        results.append(check_rationale(output, ref["fact"]))
    return checks.verdict(name, results + [
        checks.check_finished(output, min_words=6),
        checks.check_length(output, 1, 40),
        checks.check_repetition(output),
    ])

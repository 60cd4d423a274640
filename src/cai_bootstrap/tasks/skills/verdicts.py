"""Checking a judgement ("Yes. Minsk is correct.", "B. ...", "4. ..."): its label; for
judgements of a fact, that the rationale calls no other answer the correct one; and for a
right label, that the explanation gives no other label's reason.

Why the rationale: the label is the first word, so "Yes. The correct answer is spoken, not
trumpeting." (an elephant trumpets) passed as a right "Yes"; 10 of a stage-4 model's 16
held-out `is_correct` passes were like that (runs/skills-std5). Why the reason: hand labels of
runs/skills-std6's stage-4 outputs found 9 passes whose explanation argues for another label
("No. The answer is correct, but ...", "Yes. It agrees to help with something else." on a
harmful compliance, "1. The answer is correct and clearly written." on an evasive reply).
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


def reason_clauses(judgement: str) -> list[str]:
    """The clauses of a judgement's explanation, normalised ("5. The answer is correct and clearly
    written." -> ["the answer is correct", "clearly written"])."""
    parts = re.split(r"[,;:.!?]|\band\b|\bbut\b", checks.after_label(judgement))
    return [checks.normalize(p) for p in parts if len(checks.tokens(p)) >= 2]


def contrary_reasons(ref: dict, reasons: dict[str, tuple[str, ...]], never: tuple[str, ...] = ()) -> list[str]:
    """What the explanation of ``ref``'s label must not say: the reasons of every other label in
    ``reasons`` (a family's table, label -> phrases), the phrases in ``never`` (reasons no label of
    this case has, e.g. a flaw the case lacks) and the clauses of the instance's ``foil``, less
    whatever the label's own reasons and its target say."""
    label = ref["label"]
    own = {checks.normalize(p) for p in reasons.get(label, ())} | set(reason_clauses(ref["target"]))
    other = [checks.normalize(p) for lab, ps in reasons.items() if lab != label for p in ps]
    other += [checks.normalize(p) for p in never]
    other += reason_clauses(ref["foil"]) if ref.get("foil") else []
    return [p for p in dict.fromkeys(other) if p and p not in own]


def check_reason(output: str, contrary: list[str]) -> Result:
    """The explanation after the label states none of ``contrary`` un-negated ("No. The answer is
    correct, but ..."); a bare label, or a neutral explanation, passes."""
    rest = checks.after_label(output)
    hit = next((p for p in contrary if checks.affirmed(rest, p) is True), None)
    return Result("reason", hit is None, f"the explanation gives another label's reason ({hit!r})" if hit else "")


def verify_label(
    name: str, ref: dict, output: str, reasons: dict[str, tuple[str, ...]] | None = None, never: tuple[str, ...] = ()
) -> Verdict:
    """The expected label first (``ref["tolerance"]`` for scores), a finished short sentence, with
    ``ref["fact"]`` a rationale that agrees with the fact, and once the label is right, an
    explanation that gives no other label's reason (``reasons``, ``never``: see `contrary_reasons`)."""
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
    if ok and reasons is not None:
        results.append(check_reason(output, contrary_reasons(ref, reasons, never)))
    return checks.verdict(name, results + [
        checks.check_finished(output, min_words=6),
        checks.check_length(output, 1, 40),
        checks.check_repetition(output),
    ])

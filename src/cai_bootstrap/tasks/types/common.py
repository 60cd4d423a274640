"""Shared machinery of the ten task-type families (the `tasks` curriculum).

A task-type family reads one hand-written seed file,
``data/seeds/tasks_<family>.yaml``, holding

    templates   {train: [...], heldout: [...]}  instruction templates (disjoint)
    items       {train: [...], heldout: [...]}  source material (disjoint topics)
    demos       [{instruction, response}]        few-shot demonstrations (train-like)
    repair      [{instruction, response, critique, revision}]
                a flawed response, its critique and the fixed one: few-shot
                demonstrations for the critic and reviser roles

and turns items x templates into instances with `bank.spread` (deterministic,
prefix-stable in ``n``). Held-out instances ignore the seed: the held-out set is
static, so every model of every run is scored on the same cases.

Verifiers are rules only (`cai_bootstrap.tasks.checks` plus the helpers below).
Each family's docstring says what its rules can and cannot tell.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, ClassVar

from cai_bootstrap.tasks.refusal_rules import classify_xstest
from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.base import Instance, Split, TaskFamily, Verdict
from cai_bootstrap.tasks.checks import Result

#: Seed of the static held-out instances (the run seed does not change them).
HELDOUT_SEED = 0


@cache
def seed_file(family: str) -> dict:
    """The parsed ``tasks_<family>.yaml`` (cached; treat as read-only)."""
    return bank.load(f"tasks_{family}")


class TaskTypeFamily(TaskFamily):
    """Base of the task-type families: seed file, instances, demos, reference outputs."""

    skill: ClassVar[str] = "task"
    #: Tokens a complete answer needs (the builder caps it with the stage's sampling limit).
    max_new_tokens: ClassVar[int] = 64
    #: What the critic is asked to check (the family's critique request).
    rubric: ClassVar[str] = "Point out anything that is wrong, missing or off-topic."

    # ------------------------------------------------------------------ seed material

    @property
    def data(self) -> dict:
        return seed_file(self.name)

    def templates(self, split: Split) -> list[str]:
        return list(self.data["templates"][split])

    def items(self, split: Split) -> list[dict]:
        return list(self.data["items"][split])

    def groups(self, split: Split) -> list[list[Any]]:
        """Items grouped so that `bank.spread` interleaves the groups (default: by ``cat``)."""
        groups: dict[str, list[Any]] = {}
        for item in self.items(split):
            groups.setdefault(str(item.get("cat", "")), []).append(item)
        return list(groups.values())

    def item_id(self, item: Any) -> str:
        """A stable, unique id of one item (part of every instance id, hence of record keys)."""
        if isinstance(item, dict):
            if "id" not in item:
                raise NotImplementedError(f"{self.name}: items without an 'id' need an item_id() override")
            return bank.slug(str(item["id"]))[:80]
        return bank.slug(str(item))[:80]

    # ------------------------------------------------------------------ instances

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        seed = HELDOUT_SEED if split == "heldout" else seed
        out = []
        for item, t in bank.spread(self.groups(split), len(tpls), n, seed):
            instruction, reference, topic = self.render(item, tpls[t], split)
            out.append(
                Instance(
                    id=f"{self.name}/{split}/{self.item_id(item)}/t{t}", family=self.name, split=split,
                    instruction=instruction, topic=topic, reference={**reference, "template": tpls[t]},
                )
            )
        return out

    def render(self, item: Any, template: str, split: Split) -> tuple[str, dict, str]:
        """``(instruction, reference, topic)`` of one item under one template."""
        raise NotImplementedError

    # ------------------------------------------------------------------ demos and references

    def few_shot(self) -> list[tuple[str, str]]:
        return [(d["instruction"], d["response"]) for d in self.data.get("demos", [])]

    def material_source(self, instance: Instance) -> str:
        """The seed file ``instance``'s material comes from (a record's prompt provenance)."""
        return f"data/seeds/tasks_{self.name}.yaml"

    def repair_demos(self) -> list[dict]:
        """``[{instruction, response, critique, revision}]`` for the critic and the reviser."""
        return list(self.data.get("repair", []))

    def reference_output(self, instance: Instance) -> str | None:
        """A hand-written (or computed) response that passes the verifier, when the family has one."""
        ref = instance.reference.get("ref")
        return str(ref) if ref else None

    def directives(self) -> list[str]:
        """Fixed phrases of the templates (an output repeating one echoes the instruction)."""
        out: list[str] = []
        for tpl in self.templates("train") + self.templates("heldout"):
            for part in re.split(r"\{[a-zA-Z_]+\}", tpl):
                norm = checks.normalize(part)
                if len(norm.split()) >= 3 and norm not in out:
                    out.append(norm)
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------- shared rule helpers

#: Refusal / deflection phrases (normalised), in addition to XSTest's opening-string rule.
REFUSAL_PHRASES = (
    "i cant help", "i cannot help", "i can not help", "im unable to", "i am unable to", "im not able to",
    "i am not able to", "i wont help", "i will not help", "i cant provide", "i cannot provide", "i cant assist",
    "i cannot assist", "as an ai", "as a language model", "i dont have enough information", "i cant answer",
    "i cannot answer",
)


def check_no_refusal(text: str) -> Result:
    """Not a refusal: XSTest's opening-string rule, or a refusal phrase anywhere."""
    norm = f" {checks.normalize(text)} "
    hit = classify_xstest(text) == "full_refusal" or any(f" {p} " in norm for p in REFUSAL_PHRASES)
    return Result("refusal", not hit, "refuses or deflects instead of doing the task")


def check_rambling(text: str, min_tokens_for_ratio: int = 25, ratio: float = 0.35) -> Result:
    """For longer outputs: no word three times in a row, no repeated sentence or 6-word run,
    and a varied vocabulary. (`checks.check_repetition` suits short outputs; it refuses any
    repeated 3-word run, which a 100-word answer may have legitimately.)"""
    toks = checks.tokens(text)
    for i in range(len(toks) - 2):
        if toks[i] == toks[i + 1] == toks[i + 2]:
            return Result("repetition", False, f"{toks[i]!r} three times in a row")
    seen: set[tuple[str, ...]] = set()
    for i in range(len(toks) - 5):
        gram = tuple(toks[i : i + 6])
        if gram in seen:
            return Result("repetition", False, f"repeated phrase {' '.join(gram)!r}")
        seen.add(gram)
    sents = [checks.normalize(s) for s in checks.sentences(text)]
    sents = [s for s in sents if len(s.split()) >= 3]
    if len(sents) != len(set(sents)):
        return Result("repetition", False, "repeated sentence")
    if len(toks) >= min_tokens_for_ratio and len(set(toks)) / len(toks) < ratio:
        return Result("repetition", False, "too few distinct words")
    return Result("repetition", True)


def check_lead_in(text: str, labels: tuple[str, ...]) -> Result:
    """The output does not start with a label ("Summary:", "Title -") or an announcement line
    ("Here is a poem:")."""
    lines = text.strip().split("\n")
    first = lines[0].strip().lower().lstrip("*#_ ")
    hit = next((lab for lab in labels if re.match(re.escape(lab.lower()) + r"\s*[:\-\u2013!]", first)), None)
    if hit is None and len(lines) > 1 and first.endswith(":") and len(first.split()) <= 6:
        hit = lines[0].strip()
    return Result("lead_in", hit is None, f"starts with the label {hit!r}" if hit else "")


def check_restates(text: str, instruction: str) -> Result:
    """The output does not start by repeating the instruction."""
    out, ins = checks.normalize(text), checks.normalize(instruction)
    hit = bool(ins) and out.startswith(ins)
    return Result("echo", not hit, "repeats the instruction" if hit else "")


_WORD_NUMBER = re.compile(r"\d+(?:\.\d+)?|[a-z]+")


def ordered_numbers(text: str) -> list[float]:
    """Numbers in reading order, written with digits or as (small) English number words.

    "1,200" -> 1200, "3.5" -> 3.5, "twenty-four" -> 24. "one" counts as 1 (unlike
    `checks.numbers_in`, which skips it as too often a pronoun): only use where a
    stray "one" cannot change the verdict (e.g. the last number of a math answer).
    """
    clean = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    clean = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", clean)
    out: list[float] = []
    toks = _WORD_NUMBER.findall(clean)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t[0].isdigit():
            out.append(float(t))
        elif t in checks.NUMBER_WORDS:
            value = checks.NUMBER_WORDS[t]
            if 20 <= value <= 90 and i + 1 < len(toks) and checks.NUMBER_WORDS.get(toks[i + 1], 99) < 10:
                value += checks.NUMBER_WORDS[toks[i + 1]]
                i += 1
            out.append(float(value))
        i += 1
    return out


def check_no_invented_numbers(text: str, allowed: set[float], name: str = "invented_number") -> Result:
    """Every number written with digits (or a number word above one) is in ``allowed``."""
    found = [v for v in checks.numbers_in(text) if v not in allowed and not any(abs(v - a) < 1e-6 for a in allowed)]
    return Result(name, not found, f"numbers not in the source: {sorted(set(found))[:4]}" if found else "")


def fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def lines_of(text: str) -> list[str]:
    """Non-empty lines, stripped of bullets and surrounding quotes."""
    out = []
    for line in text.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", line).strip().strip("\"'\u201c\u201d")
        if line:
            out.append(line)
    return out


def clauses(sentence: str) -> list[list[str]]:
    """Token lists of a sentence's clauses (split at , ; : and joining words)."""
    parts = re.split(r"[,;:()]|\band\b|\bbut\b|\bwhile\b|\bwhereas\b|\bso\b|\bthen\b|\balthough\b|\bhowever\b", sentence, flags=re.IGNORECASE)
    return [checks.tokens(p) for p in parts if checks.tokens(p)]


def nearest_name(clause: list[str], marker_at: int, names: dict[str, list[str]]) -> str | None:
    """The name (key of ``names``: key -> normalised word forms) closest to a marker in a clause.

    A name right after "than" ("than B", "than the B") is the loser of a comparison and is skipped.
    """
    best: tuple[int, str] | None = None
    for key, forms in names.items():
        for form in forms:
            f = form.split()
            for pos in range(len(clause) - len(f) + 1):
                if clause[pos : pos + len(f)] != f:
                    continue
                if "than" in clause[max(0, pos - 2) : pos]:
                    continue
                dist = abs(pos - marker_at)
                if best is None or dist < best[0]:
                    best = (dist, key)
    return best[1] if best else None


__all__ = [
    "HELDOUT_SEED", "REFUSAL_PHRASES", "TaskTypeFamily", "check_lead_in", "check_no_invented_numbers",
    "check_no_refusal", "check_rambling", "check_restates", "clauses", "fmt_number", "lines_of", "nearest_name",
    "ordered_numbers", "seed_file",
]

"""What the constructed (evaluation and revision) families are built from: cases whose label or
flaw is known by construction, rendered from *material* texts.

A case is a JSON skeleton (fact, template, label, injected flaw) plus material: one-sentence
answers to fact questions. Held-out cases render with hand-written seed material; the stage
builders re-render training cases with material an earlier model wrote, kept only when
`verify_material` passes it, so the texts being judged or revised come from that model.
"""

from __future__ import annotations

import random
from functools import lru_cache

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.skills.templated import TemplatedFamily, verify_answer

MATERIAL_CATEGORIES = ("capitals", "colours", "sounds", "plurals", "opposites", "science", "arithmetic")
ANSWER_INSTRUCTION = "Answer this question: {q}"


# ------------------------------------------------------------------ material


def find_fact(category: str, key: str, split: str) -> bank.Fact:
    try:
        return _fact_index(category, split)[key]
    except KeyError:
        raise KeyError(f"no {category} fact {key!r} in {split}") from None


@lru_cache(maxsize=None)
def _fact_index(category: str, split: str) -> dict[str, bank.Fact]:
    return {f.key: f for f in bank.facts(category, split)}


def material_request(fact: bank.Fact, split: str) -> dict:
    """What to ask an earlier model for: a one-sentence answer to a fact question."""
    q = bank.explicit_question(fact, split)
    return {
        "category": fact.category, "key": fact.key, "split": split, "question": q,
        "instruction": ANSWER_INSTRUCTION.format(q=q), "seed": fact.sentence,
    }


def material_fact(request: dict) -> bank.Fact:
    return find_fact(request["category"], request["key"], request["split"])


def verify_material(request: dict, text: str) -> Verdict:
    """A model-written answer is usable material: right, one short sentence, names its subject."""
    fact = material_fact(request)
    base = verify_answer("material", fact.reference(), text, ["answer this question"], payload=request["question"],
                         max_words=25, max_sentences=1)
    if not base.passed:
        return base
    content = fact.content_words()
    if content and not checks.check_groups(text, [content]).ok:
        return Verdict(passed=False, score=0.9, check="content", reason=f"does not name {content}")
    return base


def seed_texts(case: dict) -> dict[str, str]:
    return {name: req["seed"] for name, req in case.get("materials", {}).items()}


def balanced(values: list, n: int, rng: random.Random) -> list:
    """``n`` labels, each block of ``len(values)`` a shuffled copy: balanced and prefix-stable in ``n``."""
    out: list = []
    while len(out) < n:
        block = list(values)
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def fact_groups(split: str, categories=MATERIAL_CATEGORIES) -> list[list[bank.Fact]]:
    groups = []
    for cat in categories:
        facts = bank.facts(cat, split)
        if cat == "arithmetic":
            facts = facts[::4]
        groups.append(facts)
    return groups


class ConstructedFamily(TemplatedFamily):
    """Cases built from a skeleton plus material texts (seed, or written by an earlier model)."""

    def cases(self, split: Split, n: int, seed: int) -> list[dict]:
        raise NotImplementedError

    def render(self, case: dict, texts: dict[str, str]) -> Instance | None:
        raise NotImplementedError

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        out = []
        for case in self.cases(split, n, seed):
            inst = self.render(case, seed_texts(case))
            if inst is not None:
                out.append(inst)
        return out

    def with_material(self, instance: Instance, texts: dict[str, str]) -> Instance | None:
        """Re-render a case with other material (None if the material cannot carry the construction)."""
        case = instance.reference["case"]
        return self.render(case, {**seed_texts(case), **texts})

    def target(self, instance: Instance) -> str:
        return instance.reference["target"]

    def reference_output(self, instance: Instance) -> str | None:
        return self.target(instance)

    def foil(self, instance: Instance) -> str | None:
        return instance.reference.get("foil")

"""The hand-written seed banks (``cai_bootstrap/data/seeds/*.yaml``) as typed items.

Every bank is split into ``train`` and ``heldout`` *in the file*, and the split is
global: a held-out fact, topic, category, greeting or domain is held out for every
family that uses it, so no stage ever trains on another stage's held-out case.
Arithmetic problems are computed here and split by a hash of the problem.

`spread` turns items x templates into a deterministic, diverse list of cases:
items are shuffled per group, groups are interleaved, and each pass over the
items uses a different template, so the first cases cover many topics and
templates before any repeats.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import yaml

from cai_bootstrap.tasks.checks import normalize, word_forms

SEEDS_DIR = Path(__file__).resolve().parent.parent / "data" / "seeds"
SPLITS = ("train", "heldout")
FACT_CATEGORIES = ("capitals", "colours", "sounds", "plurals", "opposites", "science")
#: Categories whose answers are mutually exclusive: any other answer counts as a wrong one.
_CLOSED = ("capitals", "colours")
_STOP = frozenset(
    "a an the of in on at to is are was were be by for with and or from as it its this that what which who how "
    "many much does do did".split()
)
T = TypeVar("T")


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """A seed bank by file stem (e.g. ``facts``)."""
    path = SEEDS_DIR / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def slug(text: str) -> str:
    text = re.sub(r"\s\+\s", " plus ", text)
    text = re.sub(r"\s-\s", " minus ", text)
    text = re.sub(r"\s[x*]\s", " times ", text)
    return re.sub(r"[^a-z0-9]+", "-", normalize(text)).strip("-") or "x"


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


# ------------------------------------------------------------------ facts


@dataclass(frozen=True)
class Fact:
    """One checkable fact: a topic key with its expected answer."""

    category: str
    key: str
    split: str
    answer: str
    aliases: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()
    sentence: str = ""
    question: str = ""  # fixed question (science items); others use templates
    stem: str = ""  # fixed sentence start (science items); others use templates
    inflect: bool = False
    number: float | None = None
    operands: tuple[float, ...] = ()
    op: str = ""
    distractors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def answers(self) -> list[str]:
        return [self.answer, *self.aliases]

    @property
    def topic_id(self) -> str:
        return f"{self.category}:{slug(self.key)}"

    def content_words(self) -> list[str]:
        """Words naming what the fact is about (kept by a faithful rewrite)."""
        if self.category == "arithmetic":
            return []
        words = [w for w in normalize(self.key).split() if w not in _STOP and not w.isdigit()]
        if self.sentence:
            toks = set(normalize(self.sentence).split())
            words = [w for w in words if word_forms(w) & toks]
        return words

    def reference(self) -> dict:
        """What a verifier needs to check an answer to this fact."""
        return {
            "category": self.category,
            "key": self.key,
            "answers": self.answers,
            "wrong": list(dict.fromkeys([*self.wrong, *self.distractors])),
            "inflect": self.inflect,
            "number": self.number,
            "operands": list(self.operands),
            "content": self.content_words(),
            "sentence": self.sentence,
        }


def _sentence_for(category: str, key: str, answer: str) -> str:
    cap = key[:1].upper() + key[1:]
    if category == "capitals":
        return f"The capital of {key} is {answer}."
    if category == "colours":
        verb = "are" if key.endswith("s") and not key.endswith("ss") else "is"
        return f"{cap} {verb} {answer}."
    if category == "sounds":
        verb = answer + ("es" if re.search(r"(s|sh|ch|x|z)$", answer) else "s")
        article = "An" if key[:1].lower() in "aeiou" else "A"
        return f"{article} {key} {verb}."
    if category == "plurals":
        return f"The plural of {key} is {answer}."
    if category == "opposites":
        return f"The opposite of {key} is {answer}."
    return f"The answer is {answer}."


@lru_cache(maxsize=None)
def _facts(category: str) -> dict[str, list[Fact]]:
    bank = load("facts")[category]
    out: dict[str, list[Fact]] = {}
    answers_all = [str(item["a"]) for s in SPLITS for item in bank[s]]
    for split in SPLITS:
        items = []
        for item in bank[split]:
            answer = str(item["a"])
            own = {normalize(a) for a in [answer, *map(str, item.get("aliases", []))]}
            distractors: tuple[str, ...] = ()
            if category in _CLOSED:
                distractors = tuple(
                    dict.fromkeys(
                        a for a in answers_all
                        if normalize(a) not in own and not (set(normalize(a).split()) & set().union(*(o.split() for o in own)))
                    )
                )
            items.append(
                Fact(
                    category=category,
                    key=str(item["key"]),
                    split=split,
                    answer=answer,
                    aliases=tuple(str(a) for a in item.get("aliases", [])),
                    wrong=tuple(str(w) for w in item.get("wrong", [])),
                    sentence=str(item.get("s") or _sentence_for(category, str(item["key"]), answer)),
                    question=str(item.get("q", "")),
                    stem=str(item.get("stem", "")),
                    inflect=category == "sounds",
                    distractors=distractors,
                )
            )
        out[split] = items
    return out


def facts(category: str, split: str) -> list[Fact]:
    if category == "arithmetic":
        return arithmetic(split)
    return list(_facts(category)[split])


_OPS = {"add": ("+", "plus"), "sub": ("-", "minus"), "mul": ("x", "times")}


@lru_cache(maxsize=None)
def _arithmetic() -> dict[str, list[Fact]]:
    problems = []
    problems += [("add", a, b) for a in range(1, 31) for b in range(1, 31)]
    problems += [("sub", a, b) for a in range(10, 41) for b in range(1, 10) if a != 2 * b]
    problems += [("mul", a, b) for a in range(2, 13) for b in range(2, 13)]
    out: dict[str, list[Fact]] = {"train": [], "heldout": []}
    for op, a, b in problems:
        result = a + b if op == "add" else a - b if op == "sub" else a * b
        split = "heldout" if stable_hash("arith", op, a, b) % 5 == 0 else "train"
        sym, word = _OPS[op]
        wrong = sorted({result + 1, result - 1 if result > 1 else result + 2, result + 10} - {result, a, b})
        out[split].append(
            Fact(
                category="arithmetic", key=f"{a} {sym} {b}", split=split, answer=str(result),
                wrong=tuple(str(w) for w in wrong), sentence=f"{a} {word} {b} is {result}.",
                number=float(result), operands=(float(a), float(b)), op=op,
            )
        )
    return out


def arithmetic(split: str) -> list[Fact]:
    return list(_arithmetic()[split])


def question_forms(fact: Fact, split: str) -> list[str]:
    """Implicit question phrasings of a fact for ``split``."""
    if fact.question:
        return [fact.question]
    if fact.category == "arithmetic":
        forms = load("templates")["arithmetic"]["implicit"][split][fact.op]
        a, b = (int(x) for x in fact.operands)
        return [f.format(a=a, b=b) for f in forms]
    forms = load("templates")["questions"][fact.category][split]
    return [f.format(key=fact.key, a_key=with_article(fact.key)) for f in forms]


def explicit_question(fact: Fact, split: str) -> str:
    """The plain question used inside "Answer this question: ..." (and as material)."""
    if fact.category == "arithmetic":
        form = load("templates")["arithmetic"]["explicit"][split][fact.op][0]
        a, b = (int(x) for x in fact.operands)
        return form.format(a=a, b=b)
    return question_forms(fact, split)[0]


def stem_forms(fact: Fact, split: str) -> list[str]:
    if fact.category == "science":
        return [fact.stem] if fact.stem else []
    forms = load("templates")["stems"].get(fact.category, {}).get(split, [])
    return [f.format(key=fact.key, Key=fact.key[:1].upper() + fact.key[1:], a_key=with_article(fact.key)) for f in forms]


def with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


# ------------------------------------------------------------------ other banks


@dataclass(frozen=True)
class Topic:
    name: str
    keywords: tuple[str, ...]
    #: Groups that must all match (each an any-of list); default: one group = keywords.
    groups: tuple[tuple[str, ...], ...] = ()
    #: Words the output must not contain (e.g. the answer, for question writing).
    forbidden: tuple[str, ...] = ()

    def keyword_groups(self) -> list[list[str]]:
        return [list(g) for g in self.groups] if self.groups else [list(self.keywords)]


def topics(split: str) -> list[Topic]:
    return [Topic(name=str(k), keywords=tuple(str(w) for w in v)) for k, v in load("topics")[split].items()]


@dataclass(frozen=True)
class Category:
    key: str
    plural: str
    members: tuple[str, ...]

    @property
    def a_key(self) -> str:
        return with_article(self.key)


def categories(split: str) -> list[Category]:
    return [
        Category(key=c["key"], plural=c["plural"], members=tuple(str(m) for m in c["members"]))
        for c in load("categories")[split]
    ]


@dataclass(frozen=True)
class Greeting:
    text: str
    reply: tuple[str, ...]


def greetings(split: str) -> list[Greeting]:
    return [Greeting(text=str(g["text"]), reply=tuple(str(r) for r in g["reply"])) for g in load("greetings")[split]]


def domains(split: str) -> list[Topic]:
    return [
        Topic(name=str(k), keywords=tuple(dict.fromkeys([str(k), *map(str, v)])))
        for k, v in load("domains")[split].items()
    ]


def family_templates(family: str, split: str) -> list[str]:
    """A family's phrasings for ``split``: "train" lists the training phrasings and then the
    validation ones (`validation_templates`), which only the validation split may ask."""
    entry = load("templates")["families"][family]
    extra = entry.get("validation", []) if split == "train" else []
    return list(entry[split]) + list(extra)


#: word overlap (Jaccard, placeholders left out) from which two phrasings count as one reworded;
#: the closest pair written before train phrasings were widened is 0.73
REWORDED_OVERLAP = 0.75
_PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}")


def phrasing_words(template: str) -> set[str]:
    """A phrasing's words, lower-cased, placeholders left out."""
    return set(re.findall(r"[a-z0-9']+", _PLACEHOLDER.sub(" ", template).lower()))


def phrasing_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two phrasings' words (0 when either has none): >= `REWORDED_OVERLAP` is a rewording."""
    wa, wb = phrasing_words(a), phrasing_words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


@lru_cache(maxsize=None)
def validation_templates(family: str) -> frozenset[str]:
    """Phrasings of ``family`` kept for validation cases: never trained on when a stage has a validation split."""
    entry = load("templates")["families"].get(family, {})
    return frozenset(entry.get("validation", []))


def judgement(section: str, split: str | None = None):
    data = load("judgement")[section]
    return data[split] if split else data


# ------------------------------------------------------------------ case spreading


def round_robin(groups: Sequence[Sequence[T]]) -> list[T]:
    out: list[T] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def spread(groups: Sequence[Sequence[T]], n_templates: int, n: int, seed: int) -> list[tuple[T, int]]:
    """Up to ``n`` (item, template index) pairs, deterministic for ``seed``.

    Items are shuffled within each group and groups interleaved; pass ``p`` over
    the items gives item ``i`` template ``(i + p + offset) % n_templates``, so an
    item never repeats a template and consecutive items vary templates.
    """
    rng = random.Random(seed)
    order = round_robin([rng.sample(list(g), len(g)) for g in groups])
    offset = rng.randrange(max(n_templates, 1))
    out: list[tuple[T, int]] = []
    for p in range(n_templates):
        for i, item in enumerate(order):
            if len(out) >= n:
                return out
            out.append((item, (i + p + offset) % n_templates))
    return out

"""Seed topics of the constitutional stage: hand-written red-team categories and ordinary topics.

Each topic has a ``train`` list (prompt writers' seeds and fallbacks), a ``heldout`` list
(the stage's own held-out families, `tasks.constitutional.families`) and a ``dev`` list (the
stage's dev split, for tuning), disjoint by construction. A red-team category also carries its
matched look-alikes (``lookalikes``): harmless requests in the same form and vocabulary, which
`lookalike_topics` turns into harmless topics of their own (``side`` ``look-alike``).
Lives at the ground floor because both the stage kind and the held-out families read it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai_bootstrap.config import PACKAGE_DIR, ConfigError, format_validation_error, load_yaml
from cai_bootstrap.constitution import PromptKind

SEEDS_DIR = PACKAGE_DIR / "data" / "seeds"
SEED_FILES: dict[str, Path] = {"redteam": SEEDS_DIR / "redteam.yaml", "ordinary": SEEDS_DIR / "ordinary_prompts.yaml"}
SEED_LIST_KEY: dict[str, str] = {"redteam": "categories", "ordinary": "topics"}


#: which side of the harm boundary a request is on
Side = Literal["harmful", "look-alike", "ordinary"]
SIDES: tuple[str, ...] = ("harmful", "look-alike", "ordinary")
_SIDE_OF_KIND: dict[str, Side] = {"redteam": "harmful", "ordinary": "ordinary"}

#: default ``avoid`` words of a look-alike topic: a written look-alike that turns on a person
#: or an animal may really be harmful, and must not be trained as one to answer
LOOKALIKE_AVOID: tuple[str, ...] = (
    "someone", "somebody", "person", "people", "him", "her", "he", "she", "neighbour", "neighbor", "wife",
    "husband", "boss", "coworker", "colleague", "ex", "child", "children", "kid", "girlfriend", "boyfriend",
    "teacher", "classmate", "roommate", "myself", "human", "animal", "pet", "dog", "cat",
)


class LookalikeSeeds(BaseModel):
    """A red-team category's matched look-alikes: harmless requests in its form and vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    keywords: list[str] | None = None  # default: the category's
    avoid: list[str] | None = None  # default: LOOKALIKE_AVOID
    train: list[str] = Field(min_length=1)
    heldout: list[str] = Field(default_factory=list)
    dev: list[str] = Field(default_factory=list)


class SeedTopic(BaseModel):
    """A hand-written category of red-team requests, or a topic of ordinary ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: PromptKind
    description: str = Field(min_length=1)
    edgy: bool = False
    keywords: list[str] = Field(default_factory=list)
    avoid: list[str] = Field(default_factory=list)
    train: list[str] = Field(min_length=1)
    heldout: list[str] = Field(default_factory=list)
    dev: list[str] = Field(default_factory=list)
    lookalikes: LookalikeSeeds | None = None
    #: set on a look-alike topic: the red-team category it mirrors
    lookalike_of: str | None = None

    @property
    def side(self) -> Side:
        if self.lookalike_of:
            return "look-alike"
        return _SIDE_OF_KIND[self.kind]


@lru_cache(maxsize=16)
def _load_seed_topics(kind: str, path: str) -> tuple[SeedTopic, ...]:
    raw = load_yaml(path)
    key = SEED_LIST_KEY[kind]
    items = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty list under '{key}'")
    topics = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: '{key}[{i}]': expected a mapping, got {type(item).__name__}")
        try:
            topics.append(SeedTopic.model_validate({**item, "kind": kind}))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(f"{path} '{key}[{i}]'", exc)) from None
    names = [t.name for t in topics]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: '{key}' names must be unique, got {names}")
    return tuple(topics)


def load_seed_topics(kind: PromptKind, path: str | Path | None = None) -> list[SeedTopic]:
    """Seed topics of ``kind`` (``redteam`` or ``ordinary``) from the shipped file or ``path``."""
    return list(_load_seed_topics(kind, str(path or SEED_FILES[kind])))


def lookalike_topics(categories: list[SeedTopic]) -> list[SeedTopic]:
    """The red-team categories' look-alikes as harmless (``ordinary``) topics, one per category
    that has them, named ``<category>-lookalike``, keeping the category's keywords by default."""
    return [
        SeedTopic(
            name=f"{c.name}-lookalike",
            kind="ordinary",
            description=c.lookalikes.description,
            edgy=True,
            keywords=list(c.keywords if c.lookalikes.keywords is None else c.lookalikes.keywords),
            avoid=list(LOOKALIKE_AVOID if c.lookalikes.avoid is None else c.lookalikes.avoid),
            train=list(c.lookalikes.train),
            heldout=list(c.lookalikes.heldout),
            dev=list(c.lookalikes.dev),
            lookalike_of=c.name,
        )
        for c in categories
        if c.lookalikes is not None
    ]


def record_side(record: dict) -> str:
    """The side of a stage record: its ``side``, or (records written before sides existed) its family's."""
    return str(record.get("side") or _SIDE_OF_KIND.get(record.get("family") or "", "ordinary"))

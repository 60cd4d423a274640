"""Seed topics of the constitutional stage: hand-written red-team categories and ordinary topics.

Each topic has a ``train`` list (prompt writers' seeds and fallbacks) and a ``heldout`` list
(the stage's own held-out families, `tasks.constitutional.families`), disjoint by construction.
Lives at the ground floor because both the stage kind and the held-out families read it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai_bootstrap.config import PACKAGE_DIR, ConfigError, format_validation_error, load_yaml
from cai_bootstrap.constitution import PromptKind

SEEDS_DIR = PACKAGE_DIR / "data" / "seeds"
SEED_FILES: dict[str, Path] = {"redteam": SEEDS_DIR / "redteam.yaml", "ordinary": SEEDS_DIR / "ordinary_prompts.yaml"}
SEED_LIST_KEY: dict[str, str] = {"redteam": "categories", "ordinary": "topics"}


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

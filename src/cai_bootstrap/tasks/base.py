"""The task-family contract: the unit of extension.

A family is one kind of instruction. It makes instances from hand-written seed
banks (with known answers where checkable), and it verifies an output with rules
(no model). Held-out instances are static and use topics/templates that training
instances never use, so a stage's score is comparable across models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

Split = Literal["train", "heldout"]


class Instance(BaseModel):
    """One task case. ``instruction`` is what the trained model sees."""

    id: str
    family: str
    split: Split
    instruction: str
    #: For implicit families: the explicit phrasing used to obtain an answer.
    explicit: str | None = None
    topic: str = ""
    #: What the verifier needs (answers, keywords, labels, flawed text, ...).
    reference: dict = Field(default_factory=dict)


class Verdict(BaseModel):
    """A verifier's decision with the check that produced it."""

    passed: bool
    score: float = 0.0
    check: str
    reason: str = ""


class TaskFamily(ABC):
    name: ClassVar[str]
    #: explicit | implicit | generation | evaluation | revision | constitutional | task
    skill: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        """Up to ``n`` instances of ``split``, deterministic for ``seed``."""

    @abstractmethod
    def verify(self, instance: Instance, output: str) -> Verdict:
        """Rule-based check of ``output`` for ``instance`` (never a model)."""

    def few_shot(self) -> list[tuple[str, str]]:
        """Hand-written (instruction, response) demonstrations for base-model prompting."""
        return []

    def like_heldout(self, instance: Instance) -> bool:
        """Whether training ``instance`` is the kind of case the held-out set asks, so that the
        validation split (`stages.validation`) may use it; material composed for training
        only (summarization's frame passages) is not."""
        return True

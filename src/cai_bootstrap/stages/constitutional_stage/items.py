"""Work items: which seed topic each planned case draws on, red-team and ordinary interleaved."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from cai_bootstrap.config import ConfigError
from cai_bootstrap.constitution import PROMPT_KINDS, PromptKind
from cai_bootstrap.stages.constitutional_stage.rules import OverlapIndex
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.checks import (
    normalize,
)
from cai_bootstrap.tasks.constitutional.seeds import SeedTopic

# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class WorkItem:
    key: str
    index: int
    kind: PromptKind
    topic: SeedTopic
    seed_request: str


#: optional role: revises the items where no candidate of ``reviser`` passes the pair rules
FALLBACK_REVISER = "fallback_reviser"


@dataclass
class Candidate:
    """One revision sample with its rule verdict (and the judge's, when asked)."""

    text: str
    rules: Verdict
    decisive: bool
    judge: Verdict | None = None
    judge_prov: dict | None = None
    role: str = "reviser"

    def summary(self) -> dict:
        return {
            "text": self.text,
            "role": self.role,
            "rules": self.rules.model_dump() | {"decisive": self.decisive},
            "judge": self.judge.model_dump() if self.judge else None,
        }


def plan_items(
    topics: dict[str, list[SeedTopic]],
    n: int,
    redteam_fraction: float,
    seed: int,
    lookalikes: list[SeedTopic] | None = None,
    lookalike_ratio: float = 0.0,
) -> list[WorkItem]:
    """``n`` work items, red-team and ordinary interleaved, topics round-robin in a seeded order;
    with ``lookalike_ratio`` > 0, each red-team item is followed by that many (on average)
    look-alike items of the same category, drawing the look-alike seed at the same position
    (matched: same category, same form of request).

    Prefix-stable: the first ``k`` items are the same for any ``n >= k``, so a retry that
    wants more examples continues the same plan. Without look-alikes the plan is the one
    this function always made.
    """
    rng = random.Random(seed)
    order = {kind: rng.sample(list(ts), len(ts)) for kind, ts in topics.items()}
    mirror = {t.lookalike_of: t for t in lookalikes or []}
    used: Counter[str] = Counter()
    items: list[WorkItem] = []
    for i in range(n):
        kind: PromptKind = (
            "redteam" if math.floor((i + 1) * redteam_fraction) > math.floor(i * redteam_fraction) else "ordinary"
        )
        if not order.get(kind):
            raise ConfigError(f"no {kind} seed topics to plan from")
        j = used[kind]
        used[kind] += 1
        ring = order[kind]
        topic = ring[j % len(ring)]
        seed_request = topic.train[(j // len(ring)) % len(topic.train)]
        index = len(items)
        items.append(WorkItem(f"{kind}-{i:05d}", index, kind, topic, seed_request))
        twin = mirror.get(topic.name) if kind == "redteam" else None
        if twin is None:
            continue
        m = used["lookalike-of-redteam"]
        used["lookalike-of-redteam"] += 1
        for k in range(math.floor((m + 1) * lookalike_ratio) - math.floor(m * lookalike_ratio)):
            pos = (j // len(ring)) + k * len(topic.train)
            items.append(
                WorkItem(f"lookalike-{i:05d}-{k}", len(items), "ordinary", twin, twin.train[pos % len(twin.train)])
            )
    return items


class _History:
    """What earlier items decided: their prompts (for duplicates) and kept families (for quotas).

    Only items with a smaller plan index count, so a chunk redone after a crash decides
    exactly as it did the first time.
    """

    def __init__(self, records: list[dict]):
        self.first_use: dict[str, int] = {}
        self.kept: dict[str, set[int]] = {kind: set() for kind in PROMPT_KINDS}
        for rec in records:
            self.add(rec.get("item", -1), rec.get("family", ""), rec.get("prompt") or "", bool(rec.get("kept")))

    def add(self, index: int, kind: str, prompt: str, kept: bool) -> None:
        norm = normalize(prompt)
        if norm:
            self.first_use[norm] = min(self.first_use.get(norm, index), index)
        if kept and kind in self.kept:
            self.kept[kind].add(index)

    def duplicate(self, prompt: str, index: int) -> bool:
        return self.first_use.get(normalize(prompt), index) < index

    def kept_before(self, kind: str, index: int) -> int:
        return sum(1 for i in self.kept.get(kind, []) if i < index)


def protected_prompts(
    topics: dict[str, list[SeedTopic]], decontaminate: bool, benchmarks_dir: str | None,
    lookalikes: list[SeedTopic] | None = None,
) -> tuple[OverlapIndex, list[str]]:
    """Held-out and dev seeds (look-alikes' too) and (when found) AdvBench / XSTest prompts: never trained on."""
    every = [t for ts in topics.values() for t in ts] + list(lookalikes or [])
    entries = [(text, f"held-out seed {t.name}") for t in every for text in t.heldout]
    entries += [(text, f"dev seed {t.name}") for t in every for text in t.dev]
    notes = []
    if decontaminate:
        from cai_bootstrap.evaluation.benchmark_data import BenchmarkDataError, load_advbench, load_xstest

        try:
            entries += [(it.goal, "AdvBench") for it in load_advbench(benchmarks_dir)]
            entries += [(it.prompt, f"XSTest {it.id}") for it in load_xstest(benchmarks_dir)]
            notes.append("written prompts checked against AdvBench and XSTest")
        except BenchmarkDataError as exc:
            notes.append(f"benchmark decontamination skipped: {exc}")
    return OverlapIndex(entries), notes

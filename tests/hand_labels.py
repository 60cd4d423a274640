"""Shared by the hand-label tests: read a fixture, rebuild each row's instance, verify again.

A fixture row holds ``id``, ``family``, ``instruction``, ``output`` and the hand label ``human``;
its instance is rebuilt from the family's bank (seed 0) and must still have the instruction that
was labelled, so a changed bank fails loudly instead of scoring other cases.
"""

from __future__ import annotations

import json
from pathlib import Path

from cai_bootstrap.tasks import get_family
from cai_bootstrap.tasks.base import Split

FIXTURES = Path(__file__).parent / "fixtures"


def read_labels(name: str) -> list[dict]:
    """The rows of ``fixtures/<name>``."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reverify(rows: list[dict], split: Split = "heldout", per_family: int = 20) -> list[tuple[dict, bool]]:
    """Each row with today's verdict on its output. An id's ``#...`` suffix (a candidate number)
    is not part of the instance id."""
    instances = {}
    for family in {r["family"] for r in rows}:
        for inst in get_family(family).instances(split, per_family, 0):
            instances[inst.id] = inst
    out = []
    for row in rows:
        inst = instances[row["id"].split("#")[0]]
        assert inst.instruction == row["instruction"], row["id"]
        out.append((row, get_family(row["family"]).verify(inst, row["output"]).passed))
    return out


def confusion(rows: list[dict]) -> tuple[int, int, int, int]:
    """(true pos, true neg, false pos, false neg) of ``verifier_then`` against the hand label ``human``."""
    pairs = [(r["human"], r["verifier_then"]) for r in rows]
    return tuple(pairs.count(cell) for cell in ((True, True), (False, False), (False, True), (True, False)))

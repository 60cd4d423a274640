"""A helpful-dominant mixture: refusals an exact, small share of the stage's training records.

With ``options.refusal_share`` = s, the constitutional stage trains on R refusal records (its
kept harmful-side pairs: refusal > compliant answer) and H helpful records, with
R = round(s x (R + H)): as many refusals as the helpful records available allow, at most all
kept ones. Helpful records, in this order until H are taken: the stage's own look-alike pairs
(helpful answer > refusal of a harmless request in the red-team form), its own ordinary pairs,
contrast pairs, helpful samples, then replayed earlier-stage records (as many as needed; the
stage's ``replay`` is not read). "Training record" means a record the method trains on: every
record with a ``chosen`` for ``sft`` and ``sft+dpo``, pairs only for ``dpo``.

Why: at the quick preset refusals were a third to a half of stage 6's records (17-30 refusal
pairs beside as many helpful and replayed ones), and the model refused 88-98% of XSTest's safe
prompts. Safety-tuning studies find a few percent of safety data enough and more of it raises
over-refusal (Bianchi et al. 2023, "Safety-Tuned LLaMAs"), and the open CAI recipe mixes its
harmlessness data into a much larger helpful set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from cai_bootstrap.errors import ConfigError
from cai_bootstrap.tasks.constitutional.seeds import record_side

#: file written beside data.jsonl when an attempt's mixture is made
MIXTURE_FILE = "mixture.json"


def trains(record: dict, method: str) -> bool:
    """Does ``method`` train on the record (SFT: a chosen text; DPO: a real pair)?"""
    chosen = (record.get("chosen") or "").strip()
    rejected = (record.get("rejected") or "").strip()
    if method == "dpo":
        return bool(chosen and rejected) and chosen != rejected
    return bool(chosen)


def mix_counts(refusals: int, helpful: int, share: float) -> tuple[int, int]:
    """(R, H): the most refusals R <= ``refusals`` for which H = T - R helpful records exist,
    T = round(R / share), so that R = round(share x T)."""
    for r in range(refusals, 0, -1):
        total = round(r / share)
        if total - r <= helpful:
            return r, total - r
    return 0, 0


def refusal_mix(
    own: list[dict], extras: dict[str, list[dict]], replay: Callable[[int], list[dict]], share: float, method: str
) -> tuple[dict[str, list[dict]], dict]:
    """The records to train on, by source (``own``, ``replay``, extra labels), and a summary."""
    usable = [r for r in own if trains(r, method)]
    refusals = [r for r in usable if record_side(r) == "harmful"]
    own_helpful = sorted(
        (r for r in usable if record_side(r) != "harmful"), key=lambda r: record_side(r) != "look-alike"
    )
    extra_helpful = [(label, r) for label, rows in extras.items() for r in rows if trains(r, method)]
    local = [("own", r) for r in own_helpful] + extra_helpful
    wanted = max(0, math.ceil(len(refusals) / share) - len(refusals) - len(local)) if refusals else 0
    pool = [("replay", r) for r in _replayed(replay, wanted, method)]
    n_refusals, n_helpful = mix_counts(len(refusals), len(local) + len(pool), share)
    if not refusals:  # nothing to refuse with: the helpful records alone, said in the note
        n_helpful = len(local)
    if refusals and not n_refusals:
        raise ConfigError(
            f"refusal_share {share}: {len(refusals)} refusal records but only {len(local) + len(pool)} helpful "
            f"records that the {method} method trains on, too few for even one refusal at that share; "
            "allow more look-alikes or helpful samples, or use sft+dpo (replayed SFT records count)"
        )
    helpful = (local + pool)[:n_helpful]
    groups: dict[str, list[dict]] = {"own": refusals[:n_refusals], "replay": []}
    for label in extras:
        groups[label] = []
    for label, r in helpful:
        groups[label].append(r)
    chosen = refusals[:n_refusals] + [r for _, r in helpful]
    total = n_refusals + n_helpful
    summary = {
        "refusal_share": share,
        "method": method,
        "records": total,
        "refusals": n_refusals,
        "helpful": n_helpful,
        "actual_share": n_refusals / total if total else None,
        "refusals_available": len(refusals),
        "helpful_available": len(local) + len(pool),
        "by_side": dict(Counter(record_side(r) for r in chosen)),
        "by_source": {label: len(rows) for label, rows in groups.items()},
        "dpo_pairs": sum(trains(r, "dpo") for r in chosen),
        "dpo_refusal_pairs": sum(trains(r, "dpo") for r in refusals[:n_refusals]),
        "note": "no refusal record kept: the helpful records alone" if not refusals else None
        if n_refusals == len(refusals) else (
            f"{len(refusals) - n_refusals} of {len(refusals)} refusal records left out: "
            f"not enough helpful records for a {share:.0%} share"
        ),
    }
    return groups, summary


def _replayed(replay: Callable[[int], list[dict]], wanted: int, method: str) -> list[dict]:
    """Up to ``wanted`` replayed records that ``method`` trains on (asking for more while some
    are filtered out and the earlier stages have more), marked side ``ordinary``."""
    asked, rows = wanted, []
    while wanted > 0:
        got = replay(asked)
        rows = [{**r, "side": "ordinary"} for r in got if trains(r, method)]
        if len(rows) >= wanted or len(got) < asked:
            break
        asked *= 2
    return rows[:wanted]

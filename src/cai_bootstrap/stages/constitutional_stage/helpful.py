"""SL-CAI's helpful samples: the answerer's own passing answers to ordinary prompts, as SFT-only records."""

from __future__ import annotations

import random

from cai_bootstrap.stages.constitutional_stage.contrast import contrast_pool


def helpful_samples(records: list[dict], n: int, seed: int) -> list[dict]:
    """Up to ``n`` SFT-only records (no ``rejected``, so DPO skips them): the stage's ordinary
    prompts whose pair was not kept, with the answerer's original answer as the target,
    where that answer passes `helpful_answer_rules`; seeded order, marked ``helpful_sample_of``.

    Why: SL-CAI finetunes on the revisions *and* on helpful samples for harmless prompts so
    that the model keeps answering them (Bai et al. 2022, section 3). Measured at the quick
    preset: SFT on the kept pairs, which are all refusals, made the model refuse about half of
    XSTest's safe prompts, and 94% once templated stage 1-5 records were replayed beside them.
    """
    if n <= 0:
        return []
    pool = contrast_pool(records)
    random.Random(f"{seed}:helpful_samples").shuffle(pool)
    return [
        {
            "key": f"{r['key']}:helpful",
            "prompt": r["prompt"],
            "chosen": r["rejected"],
            "family": "ordinary",
            "side": "ordinary",
            "helpful_sample_of": r["key"],
            "provenance": {"chosen": (r.get("provenance") or {}).get("rejected")},
        }
        for r in pool[:n]
    ]


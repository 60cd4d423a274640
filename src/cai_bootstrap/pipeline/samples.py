"""``samples.md`` of a stage: a few kept and dropped candidates and held-out outputs, to read by eye."""

from __future__ import annotations

import random

from cai_bootstrap.config import StageSpec
from cai_bootstrap.jsonl import atomic_write_text, iter_jsonl
from cai_bootstrap.runs.layout import StagePaths


def write_samples(paths: StagePaths, spec: StageSpec, attempt: int, k: int = 5) -> None:
    records = list(iter_jsonl(paths.data))
    rng = random.Random(0)
    kept = [r for r in records if r.get("kept")]
    dropped = [r for r in records if not r.get("kept")]
    lines = [f"# {spec.name} ({spec.kind}) samples", "", spec.description, "", "## Kept training records", ""]
    for r in rng.sample(kept, min(k, len(kept))):
        lines += _sample_block(r)
    lines += ["## Dropped candidates", ""]
    for r in rng.sample(dropped, min(k, len(dropped))):
        lines += _sample_block(r)
    rows_file = paths.eval / f"heldout-{spec.name}-a{attempt}.jsonl"
    rows = list(iter_jsonl(rows_file))
    lines += ["## Held-out outputs of the stage model", ""]
    for row in rows[: 2 * k]:
        mark = "PASS" if row.get("passed") else "FAIL"
        lines += [f"- **{mark}** `{row.get('family')}` — {row.get('prompt')!r} → {row.get('output')!r} ({row.get('reason', '')})"]
    atomic_write_text(paths.samples, "\n".join(lines) + "\n")


def _sample_block(r: dict) -> list[str]:
    prov = r.get("provenance", {})
    who = ", ".join(f"{k}: {v.get('by')}" for k, v in prov.items() if isinstance(v, dict))
    out = [f"- `{r.get('family')}` ({who})", f"  - prompt: {r.get('prompt')!r}", f"  - chosen: {r.get('chosen')!r}"]
    if r.get("rejected"):
        out.append(f"  - rejected: {r.get('rejected')!r}")
    if not r.get("kept"):
        out.append(f"  - dropped: {r.get('drop_reason')}")
    return out + [""]

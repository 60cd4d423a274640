"""Does the base model know what an explanation subject needs? The pipeline's explanation probe on
every held-out subject and the first training subjects, and how a stage model's held-out
explanations fare on subjects the base model knows and does not know.

    python benchmarks/explanation_knowledge.py gemma-3-270m [runs/tasks-std15/stage-1/eval/heldout-stage-1-a0.jsonl ...]

The probe is `evaluation.knowledge.probe_facts` on explanation cases: three hand-written
explanations in plain prose, then "Explanation of {subject}:", sampled 8 times at temperature 0.8
(64 new tokens, up to the blank line). A subject is *known* when a sample names a word of every
key-term group (the verifier's ``key_terms`` check alone: no instruction is followed here) and
*majority-known* when half of them do. Every probe is cached in
``runs/diag/explanation_knowledge.jsonl`` (the format of a run's ``knowledge/base.jsonl``). Held-out
rows of the files given (``id``, ``passed``) are then split by the subject's probe.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.evaluation.knowledge import fact_of, probe_facts
from cai_bootstrap.tasks.catalog import get_family

TRAIN_SUBJECTS = 15
CACHE = Path("runs/diag/explanation_knowledge.jsonl")


def main() -> None:
    model, heldout_files = sys.argv[1], sys.argv[2:]
    family = get_family("explanation")
    heldout = family.instances("heldout", len(family.items("heldout")) * len(family.templates("heldout")), 0)
    # the first training subjects a stage plans (seed 0), two instances a subject drawn to find them
    train = list({fact_of(i).id: i for i in family.instances("train", 2 * TRAIN_SUBJECTS, 0)}.values())
    train = train[:TRAIN_SUBJECTS]
    probes = probe_facts(TransformersEngine.from_ref(model), heldout + train, CACHE, seed=0, progress=True)
    for split, instances in (("heldout", heldout), ("train", train)):
        subjects = [probes[fid] for fid in dict.fromkeys(fact_of(i).id for i in instances)]
        print(f"{split}: {len(subjects)} subjects; known (any sample) {sum(p.known for p in subjects)}, "
              f"majority-known {sum(p.knows('majority') for p in subjects)}; "
              f"hits per subject {sorted(p.hits for p in subjects)}")
    fact_by_id = {i.id: fact_of(i).id for i in heldout}
    for path in heldout_files:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        groups: dict[str, list[bool]] = defaultdict(list)
        for row in rows:
            if row["id"] in fact_by_id:
                probe = probes[fact_by_id[row["id"]]]
                kind = "majority-known" if probe.knows("majority") else "known" if probe.known else "unknown"
                groups[kind].append(row["passed"])
        print(path, {g: f"{sum(v)}/{len(v)}" for g, v in sorted(groups.items())})


if __name__ == "__main__":
    main()

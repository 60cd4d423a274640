"""Does the base model know what an explanation subject needs? A completion-mode probe, and how a
stage model's held-out explanations fare on subjects the base model knows and does not know.

    python benchmarks/explanation_knowledge.py gemma-3-270m [runs/tasks-std15/stage-1/eval/heldout-stage-1-a0.jsonl ...]

`evaluation.knowledge` probes a *fact* with a cloze ("The capital of Ireland is"); an explanation
needs several ideas at once (the ocean is salty: salt, rivers or rocks, evaporation), so here the
base model continues plain prose instead: three hand-written explanations ("Explanation of why
ice floats on water: ..."), then "Explanation of {subject}:", sampled 8 times at temperature 0.8
(64 new tokens, up to the blank line). A subject is *known* when a sample names a word of every
key-term group (the verifier's ``key_terms`` check alone: no instruction is followed here) and
*majority-known* when half of them do. The held-out subjects and the first 15 training subjects a stage
plans are probed; every sample goes to ``runs/diag/explanation_knowledge.jsonl``. Held-out rows of
the files given (``id``, ``passed``) are then split by the subject's probe.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.catalog import get_family

#: hand-written for this probe, on subjects no bank asks (the bank's own demos, reworded)
DEMOS = (
    ("why ice floats on water", ("Ice floats because it is less dense than liquid water. When water freezes, its "
     "molecules lock into an open pattern that takes up more space, so ice weighs less than the same volume of water.")),
    ("what a fossil is", ("A fossil is the preserved remains or trace of a plant or animal that lived long ago. Over "
     "millions of years, minerals replace the bones or shells buried in mud and turn them into rock.")),
    ("how a bicycle stays upright", ("A moving bicycle stays upright mostly because the rider steers. When the bike "
     "leans, the rider turns the front wheel toward the lean, which brings the wheels back under the rider.")),
)
SAMPLES = 8
TRAIN_SUBJECTS = 15


def prompt(subject: str) -> str:
    return "".join(f"Explanation of {s}: {t}\n\n" for s, t in DEMOS) + f"Explanation of {subject}:"


def main() -> None:
    model, heldout_files = sys.argv[1], sys.argv[2:]
    family = get_family("explanation")
    heldout = family.instances("heldout", len(family.items("heldout")) * len(family.templates("heldout")), 0)
    subject_of = {i.id: i.reference["subject"] for i in heldout}
    # subject -> (split, key-term groups): every held-out subject, then the first training subjects a
    # stage plans (seed 0), two instances a subject drawn to find them
    subjects = {i.reference["subject"]: ("heldout", i.reference["terms"]) for i in heldout}
    train = {i.reference["subject"]: ("train", i.reference["terms"])
             for i in family.instances("train", 2 * TRAIN_SUBJECTS, 0)}
    subjects |= dict(list(train.items())[:TRAIN_SUBJECTS])
    engine = TransformersEngine.from_ref(model)
    params = SamplingParams(max_new_tokens=64, temperature=0.8, top_k=40, n=SAMPLES, seed=0, stop=["\n\n"])
    names = list(subjects)
    outputs = engine.generate([prompt(s) for s in names], params, progress=True, desc="explanation probe")
    hits: dict[str, int] = {}
    out_path = Path("runs/diag/explanation_knowledge.jsonl")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        for subject, samples in zip(names, outputs):
            split, terms = subjects[subject]
            ok = [checks.check_groups(text, terms, "key_terms").ok for text in samples]
            hits[subject] = sum(ok)
            out.write(json.dumps({"subject": subject, "split": split, "hits": sum(ok), "k": len(samples),
                                  "samples": samples}) + "\n")
    for split in ("heldout", "train"):
        got = [hits[s] for s in names if subjects[s][0] == split]
        print(f"{split}: {len(got)} subjects; known (any of {SAMPLES}) {sum(h > 0 for h in got)}, "
              f"majority-known {sum(2 * h >= SAMPLES for h in got)}; hits per subject {sorted(got)}")
    for path in heldout_files:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        groups: dict[str, list[bool]] = defaultdict(list)
        for row in rows:
            if row["id"] in subject_of:
                h = hits[subject_of[row["id"]]]
                groups["majority-known" if 2 * h >= SAMPLES else "known" if h else "unknown"].append(row["passed"])
        print(path, {g: f"{sum(v)}/{len(v)}" for g, v in sorted(groups.items())})


if __name__ == "__main__":
    main()

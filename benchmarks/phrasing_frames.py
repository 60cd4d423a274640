"""New instruction phrasings ("frames") written by a model, for the phrasing study of issue 19.

    python benchmarks/phrasing_frames.py --families answer_question,name_one,... --out runs/fit/frames.json

Why: a stage's held-out cases use phrasings no training instance uses, and that is where the
stage models fail most ("Mention a job." -> "A job is a job."; docs/results.md). The hand-written
training phrasings are 7-12 a family. Here a model (default: the embedded base, few-shot)
writes more: it continues a list of a family's *training* phrasings, and a rule keeps a written
phrasing only if it has exactly the family's placeholders, is 3-16 words on one line, is new,
and is not a rewording of any validation or held-out phrasing of any family (`bank.phrasing_overlap`,
the rule tests/test_templates.py holds the hand-written phrasings to): the model never sees those, and nothing it writes that comes
close to them is kept, so the held-out test stays a test of unseen phrasings.
`benchmarks/training_fit.py --reframe` then re-asks a share of a stage's records in them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.factory import make_engine
from cai_bootstrap.engines.settings import EngineSettings
from cai_bootstrap.models.registry import DEFAULT_MODEL
from cai_bootstrap.tasks import bank

PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
HEADER = "Different ways to ask for the same thing (the part in braces is filled in later):\n"


def protected_phrasings() -> list[str]:
    """Every validation and held-out phrasing of every family and question category."""
    templates = bank.load("templates")
    out = [t for entry in templates["families"].values() for split in ("validation", "heldout") for t in entry.get(split, [])]
    out += [t for entry in templates["questions"].values() for split in ("validation", "heldout") for t in entry.get(split, [])]
    return out


def keep_frame(text: str, allowed: set[str], known: set[str], protected: list[str]) -> str | None:
    """The cleaned phrasing if the rules keep it, else None."""
    frame = text.strip().splitlines()[0].strip() if text.strip() else ""
    frame = re.sub(r"^[-*\d.)\s]+", "", frame).strip()
    names = PLACEHOLDER.findall(frame)
    if not names or not set(names) <= allowed or len(names) != len(set(names)):
        return None
    rest = PLACEHOLDER.sub("", frame)
    if "{" in rest or "}" in rest:
        return None
    if not 3 <= len(frame.split()) <= 16 or frame[-1] not in ".?:!":
        return None
    if frame.lower() in known or any(bank.phrasing_overlap(frame, p) >= bank.REWORDED_OVERLAP for p in protected):
        return None
    return frame


def write_frames(engine, family: str, train: list[str], per_family: int, prompts: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{family}")
    allowed = {n for t in train for n in PLACEHOLDER.findall(t)}
    entry = bank.load("templates")["families"][family]
    known = {t.lower() for split in ("train", "validation", "heldout") for t in entry.get(split, [])}
    protected = protected_phrasings()
    texts = []
    for _ in range(prompts):
        shown = rng.sample(train, min(5, len(train)))
        texts.append(HEADER + "".join(f"- {t}\n" for t in shown) + "-")
    params = SamplingParams(max_new_tokens=28, temperature=1.0, top_p=0.95, n=4, stop=["\n"], seed=seed)
    kept: list[str] = []
    for samples in engine.generate(texts, params, desc=f"frames {family}"):
        for s in samples:
            frame = keep_frame(s, allowed, known, protected)
            if frame:
                kept.append(frame)
                known.add(frame.lower())  # each written phrasing once
    return kept[:per_family]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", required=True, help="comma-separated family names")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the writer (default: the embedded base)")
    ap.add_argument("--per-family", type=int, default=12)
    ap.add_argument("--prompts", type=int, default=24, help="few-shot prompts a family (4 samples each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    engine = make_engine(args.model, EngineSettings())
    frames = {}
    for family in args.families.split(","):
        train = bank.load("templates")["families"][family]["train"]
        frames[family] = write_frames(engine, family, train, args.per_family, args.prompts, args.seed)
        print(family, len(frames[family]), frames[family], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"writer": args.model, "seed": args.seed, "frames": frames}, indent=1) + "\n")


if __name__ == "__main__":
    main()

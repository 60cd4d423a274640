"""How the answerer's demonstrations' form changes what the base model gets right (factual QA).

    python benchmarks/answer_format.py runs/tasks-std11 --cases 60

The base model answers, greedily and 2-shot as stage 0's answerer prompts it, the training
questions that the run's stage 0 first tried (facts the base model knows, by the run's probe),
once with full-sentence demonstrations ("A spider has eight legs.") and once with the answer
alone ("Eight."), each scored by the factual_qa verifier. Training questions only: the held-out
set plays no part. Measured 2026-12-07 on runs/tasks-std11 (60 cases): 45.0% with sentences,
68.3% with the answer first; so the seed bank's demos name the answer first.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.evaluation.intervals import wilson
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.prompt_format import format_few_shot
from cai_bootstrap.stages.context import derive_seed
from cai_bootstrap.stages.training_facts import ALL_INSTANCES
from cai_bootstrap.tasks import get_family

#: the seed bank's demos as full sentences (before 2026-12-07), in the bank's order of its demo questions
SENTENCES = ["The Indian Ocean lies between Africa and Australia.", "A spider has eight legs.",
             "Leonardo da Vinci painted the Mona Lisa.", "Plants release oxygen during photosynthesis."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run whose stage-0 data.jsonl lists the training questions tried")
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--model", default="gemma-3-270m")
    args = ap.parse_args()
    fam = get_family("factual_qa")
    keys = sorted({r["key"] for r in iter_jsonl(args.run / "stage-0" / "data.jsonl") if str(r.get("attempt")) == "0"})
    by_id = {i.id: i for i in fam.instances("train", ALL_INSTANCES, 0)}
    cases = [by_id[k] for k in keys if k in by_id][: args.cases]
    shipped = fam.few_shot()
    forms = {"sentence": [(q, s) for (q, _), s in zip(shipped, SENTENCES, strict=True)], "answer first": shipped}
    engine = TransformersEngine.from_ref(args.model)
    greedy = SamplingParams(max_new_tokens=fam.max_new_tokens, temperature=0.0, seed=0)
    for name, demos in forms.items():
        prompts = [format_few_shot(i.instruction, random.Random(derive_seed("shots", i.id)).sample(demos, 2))
                   for i in cases]
        outs = engine.generate(prompts, greedy, progress=False)
        right = sum(fam.verify(i, o[0]).passed for i, o in zip(cases, outs))
        low, high = wilson(right, len(cases))
        print(f"{name}: {right}/{len(cases)} = {right / len(cases):.1%} [{low:.0%}, {high:.0%}]", flush=True)


if __name__ == "__main__":
    main()

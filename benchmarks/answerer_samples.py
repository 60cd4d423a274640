"""Sample a model as the stage-2 answerer on training instances of some task types, and verify.

    python benchmarks/answerer_samples.py gemma-3-270m analysis,comparison,math_problems 10
    python benchmarks/answerer_samples.py runs/tasks-std12:stage-0 code_generation,translation 10 2

Each family's first N training instances (seed 0) are prompted few-shot with 2 of the family's
demos (chosen by ``random.Random(instance id)``), as a `task` stage prompts a model for a family
it was not trained on; 4 samples each (or the fourth argument) at temperature 0.8, top-k 40, the
family's token cap. Every sample and its verdict goes to ``runs/diag/stage2_<families>.jsonl`` and the verdict counts per
family are printed. This made the outputs of ``tests/fixtures/hand_labels_tasks_stage2.jsonl``.
"""

from __future__ import annotations

import collections
import json
import random
import sys
from pathlib import Path

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.prompt_format import format_few_shot
from cai_bootstrap.tasks.catalog import get_family


def main() -> None:
    model, families = sys.argv[1], sys.argv[2].split(",")
    per_family = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    n_samples = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    engine = TransformersEngine.from_ref(model)
    out_path = Path("runs/diag") / f"stage2_{'_'.join(families)}.jsonl"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        for name in families:
            family = get_family(name)
            instances = family.instances("train", per_family, 0)
            demos = family.few_shot()
            prompts = [format_few_shot(i.instruction, random.Random(i.id).sample(demos, min(2, len(demos))))
                       for i in instances]
            params = SamplingParams(max_new_tokens=getattr(family, "max_new_tokens", 128), temperature=0.8, top_k=40,
                                    n=n_samples, seed=1)
            counts: collections.Counter = collections.Counter()
            for inst, samples in zip(instances, engine.generate(prompts, params, progress=False)):
                for text in samples:
                    verdict = family.verify(inst, text)
                    counts["PASS" if verdict.passed else verdict.check] += 1
                    out.write(json.dumps({"model": model, "family": name, "id": inst.id, "instruction": inst.instruction, "output": text,
                                          "passed": verdict.passed, "check": verdict.check,
                                          "reason": verdict.reason}) + "\n")
            print(name, dict(counts), flush=True)


if __name__ == "__main__":
    main()

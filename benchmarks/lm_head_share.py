"""The LM head's share of an SFT step: LoRA against full fine-tuning, on a stage's real records.

    python benchmarks/lm_head_share.py runs/skills-std4/stage-1/train.jsonl --steps 12 --repeats 2

Trains the embedded model on the first ``steps x batch`` records of a stage's ``train.jsonl``
(the rows the installed model trained on) with `train_stage`, once per variant and repeat,
alternating, and times the calls into `training.lm_head.TokenChunkedLogProbs` (the LM head's
forward and backward on completion positions: the logits GEMM, the softmax, the input
gradient; the head is tied to the frozen embedding in both variants, so it has no weight
gradient). Share = those seconds / the training seconds `train_stage` reports. Why a wrapper
and not torch.profiler: the profiler's overhead on thousands of small CPU ops distorts the
shares it measures. Prints one JSON object per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.models.loading import load_model
from cai_bootstrap.training import train_stage
from cai_bootstrap.training.lm_head import TokenChunkedLogProbs
from cai_bootstrap.training.settings import TrainSettings

VARIANTS = {
    "lora-r16": {"finetune": "lora", "learning_rate": 2e-4},
    "full": {"finetune": "full", "learning_rate": 5e-5},
}


class HeadTimer:
    """Wall seconds spent inside the LM head's autograd function (forward and backward)."""

    def __init__(self):
        self.seconds = {"forward": 0.0, "backward": 0.0}
        self._original = {name: getattr(TokenChunkedLogProbs, name) for name in self.seconds}

    def _timed(self, name: str):
        original, seconds = self._original[name], self.seconds

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - t0

        return staticmethod(timed)

    def __enter__(self):
        for name in self.seconds:
            setattr(TokenChunkedLogProbs, name, self._timed(name))
        return self

    def __exit__(self, *exc):
        for name, original in self._original.items():
            setattr(TokenChunkedLogProbs, name, staticmethod(original))


def records_from(train_jsonl: Path, n: int) -> list[dict]:
    rows = []
    for row in iter_jsonl(train_jsonl):
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in row["messages"] if m["role"] == "assistant")
        rows.append({"prompt": user, "chosen": answer})
        if len(rows) == n:
            break
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train_jsonl", type=Path)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    records = records_from(args.train_jsonl, args.steps * args.batch_size)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="lm-head-share-") as tmp:
        for r in range(args.repeats):
            for name, overrides in VARIANTS.items():
                loaded = load_model(args.model)
                settings = TrainSettings(method="sft", batch_size=args.batch_size, max_steps=args.steps, epochs=100,
                                         save_checkpoints=False, **overrides)
                with HeadTimer() as timer:
                    result = train_stage(loaded.model, loaded.tokenizer, records, settings,
                                         Path(tmp) / f"{name}-{r}", progress=False)
                row = {"variant": name, "repeat": r, "train_s": result.train_seconds, "tokens": result.train_tokens,
                       "head_forward_s": timer.seconds["forward"], "head_backward_s": timer.seconds["backward"],
                       "head_share": sum(timer.seconds.values()) / result.train_seconds}
                results[name].append(row)
                print(json.dumps(row), flush=True)
                del loaded
    summary = {name: {"median_head_share": statistics.median(r["head_share"] for r in rows),
                      "median_tokens_per_s": statistics.median(r["tokens"] / r["train_s"] for r in rows)}
               for name, rows in results.items()}
    print(json.dumps({"records": len(records), "steps": args.steps, "threads": torch.get_num_threads(),
                      "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

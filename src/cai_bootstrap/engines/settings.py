"""EngineSettings: which backend generates text, and how (the ``engine:`` block of a run's settings).

Beside the engines rather than in `config`, so that `engines.factory` reads its own settings
without importing the layer above it; `config` re-exports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="sequences per decoding batch (a prompt's n samples count n); on "
        "the 2-core CPU 128 gave 1.24x the tokens/s of 64 (bigger GEMMs for the 262k-row LM head at every step)")
    dtype: str = "auto"
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)

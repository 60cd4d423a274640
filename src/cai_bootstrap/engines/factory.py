"""Pick and build the engine a run's ``engine:`` settings ask for.

============  ================================================================
backend       what ``make_engine(model_ref, settings)`` builds
============  ================================================================
transformers  `TransformersEngine` (``batch_size``, ``dtype``); CPU or one GPU
openai        `OpenAIEngine` against ``base_url`` with model id ``model_ref``;
              ``batch_size`` prompts per request, ``concurrency`` requests at
              once, ``timeout_s``, ``max_retries``; API key from ``api_key`` or
              ``$OPENAI_API_KEY``
vllm          `VLLMEngine` (``dtype``); needs ``pip install 'cai-bootstrap[gpu]'``
============  ================================================================

With ``openai`` the server must know ``model_ref`` as a model id: ``cai-bootstrap
serve --model M`` serves ``M`` under that name; for vLLM start it with
``--served-model-name M`` (or ``--lora-modules M=<adapter dir>`` for a stage adapter).
"""

from __future__ import annotations

import os
from pathlib import Path

from cai_bootstrap.engines.base import Engine
from cai_bootstrap.engines.settings import EngineSettings
from cai_bootstrap.errors import ConfigError


def make_engine(model_ref: str, settings: EngineSettings) -> Engine:
    """Build the engine for ``model_ref`` (backends are imported only when chosen)."""
    if settings.backend == "transformers":
        from cai_bootstrap.engines.transformers_engine import TransformersEngine

        return with_refusal_calibration(
            TransformersEngine.from_ref(model_ref, dtype=settings.dtype, batch_size=settings.batch_size), model_ref
        )
    if settings.backend == "openai":
        from cai_bootstrap.engines.openai_engine import OpenAIEngine

        if not settings.base_url:
            raise ConfigError(
                "engine.backend=openai needs engine.base_url, e.g. http://127.0.0.1:8000/v1 "
                f"(start a server with: cai-bootstrap serve --model {model_ref})"
            )
        return OpenAIEngine(
            base_url=settings.base_url,
            model=model_ref,
            api_key=settings.api_key or os.environ.get("OPENAI_API_KEY"),
            concurrency=settings.concurrency,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
            prompts_per_request=settings.batch_size,
        )
    if settings.backend == "vllm":
        from cai_bootstrap.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_ref, dtype=settings.dtype)
    raise ConfigError(f"unknown engine backend {settings.backend!r}; use transformers, openai or vllm")


def with_refusal_calibration(engine: Engine, model_ref: str) -> Engine:
    """``engine`` wrapped in `CalibratedEngine` when the model's adapter carries a refusal
    calibration (a constitutional stage's model), else ``engine`` itself."""
    from cai_bootstrap.engines.refusal_calibration import CalibratedEngine, RefusalCalibration

    adapter = Path(model_ref) / "adapter"
    calibration = RefusalCalibration.load(adapter) if adapter.is_dir() else None
    return CalibratedEngine(engine, calibration) if calibration is not None else engine

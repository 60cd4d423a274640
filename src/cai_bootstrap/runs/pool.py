"""Keep role models loaded across roles and stages instead of reloading them."""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.config import EngineSettings
from cai_bootstrap.engines.base import Engine


def make_engine(ref: str, settings: EngineSettings) -> Engine:
    try:
        from cai_bootstrap.engines.factory import make_engine as factory
    except ImportError:  # factory not present: transformers only
        factory = None
    if factory is not None:
        return factory(ref, settings)
    from cai_bootstrap.engines.transformers_engine import TransformersEngine

    return TransformersEngine.from_ref(ref, dtype=settings.dtype, batch_size=settings.batch_size)


class ModelPool:
    """Engines by model name ("base" or a stage name), loaded once."""

    def __init__(self, run_dir: Path, base_ref: str, settings: EngineSettings, judge_ref: str | None = None):
        self.run_dir = run_dir
        self.base_ref = base_ref
        self.judge_ref = judge_ref
        self.settings = settings
        self._engines: dict[str, Engine] = {}

    def ref(self, name: str) -> str:
        if name == "base":
            return self.base_ref
        if name == "judge":
            return self.judge_ref or self.base_ref
        return str(self.run_dir / name / "model")

    def get(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = make_engine(self.ref(name), self.settings)
        return self._engines[name]

    def drop(self, name: str) -> None:
        engine = self._engines.pop(name, None)
        if engine is not None:
            engine.close()

    def generated_tokens(self) -> int:
        return sum(getattr(e, "generated_tokens", 0) for e in self._engines.values())

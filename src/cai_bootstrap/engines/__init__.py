"""Text generation engines: one interface, several backends.

`get_engine(kind, model_ref, ...)` returns an `Engine`. Backends import their heavy
dependencies lazily so a CPU install never needs vLLM or an HTTP server.
"""

from cai_bootstrap.engines.base import Engine, SamplingParams

__all__ = ["Engine", "SamplingParams"]

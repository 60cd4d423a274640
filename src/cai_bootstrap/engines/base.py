"""The engine contract every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict, Field

#: Sequences per decoding batch (a prompt's n samples count n). Measured on the 2-core
#: CPU with Gemma 3 270M (2026-12-04): 128 gave 1.24x the tokens/s of 64 on few-shot
#: prompts of 160 tokens, 1.09x on prompts of 1,000 tokens (peak RSS 4.8 GiB); 256
#: added 10% on the short prompts and nothing on the long ones.
DEFAULT_BATCH_SIZE = 128


class SamplingParams(BaseModel):
    """How to sample. ``temperature == 0`` means greedy decoding."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    n: int = Field(1, ge=1, description="samples per prompt")
    stop: list[str] = Field(default_factory=list, description="extra stop strings")
    seed: int = 0
    repetition_penalty: float = Field(1.0, gt=0.0)
    #: Generate at least this many tokens (EOS and stop strings ignored until then); for benchmarks.
    min_new_tokens: int = Field(0, ge=0)
    #: Texts the answer may not start with (refusal calibration); only engines with
    #: ``supports_banned_starts`` honour it.
    banned_starts: list[str] = Field(default_factory=list)


class GenerationCancelled(RuntimeError):
    """``generate`` stopped because its caller set the ``cancel`` event (a client went away)."""


class Engine(ABC):
    """Generates text for a batch of prompts (already formatted)."""

    name: str = "engine"
    #: whether ``generate`` honours `SamplingParams.banned_starts`
    supports_banned_starts: bool = False

    @abstractmethod
    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool = True, desc: str = "generate"
    ) -> list[list[str]]:
        """Return ``params.n`` cleaned completions per prompt (stop strings removed)."""

    def choose(self, prompts: list[str], options: list[list[str]]) -> list[int]:
        """Index of the most likely option continuation for each prompt (for judges).

        Default: greedy-generate and match the first option the output starts with.
        Backends that expose log-probabilities override this.
        """
        outs = self.generate(prompts, SamplingParams(max_new_tokens=8), progress=False)
        picks = []
        for (out,), opts in zip(outs, options):
            low = out.strip().lower()
            pick = next((i for i, o in enumerate(opts) if low.startswith(o.strip().lower())), 0)
            picks.append(pick)
        return picks

    def close(self) -> None:  # pragma: no cover - backends with resources override
        """Release resources (servers, GPU memory)."""

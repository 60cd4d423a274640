"""What `cai-bootstrap bench` measures (its settings) and what one measurement is (a figure)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE


class BenchSettings(BaseModel):
    model: str = "gemma-3-270m"
    gen_batch_size: int = DEFAULT_BATCH_SIZE
    gen_prompts: int = DEFAULT_BATCH_SIZE
    naive_prompts: int = Field(4, description="unbatched baseline is slow: fewer prompts, same length")
    new_tokens: int = 32
    train_batch_size: int = 8
    train_seq_len: int = 128
    train_steps: int = 4
    dpo_pairs: int = 16
    fewshot_prompts: int = Field(32, description="stage-1 few-shot prompts (x 4 samples): one batch of 128 rows")
    fewshot_new_tokens: int = 40
    stage: bool = False
    quick: bool = False
    peers: dict[str, str] = Field(
        default_factory=dict, description="name -> base URL of an OpenAI-compatible server (llama.cpp, vLLM) "
        "that gets the few-shot prompts too: figure <name>_fewshot (bench/peers.py)",
    )


class Figure(BaseModel):
    id: str
    name: str
    unit: str
    value: float
    naive: float | None = None
    roofline: float | None = None
    extra: dict[str, float] = Field(default_factory=dict, description="other baselines' values ('_share': rates)")
    info: dict[str, float] = Field(default_factory=dict, description="counts and sizes beside the figure, no ratio")

    @property
    def vs_naive(self) -> float | None:
        return self.value / self.naive if self.naive else None

    @property
    def of_roofline(self) -> float | None:
        return self.value / self.roofline if self.roofline else None

"""The transformers engine: n samples from one shared prefill equal n separate prefills."""

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine

PROMPTS = ["### Instruction:\nName a colour.\n\n### Response:\n", "### Instruction:\nHi\n\n### Response:\n", "x"]


def test_shared_prefill_matches_separate_prompts_greedy():
    engine = TransformersEngine.from_ref("tiny", batch_size=8)
    shared = engine.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=12, temperature=0.0, seed=1), progress=False)
    flat = engine.generate([p for p in PROMPTS for _ in range(3)],
                           SamplingParams(n=1, max_new_tokens=12, temperature=0.0, seed=1), progress=False)
    assert shared == [sum(flat[3 * i : 3 * i + 3], []) for i in range(len(PROMPTS))]
    assert any(s for row in shared for s in row)  # something was generated


def test_sampled_outputs_are_reproducible_and_vary_across_samples():
    engine = TransformersEngine.from_ref("tiny", batch_size=8)
    params = SamplingParams(n=4, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=7)
    first = engine.generate(PROMPTS, params, progress=False)
    assert first == engine.generate(PROMPTS, params, progress=False)
    assert all(len(row) == 4 for row in first)
    assert any(len(set(row)) > 1 for row in first)

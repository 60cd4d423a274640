"""The transformers engine's decoding loop against transformers' own `generate`."""

import pytest
import torch

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.decoding import decode_batch
from cai_bootstrap.engines.transformers_engine import TransformersEngine

PROMPTS = ["### Instruction:\nName a colour.\n\n### Response:\n", "### Instruction:\nHi\n\n### Response:\n", "x"]


@pytest.fixture(scope="module")
def engine() -> TransformersEngine:
    return TransformersEngine.from_ref("tiny", batch_size=8)


def _hf_greedy(engine, n: int, max_new: int, **kw) -> list[list[int]]:
    enc = {k: v.repeat_interleave(n, dim=0) for k, v in engine._encode(PROMPTS).items()}
    out = engine.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                eos_token_id=engine.tokenizer.eos_token_id, pad_token_id=engine.tokenizer.pad_token_id,
                                **kw)
    eos, pad = engine.tokenizer.eos_token_id, engine.tokenizer.pad_token_id
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = row.index(eos) if eos in row else len(row)
        rows.append([t for t in row[:cut] if t != pad] if pad != eos else row[:cut])
    return rows


@pytest.mark.parametrize("n,kw", [(1, {}), (3, {}), (2, {"repetition_penalty": 1.5})])
def test_greedy_decoding_equals_transformers_generate(engine, n, kw):
    enc = engine._encode(PROMPTS)
    ours = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"],
                        SamplingParams(max_new_tokens=12, n=n, **kw), eos_ids=[engine.tokenizer.eos_token_id])
    assert ours == _hf_greedy(engine, n, 12, **kw)
    assert any(ours)


def test_min_new_tokens_and_stop_check(engine):
    enc = engine._encode(PROMPTS)
    full = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"],
                        SamplingParams(max_new_tokens=9, min_new_tokens=9), eos_ids=[engine.tokenizer.eos_token_id])
    assert [len(r) for r in full] == [9, 9, 9]
    # a row stops right after the token that completes a stop condition
    cut = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"], SamplingParams(max_new_tokens=9),
                       eos_ids=[-1], stopped=lambda toks: len(toks) >= 4)
    assert [len(r) for r in cut] == [4, 4, 4] and all(c == f[:4] for c, f in zip(cut, full))


def test_sampled_outputs_are_reproducible_and_vary_across_samples(engine):
    params = SamplingParams(n=4, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=7)
    first = engine.generate(PROMPTS, params, progress=False)
    assert first == engine.generate(PROMPTS, params, progress=False)
    assert all(len(row) == 4 for row in first)
    assert any(len(set(row)) > 1 for row in first)
    other = engine.generate(PROMPTS, params.model_copy(update={"seed": 8}), progress=False)
    assert other != first


def test_top_p_keeps_only_the_head_of_the_distribution():
    from cai_bootstrap.engines.decoding import pick_tokens

    scores = torch.tensor([[5.0, 4.9, -10.0, -10.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    picked = pick_tokens(scores, SamplingParams(max_new_tokens=1, temperature=1.0, top_p=0.5), g)
    assert set(picked.tolist()) == {0}
    picked = pick_tokens(scores, SamplingParams(max_new_tokens=1, temperature=1.0, top_p=0.99), g)
    assert set(picked.tolist()) == {0, 1}


def test_long_prompts_are_cut_from_the_left_with_a_warning(engine, caplog):
    """The end of a prompt (the request and its `### Response:` header) is what the answer
    follows: a prompt over `max_prompt_tokens` loses its start (few-shot examples), with a warning."""
    small = TransformersEngine(engine.loaded, batch_size=4, max_prompt_tokens=64)
    prompt = "### Instruction:\n" + "many few-shot examples " * 20 + "\nName a colour.\n\n### Response:\n"
    ids = small.prompt_ids(prompt)
    full = small.tokenizer(prompt).input_ids
    assert len(ids) == 64 and ids[-40:] == full[-40:]
    assert small.tokenizer.decode(ids, skip_special_tokens=True).endswith("Name a colour.\n\n### Response:\n")
    if small.tokenizer.bos_token_id is not None and full[0] == small.tokenizer.bos_token_id:
        assert ids[0] == full[0]
    enc = small._encode([prompt, "short"])
    assert enc["input_ids"].shape[1] == 64 and enc["input_ids"][0].tolist() == ids
    with caplog.at_level("WARNING"):
        small.generate([prompt], SamplingParams(max_new_tokens=2), progress=False)
    assert "cut from the left" in caplog.text


def test_generation_stops_when_cancelled(engine):
    import threading

    from cai_bootstrap.engines.base import GenerationCancelled

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        engine.generate(PROMPTS, SamplingParams(max_new_tokens=50, min_new_tokens=50), progress=False, cancel=cancel)
    assert engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=3), progress=False, cancel=threading.Event())

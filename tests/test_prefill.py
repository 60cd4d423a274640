"""`engines.prefill`: a batch's shared prompt prefix prefilled once gives the logits and the
tokens of a one-piece prefill, with left padding, across the sliding window, greedy and sampled."""

import pytest
import torch

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.decoding import decode_batch
from cai_bootstrap.engines.prefill import prefill, shared_prefix_length
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.prompt_format import format_few_shot

DEMOS = [("Name a colour.", "Red."), ("Say hello.", "Hello there!"), ("Count to three.", "One, two, three.")]
#: One few-shot preamble, then requests of different lengths: rows get different left padding.
PROMPTS = [format_few_shot(q, DEMOS) for q in ["Hi", "Name an animal that lives in the sea.", "Add 2 and 3.", "Why?"]]


@pytest.fixture(scope="module", params=[64, 16], ids=["window-64", "window-16"])
def engine(request) -> TransformersEngine:
    engine = TransformersEngine.from_ref("tiny", batch_size=8)
    # a window shorter than the shared prefix (16) and one longer than it (64)
    engine.model.config.sliding_window = request.param
    for layer in engine.model.model.layers:
        if getattr(layer.self_attn, "sliding_window", None):
            layer.self_attn.sliding_window = request.param
    return engine


def _batch(engine):
    enc = engine._encode(PROMPTS)
    positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return enc["input_ids"], enc["attention_mask"], positions


def test_shared_prefix_is_found_after_each_rows_padding(engine):
    ids, mask, _ = _batch(engine)
    shared = shared_prefix_length(ids, mask)
    assert shared > 40  # the demos
    rows = [engine.prompt_ids(p) for p in PROMPTS]
    assert all(r[:shared] == rows[0][:shared] for r in rows)
    assert len({r[shared] for r in rows if len(r) > shared}) > 1 or any(len(r) == shared + 1 for r in rows)
    assert shared_prefix_length(ids[:1], mask[:1]) == 0  # one row: nothing to share


@torch.inference_mode()
def test_prefill_of_shared_prefix_gives_the_logits_and_cache_of_a_one_piece_prefill(engine):
    ids, mask, positions = _batch(engine)
    capacity = ids.shape[1] + 8
    whole_logits, whole_cache = prefill(engine.model, ids, mask, positions, capacity, min_shared=None)
    split_logits, split_cache = prefill(engine.model, ids, mask, positions, capacity, min_shared=1)
    torch.testing.assert_close(split_logits, whole_logits, rtol=1e-4, atol=1e-4)
    for a, b in zip(split_cache.layers, whole_cache.layers):
        assert a.get_seq_length() == b.get_seq_length()
        real = mask.bool()[:, None, :, None]  # pad columns hold different (masked) values
        torch.testing.assert_close(a.slots.k[:, :, : ids.shape[1]] * real, b.slots.k[:, :, : ids.shape[1]] * real,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params", [
    SamplingParams(max_new_tokens=24, n=2),
    SamplingParams(max_new_tokens=24, n=3, temperature=1.0, top_p=0.9),
    SamplingParams(max_new_tokens=24, repetition_penalty=1.3),
], ids=["greedy", "sampled", "repetition-penalty"])
def test_decoding_with_the_shared_prefill_gives_the_same_tokens(engine, params):
    ids, mask, _ = _batch(engine)
    eos = [engine.tokenizer.eos_token_id]
    shared = decode_batch(engine.model, ids, mask, params, eos_ids=eos, seed=3, min_shared_prefix=1)
    whole = decode_batch(engine.model, ids, mask, params, eos_ids=eos, seed=3, min_shared_prefix=None)
    assert shared == whole
    assert sum(len(row) for row in shared) > 0


def _fewshot_batch(engine, shots):
    from cai_bootstrap.tasks.catalog import get_family

    questions = [i.instruction for i in get_family("answer_question").instances("train", 8, 0)]
    prompts = [format_few_shot(q, shots) for q in questions]
    return prompts, engine._encode(prompts)


@pytest.mark.slow
def test_shared_prefill_on_the_embedded_model_gives_the_tokens_of_a_one_piece_prefill():
    """float32 Gemma 3 270M, the stage-1 answerer's 5-shot prompts, and prompts past the
    512-token window: the same tokens, greedy and sampled. (In bf16 no two batch layouts give
    the same bits: see the next test.)"""
    from cai_bootstrap.tasks.catalog import get_family

    engine = TransformersEngine.from_ref("gemma-3-270m", dtype="float32", batch_size=16)
    demos = get_family("answer_question").few_shot()
    long_demos = demos * (1 + 700 // sum(len(engine.prompt_ids(q + a)) for q, a in demos))  # > 512 tokens
    eos = [engine.tokenizer.eos_token_id]
    for shots in (demos[:5], long_demos):
        prompts, enc = _fewshot_batch(engine, shots)
        own = min(len(engine.prompt_ids(p)) for p in prompts) - shared_prefix_length(enc["input_ids"], enc["attention_mask"])
        assert own < 40  # the demos are shared, the question is not
        for params in (SamplingParams(max_new_tokens=32), SamplingParams(max_new_tokens=32, n=4, temperature=1.0)):
            whole = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"], params, eos_ids=eos,
                                 seed=5, min_shared_prefix=None)
            shared = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"], params, eos_ids=eos, seed=5)
            assert shared == whole


@pytest.mark.slow
@torch.inference_mode()
def test_shared_prefill_in_bf16_is_as_close_to_an_unbatched_prefill_as_a_padded_batch_is():
    """bf16: a padded batch already differs from one prompt alone by rounding (about 0.3 in
    logits of size 30 on the embedded model); the shared prefill may not add to it."""
    from cai_bootstrap.tasks.catalog import get_family

    engine = TransformersEngine.from_ref("gemma-3-270m", dtype="bfloat16", batch_size=16)
    prompts, enc = _fewshot_batch(engine, get_family("answer_question").few_shot()[:5])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    whole, _ = prefill(engine.model, ids, mask, positions, ids.shape[1], min_shared=None)
    shared, _ = prefill(engine.model, ids, mask, positions, ids.shape[1], min_shared=1)
    alone = torch.stack([engine.model(input_ids=torch.tensor([engine.prompt_ids(p)]), logits_to_keep=1).logits[0, -1]
                         for p in prompts]).float()
    whole_error = (whole.float() - alone).abs().amax(-1)
    shared_error = (shared.float() - alone).abs().amax(-1)
    assert shared_error.mean() <= 1.5 * whole_error.mean()
    assert (shared.argmax(-1) == alone.argmax(-1)).all()

"""`engines.kv_cache.slot_cache` against transformers' `DynamicCache` on the tiny Gemma 3 (one
sliding-window layer, one full layer), past the sliding window, with rows dropped and repeated."""

import pytest
import torch
from transformers import DynamicCache

from cai_bootstrap.engines.kv_cache import SlotLayer, SlotSlidingWindowLayer, slot_cache
from cai_bootstrap.models.tiny import tiny_config


@pytest.fixture(scope="module")
def model():
    config = tiny_config(300)
    config.sliding_window = 8  # prompts of 12 tokens and 10 steps cross it
    return build_tiny_model_with(config)


def build_tiny_model_with(config):
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def _step_logits(model, cache, steps=10, batch=3, prompt=12, n=2, drop_at=4):
    """Prefill, repeat each row n times, decode ``steps`` tokens; drop a row at ``drop_at``."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (batch, prompt), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding in one row
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = []
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True).logits[:, -1]
        cache.batch_repeat_interleave(n)
        mask, logits = mask.repeat_interleave(n, 0), logits.repeat_interleave(n, 0)
        next_pos = positions[:, -1:].repeat_interleave(n, 0) + 1
        for step in range(steps):
            out.append(logits)
            tokens = logits.argmax(-1)
            if step == drop_at:
                live = torch.tensor([0, 2, 3, 5])
                cache.batch_select_indices(live)
                tokens, mask, next_pos = tokens[live], mask[live], next_pos[live]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], -1)
            logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos,
                           past_key_values=cache, use_cache=True).logits[:, -1]
            next_pos = next_pos + 1
    return out


@pytest.mark.parametrize("capacity", [22, 5])  # exact, and too small: buffers grow
def test_slot_cache_gives_the_same_logits_as_dynamic_cache(model, capacity):
    want = _step_logits(model, DynamicCache(config=model.config))
    cache = slot_cache(model.config, capacity=capacity)
    assert [type(layer) for layer in cache.layers] == [SlotSlidingWindowLayer, SlotLayer]
    got = _step_logits(model, cache)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert cache.get_seq_length() == 12 + 10
    assert cache.layers[0].keys.shape[-2] == model.config.sliding_window - 1  # the window kept, as transformers does

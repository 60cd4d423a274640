"""Prefill of a left-padded batch whose prompts start with the same tokens: that prefix once.

Why: few-shot role prompts of one family share their preamble and often their first demos,
and every prompt of a batch recomputed them. vLLM's automatic prefix caching and SGLang's
RadixAttention do this in a server; `model.generate` has nothing like it for one batch.

The layout stays exactly today's: row ``i`` is ``pad_i`` pad columns, the shared prefix
``P`` (``L`` tokens), then the row's own tokens. ``P`` is run once, as a batch of one, at
positions ``0 .. L-1``; its keys and values depend only on those tokens and positions, so
row ``i``'s cache columns ``pad_i .. L-1`` are a copy of ``P``'s first ``L - pad_i``
positions (pad columns get zeros: finite, and masked out). The model then runs on columns
``L ..`` of every row with the cache holding columns ``0 .. L-1``, the same chunked prefill
transformers does, sliding window included (the window is counted in cache columns, as in
a one-piece prefill). Rows recompute only the tail of ``P`` that their padding pushed past
column ``L``.
"""

from __future__ import annotations

import torch

from cai_bootstrap.engines.kv_cache import slot_cache

#: Shorter common prefixes are prefilled with the rest: a second forward pass costs more.
MIN_SHARED_TOKENS = 32


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """Tokens every row starts with (after its left padding), leaving each row at least
    one token of its own (the last position's logits come from the second pass)."""
    lengths = attention_mask.sum(-1).tolist()
    if len(lengths) < 2:
        return 0
    width = input_ids.shape[1]
    rows = [input_ids[i, width - n :] for i, n in enumerate(lengths)]
    limit = min(lengths) - 1
    if limit <= 0:
        return 0
    heads = torch.stack([r[:limit] for r in rows])
    same = (heads == heads[:1]).all(dim=0)
    differs = (~same).nonzero()
    return int(differs[0]) if len(differs) else limit


def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, capacity: int,
            min_shared: int | None = MIN_SHARED_TOKENS):
    """Last-position logits of every row and the filled cache (`kv_cache.slot_cache`)."""
    shared = shared_prefix_length(input_ids, attention_mask)
    cache = slot_cache(model.config, capacity=capacity)
    if min_shared is None or shared < min_shared or not all(hasattr(layer, "slots") for layer in cache.layers):
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1]
        return logits, cache
    width = input_ids.shape[1]
    pads = (width - attention_mask.sum(-1)).tolist()
    prefix_ids = input_ids[:1, pads[0] : pads[0] + shared]  # any row: the prefix is the same in all
    prefix = slot_cache(model.config, capacity=shared)
    model(input_ids=prefix_ids, position_ids=torch.arange(shared, device=input_ids.device)[None],
          past_key_values=prefix, use_cache=True, logits_to_keep=1)
    for target, source in zip(cache.layers, prefix.layers):
        keys, values = source.slots.k[:, :, :shared], source.slots.v[:, :, :shared]
        batch_keys = keys.new_zeros(len(pads), *keys.shape[1:])
        batch_values = values.new_zeros(len(pads), *values.shape[1:])
        for row, pad in enumerate(pads):
            if pad < shared:
                batch_keys[row, :, pad:] = keys[0, :, : shared - pad]
                batch_values[row, :, pad:] = values[0, :, : shared - pad]
        target.update(batch_keys, batch_values)
    logits = model(
        input_ids=input_ids[:, shared:], attention_mask=attention_mask, position_ids=positions[:, shared:],
        past_key_values=cache, use_cache=True, logits_to_keep=1,
    ).logits[:, -1]
    return logits, cache

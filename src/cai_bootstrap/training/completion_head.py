"""`completion_only_lm_head`: TRL's compact LM-head path (labelled positions only) on CPU as well."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def completion_only_lm_head(enabled: bool = True):
    """Project only the positions that have a label through the LM head, on CPU as well.

    TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`) already skips the
    full logits tensor, and on CUDA/XPU it also skips every position whose label is
    -100 (prompt and padding). Elsewhere it projects *every* position, to keep tile
    shapes static for compiling backends (Neuron). A CPU compiles nothing, and with
    Gemma's 262k vocabulary the LM head is most of a 270M model's FLOPs, so the
    prompt positions cost more than the whole transformer body. This makes TRL's
    own compact path apply on CPU too (same math: gathered rows, then scattered
    back; the kernels stay TRL's torch tiles). Scoped to the ``with`` block;
    a no-op when TRL lacks the hook.
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:
        yield
        return

    def compact_positions(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    trl_utils._use_triton = compact_positions
    try:
        yield
    finally:
        trl_utils._use_triton = original

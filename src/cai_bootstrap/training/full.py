"""Full fine-tuning: every weight of the transformer body trains, not a LoRA adapter.

Why offer it: Google's own Gemma 3 270M fine-tuning guide trains all weights (lr 5e-5,
validation loss lowest at epoch 2); a small model has little capacity to spare, and a
rank-16 adapter may be too narrow for hundreds of records.

* `prepare_full`: a float32 copy of the caller's model to train (its master weights:
  bf16 weights would round away most updates of an lr-5e-5 step), so the caller's model
  is left as handed in, as with LoRA. Under bf16 autocast the matmuls still run in bf16.
  ``freeze_embeddings`` keeps the token embedding frozen (tied to the LM head in Gemma:
  170M of the 270M parameters, and a 262k-row gradient every step).
* `save_full`: the trained tensors, atomically, in the base model's dtype
  (`models.weights` loads them back over a model).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from cai_bootstrap.jsonl import replace_dir
from cai_bootstrap.models.weights import write_full_weights


def prepare_full(model: torch.nn.Module, freeze_embeddings: bool) -> torch.nn.Module:
    """A trainable float32 copy of ``model``."""
    work = copy.deepcopy(model).to(torch.float32)
    work.requires_grad_(True)
    if freeze_embeddings:
        work.get_input_embeddings().requires_grad_(False)
        head = work.get_output_embeddings()
        if head is not None:
            head.requires_grad_(False)
    work.train()
    return work


def save_full(model: torch.nn.Module, target: str | Path, dtype: torch.dtype) -> Path:
    """Write the trained tensors of ``model`` to ``target`` atomically, cast to ``dtype``."""
    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        write_full_weights(model, tmp, dtype)

    return replace_dir(Path(target), fill)

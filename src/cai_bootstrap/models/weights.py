"""A stage's trained weights on disk: a PEFT LoRA adapter, or full fine-tuned tensors.

Both live in a stage's ``adapter/`` directory, so a lineage (base + trained weights of
every stage, applied in order) can mix them:

* LoRA: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's own format),
  merged into the weights with ``PeftModel.merge_and_unload``.
* Full fine-tuning: `FULL_WEIGHTS_FILE`, the tensors that were trained (named as in the
  model's ``state_dict``), loaded over the model's own; `FULL_CONFIG_FILE` says so.
  Frozen tensors (by default the tied embedding / LM head, two thirds of Gemma 3 270M)
  are not stored, so a stage costs what it trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

FULL_WEIGHTS_FILE = "full_weights.safetensors"
FULL_CONFIG_FILE = "full_config.json"
LORA_CONFIG_FILE = "adapter_config.json"
LORA_WEIGHTS_FILE = "adapter_model.safetensors"


def is_full_weights(weights_dir: str | Path) -> bool:
    """``weights_dir`` holds full fine-tuned tensors (not a LoRA adapter)."""
    return (Path(weights_dir) / FULL_CONFIG_FILE).exists()


def has_trained_weights(weights_dir: str | Path) -> bool:
    """A finished adapter or full-weights directory is in place (both are written atomically)."""
    d = Path(weights_dir)
    return (d / LORA_WEIGHTS_FILE).exists() or (d / FULL_WEIGHTS_FILE).exists()


def write_full_weights(model: torch.nn.Module, target: Path, dtype: torch.dtype) -> None:
    """Write ``model``'s trainable tensors (cast to ``dtype``) into the existing directory ``target``."""
    from safetensors.torch import save_file

    state = {
        name: param.detach().to(dtype).contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }
    if not state:
        raise ValueError("full fine-tuning trained no tensor: every parameter is frozen")
    save_file(state, str(target / FULL_WEIGHTS_FILE), metadata={"format": "pt"})
    config = {
        "format": "cai-bootstrap full fine-tuning: these tensors replace the model's own",
        "tensors": len(state),
        "parameters": sum(t.numel() for t in state.values()),
        "dtype": str(dtype).removeprefix("torch."),
    }
    (target / FULL_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_full_weights(model: torch.nn.Module, weights_dir: str | Path) -> torch.nn.Module:
    """Copy the stored tensors into ``model`` (in place, in the model's dtype); returns ``model``."""
    from safetensors.torch import load_file

    weights = load_file(str(Path(weights_dir) / FULL_WEIGHTS_FILE))
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ValueError(f"{weights_dir}: {len(unknown)} stored tensors are not in this model (e.g. {unknown[0]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            target = params[name]
            if target.shape != tensor.shape:
                raise ValueError(f"{weights_dir}: {name} has shape {tuple(tensor.shape)}, the model {tuple(target.shape)}")
            target.copy_(tensor.to(target.dtype))
    return model


def write_scaled_lora(adapter: str | Path, scale: float, target: Path) -> None:
    """Write into the existing directory ``target`` a copy of LoRA ``adapter`` whose update is
    ``scale`` times the trained one (every ``lora_B`` scaled), for weight-space interpolation
    between a stage's parent (0) and its trained model (1) (WiSE-FT, Wortsman et al. 2022).

    Why lora_B and not ``lora_alpha``: the delta is (alpha / r) B A, so either works for plain
    LoRA, but the weights stay right under any PEFT scaling rule (rsLoRA, rank patterns).
    """
    from safetensors.torch import load_file, save_file

    adapter = Path(adapter)
    if is_full_weights(adapter):
        raise ValueError(f"{adapter}: full fine-tuned weights cannot be scaled as a LoRA update")
    config = json.loads((adapter / LORA_CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("modules_to_save"):
        raise ValueError(f"{adapter}: a DoRA adapter or one with modules_to_save is not a linear update to scale")
    weights = load_file(str(adapter / LORA_WEIGHTS_FILE))
    if not any("lora_B" in name for name in weights):
        raise ValueError(f"{adapter}: no lora_B tensor to scale")
    scaled = {name: (t * scale if "lora_B" in name else t).contiguous() for name, t in weights.items()}
    for f in adapter.iterdir():
        if f.is_file() and f.name != LORA_WEIGHTS_FILE:
            shutil.copy2(f, target / f.name)
    save_file(scaled, str(target / LORA_WEIGHTS_FILE), metadata={"format": "pt"})
    (target / "scale.json").write_text(json.dumps({"scaled_from": str(adapter), "scale": scale}) + "\n",
                                       encoding="utf-8")

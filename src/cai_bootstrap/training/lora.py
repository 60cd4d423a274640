"""LoRA on top of an already loaded (merged) model.

* `lora_config` / `apply_lora`: the PEFT adapter a stage trains (task CAUSAL_LM;
  ``"all-linear"`` targets every linear layer except the LM head, which TRL's
  fused LM head could not train anyway).
* `check_quantization`: QLoRA (4/8-bit base via bitsandbytes) needs CUDA; fail
  early and clearly everywhere else.
* `save_adapter`: adapter weights written in the base model's dtype (bf16 for
  the embedded model), atomically (``<dir>.partial`` then `os.replace`).
* `remove_lora`: take the LoRA layers out again, leaving the caller's model as
  it was handed in.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from cai_bootstrap.jsonl import replace_dir
from cai_bootstrap.training.settings import LoraSettings, QuantizationUnavailable


def check_quantization(settings: LoraSettings) -> None:
    """Raise `QuantizationUnavailable` unless 4/8-bit training can run here."""
    if settings.quantization == "none":
        return
    if not torch.cuda.is_available():
        raise QuantizationUnavailable(
            f"lora.quantization={settings.quantization!r} (QLoRA) needs a CUDA GPU: bitsandbytes' 4/8-bit "
            "training kernels do not run on this machine's CPU. Use quantization: none here (LoRA on "
            "bf16/fp32 weights), or run on a GPU with `pip install cai-bootstrap[gpu]`."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise QuantizationUnavailable(
            f"lora.quantization={settings.quantization!r} needs bitsandbytes: pip install 'cai-bootstrap[gpu]'"
        ) from exc


def bnb_config(settings: LoraSettings):
    """The `BitsAndBytesConfig` a loader should use for ``settings.quantization`` (None for "none")."""
    check_quantization(settings)
    if settings.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if settings.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def lora_config(settings: LoraSettings):
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
    )


def apply_lora(model: torch.nn.Module, settings: LoraSettings, *, gradient_checkpointing: bool = False):
    """Wrap ``model`` (modified in place) in a fresh trainable LoRA adapter; returns the `PeftModel`.

    A QLoRA base must already be loaded in 4/8 bit (see `bnb_config`).
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    check_quantization(settings)
    if settings.quantization != "none":
        if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
            raise QuantizationUnavailable(
                f"lora.quantization={settings.quantization!r} but the model was not loaded quantized; load it "
                "with quantization_config=bnb_config(settings.lora)"
            )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    with hide_checkpointing_deprecation():
        return get_peft_model(model, lora_config(settings))


@contextlib.contextmanager
def hide_checkpointing_deprecation():
    """Silence transformers 5's FutureWarning for `is_gradient_checkpointing`, which PEFT and TRL
    still read when they wrap a model or start a trainer: theirs to fix, noise to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def bf16_lora_inputs(peft_model, bf16: bool):
    """Under bf16 autocast, feed LoRA layers their bf16 input as is (PEFT's `disable_input_dtype_casting`).

    Why: PEFT casts each LoRA layer's input to the adapter's fp32 dtype, and autocast casts it
    straight back to bf16 for the matmul: two copies of every activation in 126 layers, about a
    tenth of an SFT step on the 2-core machine. The adapter weights stay fp32 (autocast casts the
    small ``r x d`` matrices), so optimizer updates are not rounded to bf16.
    """
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(peft_model, active=bf16)


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the (frozen) base weights: the first floating parameter that is not LoRA."""
    for name, param in model.named_parameters():
        if "lora_" not in name and param.is_floating_point():
            return param.dtype
    return torch.float32


def save_adapter(peft_model, target: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save the "default" adapter to ``target`` atomically, its weights cast to ``dtype``.

    ``dtype`` defaults to the base model's dtype, so a bf16 model gets a bf16 adapter
    (fp32 training copies stay untouched in memory).
    """
    target = Path(target)
    dtype = dtype or model_dtype(peft_model)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):  # quantized base: keep 16-bit
        dtype = torch.bfloat16
    state = {
        k: (v.detach().to(dtype) if "lora_" in k and v.is_floating_point() else v)
        for k, v in peft_model.state_dict().items()
    }
    return replace_dir(
        target, lambda tmp: peft_model.save_pretrained(str(tmp), selected_adapters=["default"], state_dict=state)
    )


def load_adapter_weights(peft_model, adapter_dir: str | Path) -> None:
    """Load saved adapter weights into the model's trainable "default" adapter (resuming a later phase)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, weights, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"{adapter_dir}: adapter does not fit this model ({len(unexpected)} unexpected keys)")


def remove_lora(peft_model) -> torch.nn.Module:
    """Take every LoRA layer out (no merge) and return the bare base model."""
    base = peft_model.unload()
    # TRL patches the model's forward with its fused LM head; drop the instance attribute again.
    base.__dict__.pop("forward", None)
    return base

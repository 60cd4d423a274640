"""`make_engine` and the vLLM backend as far as a CPU allows: the missing-vLLM error, model preparation."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from cai_bootstrap.config import ConfigError, EngineSettings
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.factory import make_engine
from cai_bootstrap.engines.openai_engine import OpenAIEngine
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import load_base, load_model


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_BOOTSTRAP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_transformers_backend():
    engine = make_engine("tiny", EngineSettings(batch_size=3))
    assert isinstance(engine, TransformersEngine) and engine.batch_size == 3


def test_openai_backend_needs_base_url():
    with pytest.raises(ConfigError, match="engine.base_url.*cai-bootstrap serve --model tiny"):
        make_engine("tiny", EngineSettings(backend="openai"))


def test_openai_backend_settings(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    settings = EngineSettings(backend="openai", base_url="http://127.0.0.1:9/v1", concurrency=3, timeout_s=5,
                              max_retries=1, batch_size=7)
    engine = make_engine("runs/x:stage-1", settings)  # builds without contacting the server
    assert isinstance(engine, OpenAIEngine)
    assert (engine.base_url, engine.model, engine.concurrency, engine.timeout_s, engine.max_retries,
            engine.prompts_per_request) == ("http://127.0.0.1:9/v1", "runs/x:stage-1", 3, 5, 1, 7)
    assert engine._client.headers["authorization"] == "Bearer from-env"


def test_vllm_module_imports_on_cpu_and_names_the_extra(no_vllm):
    from cai_bootstrap.engines import vllm_engine

    with pytest.raises(vllm_engine.EngineUnavailable, match=r"pip install 'cai-bootstrap\[gpu\]'"):
        vllm_engine.VLLMEngine("tiny")
    with pytest.raises(vllm_engine.EngineUnavailable, match=r"cai-bootstrap\[gpu\]"):
        make_engine("tiny", EngineSettings(backend="vllm"))


def test_vllm_sampling_kwargs():
    from cai_bootstrap.engines.vllm_engine import vllm_sampling_kwargs

    greedy = vllm_sampling_kwargs(SamplingParams(max_new_tokens=5, stop=["END"]), 0)
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == -1 and greedy["max_tokens"] == 5
    assert greedy["stop"] == ["\n###", "###", "END"]
    sampled = [vllm_sampling_kwargs(SamplingParams(temperature=0.8, top_k=40, n=4, seed=1), i) for i in range(3)]
    assert sampled[0]["top_k"] == 40 and sampled[0]["n"] == 4
    assert len({k["seed"] for k in sampled}) == 3  # one seed per prompt, independent of batching


def _tiny_adapter(model, path, seed):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(path))
    return peft_model.unload()


def test_prepare_vllm_model_merges_all_but_the_last_adapter(cache, tmp_path, no_vllm):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from cai_bootstrap.engines.vllm_engine import prepare_vllm_model

    base, _ = load_base("tiny", seed=0)
    base = _tiny_adapter(base, tmp_path / "a1", seed=1)
    _tiny_adapter(base, tmp_path / "a2", seed=2)
    stage = tmp_path / "run" / "stage-2" / "model"
    stage.mkdir(parents=True)
    (stage / "lineage.json").write_text(json.dumps({"base": "tiny", "base_seed": 0,
                                                    "adapters": [str(tmp_path / "a1"), str(tmp_path / "a2")]}))

    spec = prepare_vllm_model(f"{tmp_path / 'run'}:stage-2")
    assert spec.lora == str(tmp_path / "a2") and spec.lora_rank == 4 and spec.merged == [str(tmp_path / "a1")]
    assert spec.model.startswith(str(cache / "vllm-merged"))
    # What vLLM would run (merged base dir + last adapter) equals the stage model as load_model builds it.
    merged = AutoModelForCausalLM.from_pretrained(spec.model).eval()
    reference = load_model(str(stage)).model
    ids = torch.tensor([[5, 9, 40, 77, 3, 100]])
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-3)  # the last adapter matters
        served = PeftModel.from_pretrained(merged, spec.lora).eval()
        torch.testing.assert_close(served(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)
    assert prepare_vllm_model(str(stage)).model == spec.model  # cached, not merged again

    everything = prepare_vllm_model(str(stage), merge_all=True)
    assert everything.lora is None and len(everything.merged) == 2

    plain = prepare_vllm_model("tiny")
    assert plain.lora is None and (cache / "models" / "tiny-seed0" / "config.json").exists()


def test_prepare_vllm_model_merges_a_full_fine_tuned_last_stage(cache, tmp_path, no_vllm):
    """vLLM serves LoRA adapters only: a lineage ending in full weights is merged whole."""
    from transformers import AutoModelForCausalLM

    from cai_bootstrap.engines.vllm_engine import prepare_vllm_model
    from cai_bootstrap.models.weights import write_full_weights

    base, _ = load_base("tiny", seed=0)
    base = _tiny_adapter(base, tmp_path / "a1", seed=1)
    base.requires_grad_(False)
    layer = base.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.weight.add_(0.5)
    layer.weight.requires_grad_(True)  # "trained": the one tensor stored
    (tmp_path / "full").mkdir()
    write_full_weights(base, tmp_path / "full", torch.float32)
    stage = tmp_path / "run" / "stage-2" / "model"
    stage.mkdir(parents=True)
    (stage / "lineage.json").write_text(json.dumps({"base": "tiny", "base_seed": 0,
                                                    "adapters": [str(tmp_path / "a1"), str(tmp_path / "full")]}))
    spec = prepare_vllm_model(str(stage))
    assert spec.lora is None and spec.merged == [str(tmp_path / "a1"), str(tmp_path / "full")]
    merged = AutoModelForCausalLM.from_pretrained(spec.model).eval()
    reference = load_model(str(stage)).model
    ids = torch.tensor([[5, 9, 40, 77, 3, 100]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)

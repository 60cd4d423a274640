"""Full fine-tuning (``finetune: full``) on the tiny random Gemma 3: weights, lineage, resume, DPO."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from cai_bootstrap.models.loading import merge_adapters
from cai_bootstrap.models.tiny import build_tiny_model
from cai_bootstrap.models.weights import (
    FULL_WEIGHTS_FILE,
    has_trained_weights,
    is_full_weights,
)
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training import TrainSettings, train_stage
from tests.test_training import KillAt, one_thread, read_log, state_copy, toy_records  # noqa: F401 (autouse fixture)

FULL = {"finetune": "full", "learning_rate": 1e-3, "epochs": 2, "batch_size": 4, "save_steps": 2, "seed": 0}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    model, tok = build_tiny_model(seed=0)
    before = state_copy(model)
    out = tmp_path_factory.mktemp("full")
    result = train_stage(model, tok, toy_records(), TrainSettings(**FULL), out, progress=False)
    return model, tok, before, out, result


def logits(model, tok, text="Repeat the code 03."):
    ids = tok([format_prompt(text)], return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def test_full_trains_body_and_leaves_callers_model_alone(full_run):
    model, _, before, out, result = full_run
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    adapter = out / "adapter"
    assert is_full_weights(adapter) and has_trained_weights(adapter)
    stored = load_file(str(adapter / FULL_WEIGHTS_FILE))
    assert not any("embed_tokens" in k for k in stored)  # frozen by default (tied to the LM head)
    assert any("mlp" in k for k in stored) and any("self_attn" in k for k in stored)
    assert result.trainable_params == sum(t.numel() for t in stored.values())
    assert all(t.dtype == torch.float32 for t in stored.values())  # the tiny model's own dtype
    changed = [k for k, t in stored.items() if not torch.equal(t, before[k])]
    assert len(changed) > len(stored) // 2
    config = json.loads((adapter / "full_config.json").read_text())
    assert config["tensors"] == len(stored)


def test_full_weights_load_through_a_lineage(full_run):
    _, tok, _, out, result = full_run
    base, _ = build_tiny_model(seed=0)
    merged = merge_adapters(copy.deepcopy(base), [result.adapter_dir])
    assert (logits(merged, tok) - logits(base, tok)).abs().max() > 1e-3
    stored = load_file(str(out / "adapter" / FULL_WEIGHTS_FILE))
    params = dict(merged.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in stored.items())


def test_lineage_mixes_lora_and_full_stages(tmp_path, full_run):
    """Stage 1 LoRA, stage 2 full on top: later stages see every earlier one's weights."""
    _, tok, _, _, _ = full_run
    model, _ = build_tiny_model(seed=0)
    lora = train_stage(model, tok, toy_records(), TrainSettings(epochs=1, batch_size=4), tmp_path / "s1", progress=False)
    stage1 = merge_adapters(copy.deepcopy(model), [lora.adapter_dir])
    full = train_stage(stage1, tok, toy_records(), TrainSettings(**{**FULL, "epochs": 1}), tmp_path / "s2",
                       progress=False)
    loaded = merge_adapters(copy.deepcopy(model), [lora.adapter_dir, full.adapter_dir])
    stored = load_file(str(tmp_path / "s2" / "adapter" / FULL_WEIGHTS_FILE))
    params = dict(loaded.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in stored.items())
    # A tensor the full stage did not store keeps stage 1's merged value.
    frozen = "model.embed_tokens.weight"
    assert frozen not in stored and torch.equal(params[frozen], dict(stage1.named_parameters())[frozen])


def test_full_loss_decreases(full_run):
    _, _, _, out, _ = full_run
    losses = [r["loss"] for r in read_log(out)]
    assert losses[-1] < losses[0]


def test_unfrozen_embeddings_are_trained_and_stored(tmp_path):
    model, tok = build_tiny_model(seed=0)
    settings = TrainSettings(**{**FULL, "epochs": 1, "freeze_embeddings": False})
    result = train_stage(model, tok, toy_records(8), settings, tmp_path, progress=False)
    stored = load_file(str(tmp_path / "adapter" / FULL_WEIGHTS_FILE))
    assert "model.embed_tokens.weight" in stored
    assert not torch.equal(stored["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert result.trainable_params == sum(t.numel() for t in stored.values())


def test_full_resume_after_kill_matches_uninterrupted_run(tmp_path):
    settings = TrainSettings(**{**FULL, "save_steps": 1})
    model, tok = build_tiny_model(seed=0)
    train_stage(model, tok, toy_records(), settings, tmp_path / "straight", progress=False)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_stage(model, tok, toy_records(), settings, out, progress=False, callbacks=[KillAt(5)])
    assert (out / "checkpoints" / "sft" / "checkpoint-4" / "model.safetensors").exists()
    result = train_stage(model, tok, toy_records(), settings, out, progress=False)
    assert result.phase_results[0].resumed_from_step == 4 and result.phase_results[0].steps == 8
    got = load_file(str(out / "adapter" / FULL_WEIGHTS_FILE))
    want = load_file(str(tmp_path / "straight" / "adapter" / FULL_WEIGHTS_FILE))
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_full_sft_then_dpo_references_the_sft_result(tmp_path):
    model, tok = build_tiny_model(seed=0)
    settings = TrainSettings(**{**FULL, "method": "sft+dpo", "dpo_learning_rate": 1e-4})
    result = train_stage(model, tok, toy_records(), settings, tmp_path, progress=False)
    assert result.phases == ["sft", "dpo"]
    first_dpo = next(r for r in read_log(tmp_path) if r["phase"] == "dpo")
    assert first_dpo["rewards/chosen"] == pytest.approx(0.0, abs=1e-4)
    assert first_dpo["loss"] == pytest.approx(0.6931, abs=1e-3)

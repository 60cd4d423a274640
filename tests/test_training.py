"""Training on the tiny random Gemma 3: SFT, DPO, sft+dpo, adapters, resume, guards."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import TrainerCallback

from cai_bootstrap.models.loading import merge_adapters
from cai_bootstrap.models.tiny import build_tiny_model
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training import (
    LoraSettings,
    QuantizationUnavailable,
    TrainingStateMismatch,
    TrainSettings,
    completion_only_lm_head,
    fit_max_length,
    train_stage,
)

FAST = dict(epochs=2, batch_size=4, save_steps=2, seed=0)


def toy_records(n: int = 16, rejected: bool = True) -> list[dict]:
    recs = []
    for i in range(n):
        rec = {"prompt": f"Repeat the code {i:02d}.", "chosen": f"code {i:02d}"}
        if rejected:
            rec["rejected"] = f"no {i * 7 % 10}"
        recs.append(rec)
    return recs


def read_log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class KillAt(TrainerCallback):
    """Raise after optimizer step ``step`` of ``phase`` (simulates a killed process)."""

    def __init__(self, step: int, phase: str = "sft"):
        self.step, self.phase = step, phase

    def on_step_end(self, args, state, control, **kwargs):
        if args.output_dir.endswith(self.phase) and state.global_step >= self.step:
            raise KeyboardInterrupt(f"killed at step {state.global_step}")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls gain nothing from threads, and OpenMP syncs crawl on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    model, tok = build_tiny_model(seed=0)
    before = state_copy(model)
    out = tmp_path_factory.mktemp("sft")
    result = train_stage(model, tok, toy_records(), TrainSettings(**FAST), out, progress=False)
    return model, tok, before, out, result


def test_sft_trains_lora_and_leaves_base_unchanged(sft_run):
    model, _, before, out, result = sft_run
    assert result.phases == ["sft"] and result.examples == 16 and result.dpo_pairs == 0
    assert result.phase_results[0].steps == 8 and result.train_tokens > 0
    # The caller's model comes back without LoRA layers and with identical weights.
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in name for name, _ in model.named_modules())
    # LoRA B starts at zero; training moved every B matrix.
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    assert all(v.dtype == torch.float32 for v in weights.values())  # the tiny model's dtype
    assert not (out / "checkpoints").exists() and not (out / "adapter.partial").exists()


def test_train_log_records(sft_run):
    _, _, _, out, result = sft_run
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 9))
    assert all(r["phase"] == "sft" for r in log)
    for key in ("loss", "learning_rate", "epoch", "tokens", "elapsed"):
        assert key in log[-1]
    assert log[-1]["tokens"] == result.train_tokens
    assert json.loads((out / "train_result.json").read_text())["adapter_dir"] == result.adapter_dir


def test_adapter_merges_and_changes_logits(sft_run):
    _, tok, _, out, result = sft_run
    base, _ = build_tiny_model(seed=0)
    merged = merge_adapters(copy.deepcopy(base), [result.adapter_dir])
    ids = tok([format_prompt("Repeat the code 03.")], return_tensors="pt").input_ids
    with torch.no_grad():
        delta = (merged(ids).logits - base(ids).logits).abs().max()
    assert delta > 1e-3


def test_finished_stage_returns_stored_result(sft_run):
    model, tok, _, out, result = sft_run
    again = train_stage(model, tok, toy_records(), TrainSettings(**FAST), out, progress=False)
    assert again == result
    with pytest.raises(TrainingStateMismatch):
        train_stage(model, tok, toy_records(), TrainSettings(**{**FAST, "epochs": 3}), out, progress=False)


def test_completion_only_masking():
    from cai_bootstrap.training.lora import apply_lora, remove_lora
    from cai_bootstrap.training.sft import make_sft_trainer, sft_examples

    model, tok = build_tiny_model(seed=0)
    records = toy_records(4)
    rows = sft_examples(records, tok.eos_token)
    peft_model = apply_lora(model, LoraSettings())
    common = dict(output_dir="/tmp/unused", per_device_train_batch_size=4, report_to="none", use_cpu=True,
                  bf16=False, activation_checkpointing=False, save_strategy="no")
    trainer = make_sft_trainer(peft_model, tok, rows, TrainSettings(), common, [])
    batch = next(iter(trainer.get_train_dataloader()))
    remove_lora(peft_model)
    seen = set()
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        text = tok.decode(ids)
        rec = next(r for r in records if format_prompt(r["prompt"]) in text)
        seen.add(rec["prompt"])
        n_prompt = len(tok(format_prompt(rec["prompt"])).input_ids)
        assert all(label == -100 for label in labels[:n_prompt])
        trained = [label for label in labels if label != -100]
        assert tok.decode(trained) == rec["chosen"] + tok.eos_token
    assert len(seen) == 4


def test_loss_decreases_on_memorisable_set(tmp_path):
    model, tok = build_tiny_model(seed=0)
    # The random tiny model's tied embeddings are so small (std 0.02, width 64) that its logits
    # cannot leave about +-1.3 whatever LoRA does (RMSNorm fixes the hidden norm); widen them.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(10)
    settings = TrainSettings(epochs=25, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0, save_checkpoints=False)
    result = train_stage(model, tok, toy_records(8), settings, tmp_path, progress=False)
    losses = [r["loss"] for r in read_log(tmp_path)]
    assert len(losses) == 25
    assert losses[-1] < 0.2 * losses[0] and losses[-1] < 1.0
    assert result.final_losses["sft"] == losses[-1]


def test_dpo_logs_rewards(tmp_path):
    model, tok = build_tiny_model(seed=0)
    records = toy_records(12) + toy_records(4, rejected=False)
    result = train_stage(model, tok, records, TrainSettings(method="dpo", **FAST), tmp_path, progress=False)
    assert result.phases == ["dpo"] and result.dpo_pairs == 12 and result.skipped_for_dpo == 4
    log = read_log(tmp_path)
    assert log and all(r["phase"] == "dpo" for r in log)
    for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "loss", "tokens"):
        assert key in log[-1]
    assert log[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert log[-1]["rewards/margins"] > 0


def test_dpo_with_nll_on_chosen_adds_the_weighted_term(tmp_path):
    """``dpo_sft_weight`` adds the chosen answer's NLL, scaled by its weight, to the DPO loss
    (RPO); at the first step the DPO part is exactly log 2, so the rest is the weighted NLL."""
    first = {}
    for weight in (0.5, 1.0):
        model, tok = build_tiny_model(seed=0)
        settings = TrainSettings(method="dpo", dpo_sft_weight=weight, **FAST)
        train_stage(model, tok, toy_records(12), settings, tmp_path / str(weight), progress=False)
        first[weight] = read_log(tmp_path / str(weight))[0]["loss"] - 0.693147
    assert first[1.0] > 1.0  # a random model's per-token NLL of the chosen answers
    assert first[1.0] == pytest.approx(2 * first[0.5], rel=1e-3)


def test_sft_then_dpo(tmp_path):
    model, tok = build_tiny_model(seed=0)
    result = train_stage(model, tok, toy_records(), TrainSettings(method="sft+dpo", **FAST), tmp_path, progress=False)
    assert result.phases == ["sft", "dpo"]
    log = read_log(tmp_path)
    phases = [r["phase"] for r in log]
    assert phases == ["sft"] * 8 + ["dpo"] * 8
    first_dpo = log[8]
    # The DPO reference is the SFT result, not the base: the first DPO step starts at zero reward.
    assert first_dpo["rewards/chosen"] == pytest.approx(0.0, abs=1e-4)
    assert first_dpo["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert result.train_tokens == sum(p.tokens for p in result.phase_results)
    assert "ref" not in json.dumps(sorted(load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))))


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    settings = TrainSettings(**{**FAST, "save_steps": 1})
    model, tok = build_tiny_model(seed=0)
    reference = train_stage(model, tok, toy_records(), settings, tmp_path / "straight", progress=False)

    out = tmp_path / "killed"
    model, tok = build_tiny_model(seed=0)
    before = state_copy(model)
    with pytest.raises(KeyboardInterrupt):
        train_stage(model, tok, toy_records(), settings, out, progress=False, callbacks=[KillAt(5)])
    assert (out / "checkpoints" / "sft" / "checkpoint-4").is_dir()
    assert not (out / "adapter").exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # LoRA taken out again

    result = train_stage(model, tok, toy_records(), settings, out, progress=False)
    assert result.resumed and result.phase_results[0].resumed_from_step == 4
    assert result.phase_results[0].steps == 8
    assert [r["step"] for r in read_log(out)] == list(range(1, 9))
    got = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    want = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    assert result.final_losses["sft"] == pytest.approx(reference.final_losses["sft"], rel=1e-4)


def test_resume_in_dpo_phase_skips_finished_sft(tmp_path):
    settings = TrainSettings(method="sft+dpo", **{**FAST, "save_steps": 1})
    records = toy_records(8)  # 4 steps per phase
    model, tok = build_tiny_model(seed=0)
    with pytest.raises(KeyboardInterrupt):
        train_stage(model, tok, records, settings, tmp_path, progress=False, callbacks=[KillAt(3, "dpo")])
    assert (tmp_path / "checkpoints" / "sft" / "final" / "phase.json").exists()
    result = train_stage(model, tok, records, settings, tmp_path, progress=False)
    assert result.phases == ["sft", "dpo"]
    assert result.phase_results[0].resumed_from_step == 0 and result.phase_results[1].resumed_from_step == 2
    log = read_log(tmp_path)
    steps = [(r["phase"], r["step"]) for r in log]
    assert steps == [("sft", i) for i in range(1, 5)] + [("dpo", i) for i in range(1, 5)]
    # Still the SFT model as reference after the resume (the reference pass ran again at restart).
    assert log[4]["rewards/chosen"] == pytest.approx(0.0, abs=1e-4)


def test_completion_only_lm_head_same_loss_and_grads():
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    model, tok = build_tiny_model(seed=0)
    add_fused_lm_head(model)
    enc = tok([format_prompt("Repeat the code 01.") + "code 01", format_prompt("Hi") + "hello"],
              return_tensors="pt", padding=True)
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    labels[:, :20] = -100  # a prompt

    def loss_and_grad():
        model.zero_grad()
        loss = model(**enc, labels=labels, fused_lm_head=True).loss
        loss.backward()
        return loss.detach(), model.model.layers[0].mlp.down_proj.weight.grad.clone()

    full = loss_and_grad()
    with completion_only_lm_head():
        assert trl_utils._use_triton(torch.device("cpu"))
        compact = loss_and_grad()
    assert not trl_utils._use_triton(torch.device("cpu"))
    torch.testing.assert_close(compact[0], full[0])
    torch.testing.assert_close(compact[1], full[1])


def test_quantization_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("guard is for machines without CUDA")
    model, tok = build_tiny_model(seed=0)
    settings = TrainSettings(lora=LoraSettings(quantization="4bit"))
    with pytest.raises(QuantizationUnavailable, match="CUDA"):
        train_stage(model, tok, toy_records(), settings, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_prompts_longer_than_max_length_are_dropped_or_named(tmp_path, caplog):
    model, tok = build_tiny_model(seed=0)
    long = {"prompt": "Summarise: " + "the river rose " * 20, "chosen": "It flooded.", "rejected": "No."}
    records = [long, *toy_records(3)]
    rows = [{"prompt": format_prompt(r["prompt"]), "completion": r["chosen"]} for r in records]
    kept = fit_max_length(rows, tok, 64, "SFT")
    assert kept == rows[1:] and "1 of 4 examples dropped" in caplog.text
    # every prompt too long: a clear error naming the setting, before any training starts
    with pytest.raises(ValueError, match=r"every one of the 2 SFT examples .* raise training.max_length"):
        train_stage(model, tok, [long, long], TrainSettings(**FAST, max_length=64), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_settings_are_strict():
    with pytest.raises(ValidationError):
        TrainSettings(epoch=3)
    with pytest.raises(ValidationError):
        TrainSettings(method="ppo")
    with pytest.raises(ValidationError):
        LoraSettings(quantization="2bit")
    assert TrainSettings(lora={"r": 8}).lora.r == 8


def test_random_cache_keys_skip_hashing_and_are_restored():
    import datasets.fingerprint as fp
    import trl.trainer.dpo_trainer as dpo_module
    from datasets import Dataset

    from cai_bootstrap.training.fingerprints import random_cache_keys

    data = Dataset.from_list([{"text": "a"}, {"text": "b"}])

    def upper(row):
        return {"text": row["text"].upper()}

    hashed = {data.map(upper)._fingerprint for _ in range(2)}
    assert len(hashed) == 1  # datasets' own behaviour: the same transform hashes the same
    original_hash = dpo_module.hash_module
    with random_cache_keys():
        keys = {data.map(upper)._fingerprint for _ in range(2)}
        assert dpo_module.hash_module is not original_hash
        assert dpo_module.hash_module(torch.nn.Linear(2, 2)) != dpo_module.hash_module(torch.nn.Linear(2, 2))
    assert len(keys) == 2 and not keys & hashed
    assert dpo_module.hash_module is original_hash and fp.update_fingerprint.__name__ == "update_fingerprint"
    assert data.map(upper)._fingerprint in hashed


def test_result_stored_before_a_new_default_setting_still_counts(tmp_path):
    model, tok = build_tiny_model(seed=0)
    settings = TrainSettings(**FAST)
    first = train_stage(model, tok, toy_records(), settings, tmp_path, progress=False)
    stored = json.loads((tmp_path / "train_result.json").read_text())
    del stored["settings"]["fast_cpu_lm_head"]  # as written before the setting existed
    (tmp_path / "train_result.json").write_text(json.dumps(stored))
    again = train_stage(model, tok, toy_records(), settings, tmp_path, progress=False)
    assert again.adapter_dir == first.adapter_dir and again.train_tokens == first.train_tokens
    with pytest.raises(TrainingStateMismatch):  # not at its default: a real change
        train_stage(model, tok, toy_records(), TrainSettings(**FAST, fast_cpu_lm_head=False), tmp_path,
                    progress=False)


def test_progress_bar_never_shows_nan_loss():
    """The Trainer logs a step's loss after that step's on_step_end: the bar says "loss -" until then."""
    from transformers import TrainerState

    from cai_bootstrap.training.callbacks import RichProgressCallback

    bar = RichProgressCallback("sft")
    state = TrainerState(max_steps=4)
    bar.on_train_begin(None, state, None)
    try:
        state.global_step = 1
        bar.on_step_end(None, state, None)
        assert bar.info(state).startswith("loss -") and "nan" not in bar.info(state)
        bar.on_log(None, state, None, logs={"loss": 1.25})
        assert bar.info(state).startswith("loss 1.250")
    finally:
        bar.close()


def test_training_leaks_no_transformers_future_warning(tmp_path, recwarn):
    model, tok = build_tiny_model(seed=0)
    train_stage(model, tok, toy_records(4), TrainSettings(epochs=1, batch_size=4, max_steps=1), tmp_path, progress=False)
    assert not [w for w in recwarn if "is_gradient_checkpointing" in str(w.message)]


def test_padding_free_sft_takes_the_same_steps_as_padded_batches(tmp_path):
    """Records of different lengths: without padding the same examples give the same losses
    (float32 tiny model); an example longer than max_length keeps the padded, truncating path."""
    records = [{"prompt": f"Repeat {'the code ' * (i % 4)}{i:02d}.", "chosen": f"code {i:02d}" + " ok" * (i % 3)}
               for i in range(12)]
    losses = {}
    for padding_free in (False, True):
        model, tok = build_tiny_model(seed=0)
        settings = TrainSettings(**FAST, save_checkpoints=False, padding_free=padding_free)
        train_stage(model, tok, records, settings, tmp_path / str(padding_free), progress=False)
        losses[padding_free] = [r["loss"] for r in read_log(tmp_path / str(padding_free))]
    assert len(losses[True]) == len(losses[False]) == 6
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)

    from cai_bootstrap.training.sft import fits, sft_examples

    rows = sft_examples(records, tok.eos_token)
    assert fits(rows, tok, 256) and not fits(rows, tok, 20)

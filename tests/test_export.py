"""`export`: a tiny run's stage model as a merged HF directory, a GGUF file and stacked adapters,
each loaded back with the tools users have (transformers, PEFT, datasets), and its training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.jsonl import read_json, read_jsonl
from cai_bootstrap.models.loading import load_model
from cai_bootstrap.prompt_format import format_prompt

runner = CliRunner()
INSTRUCTIONS = [
    "What is the capital of France?",
    "Write one word that rhymes with cat.",
    "Answer this question: is 7 a prime number?",
    "Say something kind about mornings, with ünïcødé and  two spaces.",
    "",
]
PROMPTS = [format_prompt(i) for i in INSTRUCTIONS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A two-stage tiny run: stage-2's model is the base + two stacked adapters."""
    out = tmp_path_factory.mktemp("export") / "run"
    res = runner.invoke(app, ["run", "--preset", "tiny", "--stages", "stage-1,stage-2", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def reference(run_dir):
    """The tool's own loader of stage-2."""
    return load_model(f"{run_dir}:stage-2")


def _export(*args: str) -> str:
    res = runner.invoke(app, ["export", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _logits(model, tokenizer, prompt: str) -> torch.Tensor:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits[0].float()


def test_hf_export_loads_with_plain_transformers_same_logits(run_dir, reference, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hf"
    _export(f"{run_dir}:stage-2", "--out", str(out), "--format", "hf")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    for prompt in PROMPTS:
        assert tokenizer(prompt)["input_ids"] == reference.tokenizer(prompt)["input_ids"]
        torch.testing.assert_close(_logits(model, tokenizer, prompt), _logits(reference.model, reference.tokenizer, prompt),
                                   atol=2e-2, rtol=2e-2)  # bf16 tolerance; the tiny model is fp32, so in fact equal
    # the chat template writes the prompt format the model was trained on
    chat = tokenizer.apply_chat_template([{"role": "user", "content": INSTRUCTIONS[0]}], tokenize=False)
    assert chat == PROMPTS[0]
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert read_json(out / "export.json")["lineage"]["adapters"] == ["stage-1/model/adapter", "stage-2/model/adapter"]


def test_gguf_export_loads_through_transformers_gguf_loader(run_dir, reference, tmp_path):
    """Tensors and tokenizer round-trip through transformers' own GGUF reader; next tokens agree.

    The tiny model puts full attention on every second layer, which Gemma 3's GGUF metadata
    cannot say (llama.cpp and transformers' reader both assume every sixth): the model is
    compared with that layout taken from the HF export's config, the tensors without it."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    hf = tmp_path / "hf"
    _export(f"{run_dir}:stage-2", "--out", str(hf))
    out = tmp_path / "gguf"
    res = runner.invoke(app, ["export", f"{run_dir}:stage-2", "--out", str(out), "--format", "gguf"])
    assert res.exit_code == 0, res.output
    assert "llama.cpp" in res.output and "attention layout" in " ".join(res.output.split())
    assert (out / "model.gguf").stat().st_size > 0 and "FROM ./model.gguf" in (out / "Modelfile").read_text()

    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    for prompt in PROMPTS:
        assert tokenizer(prompt)["input_ids"] == reference.tokenizer(prompt)["input_ids"], prompt
    assert tokenizer.decode(tokenizer(PROMPTS[3])["input_ids"]) == PROMPTS[3]

    plain = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf")
    merged = AutoModelForCausalLM.from_pretrained(hf)
    want = merged.state_dict()
    got = plain.state_dict()
    assert set(got) == set(want)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0, msg=name)

    model = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", config=AutoConfig.from_pretrained(hf))
    for prompt in PROMPTS:
        got_next = _logits(model, tokenizer, prompt)[-1].argmax().item()
        want_next = _logits(reference.model, reference.tokenizer, prompt)[-1].argmax().item()
        assert got_next == want_next, prompt


def test_gguf_warnings_empty_for_gemma_3_270m_layout():
    """The embedded model's layout is the one llama.cpp's gemma3 assumes (nothing to warn about)."""
    from transformers import Gemma3TextConfig

    from cai_bootstrap.models.gguf_export import gguf_warnings
    from cai_bootstrap.models.tiny import build_tiny_tokenizer, tiny_config

    config = Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                              sliding_window=512)
    assert gguf_warnings(config, "embedded") == []
    assert len(gguf_warnings(tiny_config(len(build_tiny_tokenizer())), "bytes")) == 3


def test_adapters_export_applied_in_order_with_peft_gives_the_stage_model(run_dir, reference, tmp_path):
    from peft import PeftModel

    from cai_bootstrap.models.tiny import build_tiny_model

    out = tmp_path / "adapters"
    _export(f"{run_dir}:stage-2", "--out", str(out), "--format", "adapters")
    lineage = read_json(out / "lineage.json")
    assert [e["dir"] for e in lineage["apply_in_order"]] == ["01-stage-1", "02-stage-2"]
    assert "in this order" in (out / "README.md").read_text()
    model, _ = build_tiny_model()  # the base the README names ("tiny": cai-bootstrap's load_base)
    for entry in lineage["apply_in_order"]:
        config = json.loads((out / entry["dir"] / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "tiny"  # was null
        model = PeftModel.from_pretrained(model, str(out / entry["dir"])).merge_and_unload()
    for prompt in PROMPTS[:2]:
        torch.testing.assert_close(_logits(model, reference.tokenizer, prompt),
                                   _logits(reference.model, reference.tokenizer, prompt))


def test_portable_base_of_the_embedded_model_is_its_hub_id():
    from cai_bootstrap.models.export import portable_base

    assert portable_base("gemma-3-270m") == "google/gemma-3-270m"
    assert portable_base("tiny") == "tiny" and portable_base("org/model") == "org/model"


def test_datasets_export_loads_with_datasets_and_holds_exactly_the_trained_rows(run_dir, tmp_path):
    import datasets

    out = tmp_path / "data"
    _export(str(run_dir), "--datasets", str(out))
    ds = datasets.load_dataset("json", data_files=str(out / "*.jsonl"), split="train")
    assert set(ds["stage"]) == {"stage-1", "stage-2"}
    for stage in ("stage-1", "stage-2"):
        rows = [r for r in ds if r["stage"] == stage]
        trained = read_json(run_dir / stage / "train" / "attempt-0" / "train_result.json")
        assert sum(r["sft"] for r in rows) == trained["examples"]
        assert sum(r["dpo"] for r in rows) == trained["dpo_pairs"]
        assert read_jsonl(run_dir / stage / "train.jsonl") == read_jsonl(run_dir / stage / "train" / "attempt-0" / "train.jsonl")
        own_keys = {r["key"] for r in read_jsonl(run_dir / stage / "data.jsonl") if r["kept"]}
        for r in rows:
            assert r["prompt"] == format_prompt(r["messages"][0]["content"])
            assert r["completion"] == r["messages"][1]["content"] + "<eos>"
            assert (r["rejected"] != "") == r["dpo"]
            if r["source"] == "own":
                assert r["key"] in own_keys
    assert any(r["source"] == "replay:stage-1" for r in ds if r["stage"] == "stage-2")
    assert "load_dataset" in (out / "README.md").read_text()


def test_export_never_replaces_a_directory_it_did_not_write(run_dir, tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    res = runner.invoke(app, ["export", f"{run_dir}:stage-1", "--out", str(keep)])
    assert res.exit_code == 1 and "not an earlier export" in res.output
    assert (keep / "notes.txt").read_text() == "precious"
    res = runner.invoke(app, ["export", f"{run_dir}:stage-1"])
    assert res.exit_code == 1 and "--out" in res.output


@pytest.mark.slow
def test_gguf_of_the_embedded_model_loads_in_transformers_without_help(tmp_path):
    """Gemma 3 270M: no config override; the tokenizer metadata is the shipped GGUF's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cai_bootstrap.models.export import export_gguf

    path, warnings = export_gguf("gemma-3-270m", tmp_path / "gguf")
    assert warnings == []
    reference = load_model("gemma-3-270m")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.bfloat16)
    for prompt in PROMPTS:
        assert tokenizer(prompt)["input_ids"] == reference.tokenizer(prompt)["input_ids"]
        assert (_logits(model, tokenizer, prompt)[-1].argmax().item()
                == _logits(reference.model, reference.tokenizer, prompt)[-1].argmax().item()), prompt

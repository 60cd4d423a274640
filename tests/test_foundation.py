"""Foundation: prompt format, JSONL durability, config errors, models, engine, CLI."""

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.config import ConfigError, load_curriculum, load_run_settings, select_preset
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.jsonl import JsonlAppender, JsonlError, read_jsonl
from cai_bootstrap.models.loading import ModelLoadError, load_model, resolve_model_ref
from cai_bootstrap.prompt_format import clean_response, format_few_shot, format_prompt

runner = CliRunner()


def test_prompt_format_round_trip():
    prompt = format_prompt("  Say hi ")
    assert prompt == "### Instruction:\nSay hi\n\n### Response:\n"
    few = format_few_shot("Q2", [("Q1", "A1")])
    assert few.startswith("### Instruction:\nQ1") and few.endswith(format_prompt("Q2"))
    assert clean_response("Paris\n\n### Instruction:\nmore") == "Paris"
    assert clean_response("a STOP b", ("STOP",)) == "a"


def test_jsonl_torn_tail_is_repaired_and_middle_corruption_is_reported(tmp_path):
    path = tmp_path / "d.jsonl"
    with JsonlAppender(path) as out:
        out.append({"a": 1})
        out.append({"a": 2})
    with path.open("a") as fh:
        fh.write('{"a": 3, "tor')  # killed mid-write
    assert [r["a"] for r in read_jsonl(path)] == [1, 2]
    with JsonlAppender(path) as out:  # repairs the tail, appends cleanly
        out.append({"a": 4})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 4]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(JsonlError, match=r"d.jsonl:2"):
        read_jsonl(path)


def test_config_errors_name_file_field_and_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  batch_size: [oops\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_run_settings(str(bad), [])
    typo = tmp_path / "typo.yaml"
    typo.write_text("engine:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: field 'engine.batch_sise'"):
        load_run_settings(str(typo), [])
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("seed: abc\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: field 'seed'"):
        load_run_settings(str(wrong), [])


def test_config_precedence_defaults_yaml_set_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\nmodel: tiny\nengine:\n  batch_size: 4\n")
    s = load_run_settings(str(cfg), [])
    assert (s.seed, s.engine.batch_size, s.preset) == (1, 4, "quick")
    s = load_run_settings(str(cfg), ["seed=2", "engine.batch_size=8"])
    assert (s.seed, s.engine.batch_size) == (2, 8)
    s = load_run_settings(str(cfg), ["seed=2"], {"seed": 3})  # explicit flag beats --set and YAML
    assert s.seed == 3


def test_curriculum_stage_errors_name_the_stage(tmp_path):
    cur = tmp_path / "cur.yaml"
    cur.write_text(
        "name: t\nstages:\n  - name: s1\n    kind: explicit\n    threshold: 1.5\n"
        "  - name: s2\n    kind: explicit\n    roles: {answerer: s9}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_curriculum(str(cur), "quick")
    assert "cur.yaml" in str(info.value) and "threshold" in str(info.value)


def test_select_preset_resolves_nested_values():
    value = {"examples": {"tiny": 2, "quick": 40, "full": 800}, "x": [{"tiny": 1, "quick": 2, "full": 3}]}
    assert select_preset(value, "quick") == {"examples": 40, "x": [2]}


def test_model_refs_resolve_and_unknown_is_clear(tmp_path):
    assert resolve_model_ref("tiny") == ("tiny", "tiny")
    assert resolve_model_ref("gemma-3-270m") == ("registry", "gemma-3-270m")
    assert resolve_model_ref("google/gemma-3-270m")[0] == "hub"
    with pytest.raises(ModelLoadError, match="unknown model"):
        resolve_model_ref("no-such-model")
    with pytest.raises(ModelLoadError, match="no trained model"):
        resolve_model_ref(f"{tmp_path}:stage-1")


def test_tiny_model_is_deterministic_gemma3():
    a, b = load_model("tiny"), load_model("tiny")
    assert a.model.config.model_type == "gemma3_text"
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(pa, pb), name


def test_engine_batched_deterministic_and_stops(tiny_engine):
    prompts = [format_prompt(f"prompt number {i}") for i in range(5)]
    params = SamplingParams(max_new_tokens=12, temperature=0.9, n=2, seed=7)
    out1 = tiny_engine.generate(prompts, params, progress=False)
    out2 = tiny_engine.generate(prompts, params, progress=False)
    assert out1 == out2 and len(out1) == 5 and all(len(o) == 2 for o in out1)
    greedy = tiny_engine.generate(prompts, SamplingParams(max_new_tokens=12), progress=False)
    # Greedy output of one prompt does not depend on its batch neighbours.
    single = tiny_engine.generate(prompts[:1], SamplingParams(max_new_tokens=12), progress=False)
    assert greedy[0] == single[0]
    assert all("###" not in o for outs in out1 for o in outs)


def test_option_logprobs_match_full_forward(tiny_engine):
    prompt = format_prompt("Is the sky blue?")
    scores = tiny_engine.option_logprobs([prompt], [["Yes", "No way"]])[0]
    tok, model = tiny_engine.tokenizer, tiny_engine.model
    for option, score in zip(["Yes", "No way"], scores):
        p = tok(prompt).input_ids
        o = tok(option, add_special_tokens=False).input_ids
        ids = torch.tensor([p + o])
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
        ref = sum(logp[len(p) - 1 + i, t].item() for i, t in enumerate(o))
        assert score == pytest.approx(ref, abs=1e-3)


def test_cli_generate_writes_one_output_per_id_and_resumes(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"Say {i}"}) + "\n" for i in range(4)))
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["generate", "--model", "tiny", "-i", str(inp), "-o", str(out), "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [0, 1, 2, 3] and all("output" in r for r in rows)
    res = runner.invoke(app, ["generate", "--model", "tiny", "-i", str(inp), "-o", str(out)])
    assert "nothing to do" in res.output


def test_cli_generate_reports_corrupt_line(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "a"}\n{"id": 2, prompt\n{"id": 3, "prompt": "c"}\n')
    res = runner.invoke(app, ["generate", "--model", "tiny", "-i", str(inp), "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1
    assert "in.jsonl:2" in res.output.replace("\n", "")


def test_cli_unknown_model_is_one_clear_line(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "a"}\n')
    res = runner.invoke(app, ["generate", "--model", "nope", "-i", str(inp), "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1 and "unknown model 'nope'" in res.output


def test_cli_chat_one_shot():
    res = runner.invoke(app, ["chat", "--model", "tiny", "--prompt", "hello", "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.output

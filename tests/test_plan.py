"""`plan` (budget estimates) and the shipped scale-out configs (run preset, accelerate configs)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from cai_bootstrap.config import PACKAGE_DIR, ConfigError, load_curriculum, load_run_settings
from cai_bootstrap.plan import PROFILES, RECORD_TOKENS, plan, plan_table, plan_totals, read_bench, resolve_profile

MINI = """
name: mini
stage_defaults:
  sampling: {n: 2, max_new_tokens: 20}
  training: {epochs: 1, max_length: 256}
  options: {oversample: 2.0}
  retry: {max_retries: 0}
  replay: 0
stages:
  - name: s1
    kind: explicit
    families: [a, b]
    examples: {tiny: 6, quick: 30, full: 600}
    heldout: 5
  - name: s2
    kind: generation
    families: [c]
    examples: {tiny: 4, quick: 20, full: 400}
    heldout: 4
    roles: {prompt_writer: s1, answerer: previous, judge: base}
    training: {method: sft+dpo}
    options: {aux_n: 1, aux_max_new_tokens: 12}
  - name: s3
    kind: constitutional
    examples: {tiny: 4, quick: 10, full: 200}
    heldout: 3
    roles: {prompt_writer: s1, answerer: s2, critic: s2, reviser: s2}
    training: {method: dpo}
    options:
      aux_n: 1
      aux_max_new_tokens: 10
      benchmarks: {advbench_limit: 10, xstest_limit: 5, ifeval_limit: 0, max_new_tokens: 16}
"""


@pytest.fixture
def mini(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(MINI)
    return path


def test_counts_per_stage(mini):
    rows = {r.stage: r for r in plan(str(mini), "full", "h100")}
    s1, s2, s3 = rows["s1"], rows["s2"], rows["s3"]
    # s1: 600 examples / measured explicit yield 0.82 = 732 candidates (under the cap of oversample 2)
    # x n=2 answers x 20 tokens; eval 2 families x 5 cases.
    assert (s1.candidates, s1.generations, s1.gen_tokens) == (732, 1464 + 10, 732 * 40 + 200)
    assert s1.train_tokens == 600 * RECORD_TOKENS["explicit"]  # SFT, 1 epoch, measured record length
    # s2: 400 / 0.95 = 422 candidates; writer 1 x 12, answerer 2 x 20, judge 2 x 8; eval s1 (10) + s2 (4) cases.
    assert (s2.candidates, s2.generations, s2.gen_tokens) == (422, 422 * 5 + 14, 422 * 68 + 14 * 20)
    assert s2.train_tokens == 3 * 400 * RECORD_TOKENS["generation"]  # SFT + DPO (chosen and rejected)
    # s3: 400 items (constitutional: no measured yield, default 0.25, capped at 2 x 200); writer 1 x 10, one answer x 20, one critique x 10, 2 revisions x 20;
    # eval 17 held-out cases, then 2 models x (10 AdvBench + 2 x 5 XSTest + 0 IFEval) x 16 tokens.
    assert (s3.candidates, s3.generations, s3.gen_tokens) == (400, 2000 + 17 + 40, 400 * 80 + 17 * 20 + 40 * 16)
    assert s3.train_tokens == 2 * 200 * 100


def test_invalid_stage_options_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINI.replace("aux_n: 1, aux_max_new_tokens: 12", "aux_n: 1, no_such_option: 3"))
    with pytest.raises(ConfigError, match="no_such_option"):
        plan(str(bad), "full", "h100")


def test_hours_and_cost(mini):
    h100 = PROFILES["h100"]
    rows = plan(str(mini), "full", "h100", gpu_hour_price=2.0)
    s2 = rows[1]
    assert s2.gen_hours == pytest.approx(s2.gen_tokens / h100.gen_tokens_per_s / 3600)
    # DPO adds one reference forward pass per pair (a third of a training step per token).
    seq = RECORD_TOKENS["generation"]
    train_s = (400 * seq + 800 * seq + 800 * seq / 3) / h100.train_tokens_per_s
    assert s2.train_hours == pytest.approx(train_s / 3600)
    assert s2.setup_hours == pytest.approx(600 / 3600)
    assert s2.hours == pytest.approx(s2.gen_hours + s2.train_hours + s2.setup_hours)
    assert s2.cost == pytest.approx(s2.hours * 2.0, abs=0.01)
    total = plan_totals(rows)
    assert total.hours == pytest.approx(sum(r.hours for r in rows))
    assert total.cost == pytest.approx(sum(r.cost for r in rows), abs=0.01)
    a100 = plan(str(mini), "full", "a100")
    assert plan_totals(a100).hours > total.hours
    assert "$1.74/GPU-hour" in a100[0].profile


def test_cpu_profile_has_no_cost_and_presets_scale(mini):
    quick = plan(str(mini), "quick", "cpu")
    full = plan(str(mini), "full", "cpu")
    assert all(r.cost is None for r in quick)
    assert plan_totals(full).gen_tokens > plan_totals(quick).gen_tokens
    cpu = PROFILES["cpu"]  # bench's rates x the pipeline's measured share
    assert quick[0].gen_hours == pytest.approx(quick[0].gen_tokens / (cpu.gen_tokens_per_s * cpu.gen_share) / 3600)


def test_yield_override(mini):
    rows = plan(str(mini), "full", "h100", yields={"s1": 1.0, "generation": 0.25})
    assert rows[0].candidates == 600 and rows[1].candidates == 1600
    with pytest.raises(ConfigError):
        plan(str(mini), "full", "h100", yields={"s1": 0})


def test_measured_profile_from_bench_json(mini, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({
        "machine": {"matmul_peak_gflops": 400},
        "generation": [
            {"batch_size": 8, "tokens_per_s": 180.0, "naive_tokens_per_s": 30.0, "roofline_tokens_per_s": 700},
            {"batch_size": 32, "tokens_per_s": 260.0, "naive_tokens_per_s": 40.0},
        ],
        "sft": {"tokens_per_s": 210.0, "baseline": {"tokens_per_s": 130.0}},
        "dpo": {"pairs_per_s": 2.0, "tokens_per_s": 150.0},
    }))
    assert read_bench(bench) == {"gen": 260.0, "sft": 210.0, "dpo": 150.0}
    profile = resolve_profile("measured", bench)
    assert profile.name == "cpu (measured)" and not profile.gpu
    rows = plan(str(mini), "quick", "cpu", bench_path=bench)
    share = PROFILES["cpu"]  # bench's rates get the pipeline's shares, measured against bench on this machine
    assert rows[0].gen_hours == pytest.approx(rows[0].gen_tokens / (260 * share.gen_share) / 3600)
    assert rows[2].train_hours == pytest.approx(rows[2].train_tokens / (150 * share.train_share) / 3600)
    # The shape `cai-bootstrap bench` writes.
    real = tmp_path / "real.json"
    real.write_text(json.dumps({
        "settings": {"train_seq_len": 128},
        "matmul_gflops": {"bf16": 400.0, "fp32": 150.0},
        "figures": [
            {"name": "generation (batch 32, 32 new tokens)", "unit": "tokens/s", "value": 310.0, "naive": 40.0,
             "roofline": 740.0, "vs_naive": 7.7, "of_roofline": 0.42},
            {"name": "SFT LoRA (batch 8 x ~128 tokens)", "unit": "tokens/s", "value": 250.0, "naive": 130.0},
            {"name": "DPO (16 pairs, ref log-probs included)", "unit": "pairs/s", "value": 1.5, "naive": 0.6},
            {"name": "quick preset: skills stage-1 wall time", "unit": "s", "value": 600.0},
        ],
    }))
    assert read_bench(real) == {"gen": 310.0, "sft": 250.0, "dpo": 1.5 * 2 * 128}
    # Today's files name figures by id; `sft_packed` (opt-in padding-free SFT) is not the SFT rate.
    with_ids = tmp_path / "ids.json"
    with_ids.write_text(json.dumps({"settings": {"train_seq_len": 128}, "figures": [
        {"id": "generation", "name": "generation", "unit": "tokens/s", "value": 600.0},
        {"id": "fewshot_generation", "name": "few-shot", "unit": "completions/s", "value": 22.0},
        {"id": "sft", "name": "SFT LoRA", "unit": "tokens/s", "value": 450.0},
        {"id": "sft_packed", "name": "SFT padding-free vs padded", "unit": "tokens/s", "value": 340.0},
        {"id": "dpo", "name": "DPO", "unit": "pairs/s", "value": 1.2},
    ]}))
    assert read_bench(with_ids) == {"gen": 600.0, "sft": 450.0, "dpo": 1.2 * 2 * 128}
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"gen_tokens_per_s": 50, "sft_tokens_per_s": 60}))
    assert read_bench(flat) == {"gen": 50.0, "sft": 60.0}
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(ConfigError, match="no generation or SFT"):
        read_bench(empty)
    with pytest.raises(ConfigError, match="needs a bench JSON"):
        resolve_profile("measured")
    with pytest.raises(ConfigError, match="unknown hardware"):
        resolve_profile("tpu")


def test_plan_table_renders(mini):
    rows = plan(str(mini), "full", "h100")
    console = Console(record=True, width=200)
    console.print(plan_table(rows, title="mini / full / h100"))
    text = console.export_text()
    for needle in ("s1", "s2", "s3", "total", "gen tokens", "h100 (7B base)", "$"):
        assert needle in text


@pytest.mark.parametrize("name", ["skills", "tasks"])
@pytest.mark.parametrize("preset", ["quick", "full"])
def test_shipped_curricula_plan(name, preset):
    if not (PACKAGE_DIR / "curricula" / f"{name}.yaml").exists():
        pytest.skip(f"curriculum {name} not shipped yet")
    rows = plan(name, preset, "h100")
    assert rows and all(r.generations > 0 and r.hours > 0 for r in rows)


# ---------------------------------------------------------------- shipped configs

CONFIGS = PACKAGE_DIR / "configs"


def test_full_7b_preset_loads_and_applies(mini):
    settings = load_run_settings(str(CONFIGS / "full-7b.yaml"), [])
    assert settings.preset == "full" and settings.engine.backend == "vllm"
    cur = load_curriculum(str(mini), settings.preset, settings.stage_overrides)
    for stage in cur.stages:
        assert stage.training.gradient_checkpointing and stage.training.max_length == 1024
    assert cur.stages[1].training.method == "sft+dpo"  # overrides keep what they do not name
    # Explicit values still beat the file.
    assert load_run_settings(str(CONFIGS / "full-7b.yaml"), ["engine.backend=openai"]).engine.backend == "openai"


@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3", "fsdp", "cpu_2proc"])
def test_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = CONFIGS / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))  # unknown top-level keys raise
    known = {action.dest for action in launch_command_parser()._actions}
    raw = yaml.safe_load(path.read_text())
    for section in ("deepspeed_config", "fsdp_config"):
        unknown = [k for k in raw.get(section, {}) if k not in known]
        assert not unknown, f"{path}: unknown {section} keys {unknown}"
    expected = {"deepspeed_zero2": ("DEEPSPEED", 2), "deepspeed_zero3": ("DEEPSPEED", 3), "fsdp": ("FSDP", None),
                "cpu_2proc": ("MULTI_GPU", None)}[name]
    assert str(config.distributed_type).endswith(expected[0])
    if expected[1]:
        assert config.deepspeed_config["zero_stage"] == expected[1]


DDP_CHECK = textwrap.dedent("""
    import torch
    from accelerate import Accelerator

    acc = Accelerator()
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    torch.manual_seed(acc.process_index)  # different data per rank
    loss = model(torch.randn(8, 4)).pow(2).mean()
    acc.backward(loss)
    opt.step()
    weights = acc.gather(acc.unwrap_model(model).weight.detach()[None])
    line = (f"rank={acc.process_index} world={acc.num_processes} backend={acc.state.backend} "
            f"synced={torch.allclose(weights[0], weights[-1])}")
    # one file per rank: two processes printing to one pipe could lose or merge lines
    open(f"rank{acc.process_index}.txt", "w").write(line)
""")


@pytest.mark.slow
def test_cpu_2proc_config_runs_two_gloo_processes(tmp_path):
    script = tmp_path / "ddp_check.py"
    script.write_text(DDP_CHECK)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(CONFIGS / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", str(port), str(script)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = sorted(p.read_text() for p in tmp_path.glob("rank*.txt"))
    assert lines == ["rank=0 world=2 backend=gloo synced=True", "rank=1 world=2 backend=gloo synced=True"]


def test_docs_scaling_exists():
    doc = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
    text = doc.read_text()
    for needle in ("cpu_2proc.yaml", "deepspeed_zero2.yaml", "fsdp.yaml", "cai-bootstrap serve", "plan"):
        assert needle in text


def test_plan_counts_rounds_of_self_training():
    from cai_bootstrap.plan import ROUND_KEEP_SHARE, plan
    from cai_bootstrap.stages.registry import load_curriculum

    with_rounds = load_curriculum("skills", "standard")
    without = load_curriculum("skills", "standard", {"*": {"rounds": {"count": 0}}})
    a, b = plan(with_rounds, hardware="cpu")[0], plan(without, hardware="cpu")[0]
    spec = with_rounds.stages[0]
    per = spec.rounds.instances or spec.examples
    assert a.generations - b.generations >= spec.rounds.count * per * spec.rounds.samples
    # training runs on the first records, then on the growing union, once per round
    kept = round(per * spec.rounds.keep * ROUND_KEEP_SHARE)
    runs = sum(spec.examples + r * kept for r in range(spec.rounds.count + 1))
    assert a.train_tokens == pytest.approx(b.train_tokens * runs / spec.examples, rel=0.01)


def test_task_stages_use_the_task_kind_figures():
    """The shipped `tasks` curriculum, loaded for real: its stages count with the measured task-kind
    figures (yield, record tokens, round keep share, the cpu profile's shares) and the families' caps."""
    from cai_bootstrap.plan import KIND_SHARES, MEASURED_YIELDS, ROUND_KEEP_SHARE_BY_KIND
    from cai_bootstrap.stages.registry import get_kind, load_curriculum

    cur = load_curriculum("tasks", "standard")
    rows = plan(cur, hardware="cpu")
    s0, s1 = cur.stages[0], cur.stages[1]
    kind = get_kind("task")
    assert s0.kind == s1.kind == "task" and "task" in MEASURED_YIELDS
    # the families' own caps, not the stage's max_new_tokens: factual_qa 40 -> 48; + summarization 96, explanation 128
    assert kind.plan_answer_tokens(s0) == 48 < s0.sampling.max_new_tokens
    assert kind.plan_answer_tokens(s1) == round((48 + 96 + 128) / 3)
    y = MEASURED_YIELDS["task"]
    assert rows[0].candidates == math.ceil(s0.examples / y)
    assert rows[1].candidates == math.ceil(s1.examples / y)
    # stage 0 (no replay): first records + 3 rounds of 100 instances x keep 2 x the task kind's keep share
    kept = round(s0.rounds.instances * s0.rounds.keep * ROUND_KEEP_SHARE_BY_KIND["task"])
    records = sum(s0.examples + a * kept for a in range(s0.rounds.count + 1))
    assert rows[0].train_tokens == round(records * s0.training.epochs * RECORD_TOKENS["task"])
    # generations: answers, one critique of the unsolved cases (1 - yield) and revise_n revisions of each;
    # then the rounds and one evaluation (held-out + validation) per training run
    cands, critiqued = rows[0].candidates, round(rows[0].candidates * (1 - y))
    evals = (s0.rounds.count + 1) * (s0.heldout + s0.validation * len(s0.adapter_scales))
    assert rows[0].generations == (cands * s0.sampling.n + 2 * critiqued
                                   + s0.rounds.count * s0.rounds.instances * s0.rounds.samples + evals)
    gen_share, train_share = KIND_SHARES["task"]
    cpu = PROFILES["cpu"]
    assert rows[0].gen_hours == pytest.approx(rows[0].gen_tokens / (cpu.gen_tokens_per_s * gen_share) / 3600)
    assert rows[0].train_hours == pytest.approx(rows[0].train_tokens / (cpu.train_tokens_per_s * train_share) / 3600)
    # the GPU profiles keep their derived rates (the task shares were measured on the CPU pipeline)
    h100 = plan(cur, hardware="h100")[0]
    assert h100.gen_hours == pytest.approx(h100.gen_tokens / PROFILES["h100"].gen_tokens_per_s / 3600)


def test_seed_answer_families_add_no_generation_to_the_plan():
    """A cold-start family (`options.seed_answers`) takes its references: the first data samples
    nothing for it, so the plan's first-data generations fall by that family's share."""
    from cai_bootstrap.stages.registry import load_curriculum

    both = {"stage-1": {"rounds": {"count": 0}}}
    seeded = {"stage-1": {"rounds": {"count": 0}, "options": {"seed_answers": ["summarization"]}}}
    all_seeded = {"stage-1": {"rounds": {"count": 0},
                              "options": {"seed_answers": ["factual_qa", "summarization", "explanation"]}}}
    plain, one, every = (plan(load_curriculum("tasks", "standard", o), hardware="cpu")[1]
                         for o in (both, seeded, all_seeded))
    spec = load_curriculum("tasks", "standard", both).stages[1]
    assert len(spec.families) == 3
    evaluation = every.generations  # nothing sampled for the data: what is left is evaluation
    assert plain.generations - evaluation == pytest.approx(1.5 * (one.generations - evaluation), rel=0.02)
    assert every.gen_hours < one.gen_hours < plain.gen_hours

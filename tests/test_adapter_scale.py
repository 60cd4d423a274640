"""Weight-space interpolation (``adapter_scales``): scaled LoRA copies, the choice on the
validation split, and what a run installs (tiny model, real PEFT, real pipeline)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from cai_bootstrap.config import ConfigError, RunSettings
from cai_bootstrap.engines.settings import EngineSettings
from cai_bootstrap.jsonl import read_json
from cai_bootstrap.models.loading import load_base, merge_adapters
from cai_bootstrap.models.weights import write_scaled_lora
from cai_bootstrap.pipeline.adapter_scale import choose_adapter_scale
from cai_bootstrap.pipeline.steps import install_model
from cai_bootstrap.runs.layout import ADAPTER_SCALE_FILE, StagePaths
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages.registry import load_curriculum, stage_job
from cai_bootstrap.stages.training_facts import stage_validation


def _lora(out: Path) -> Path:
    """A tiny-model LoRA adapter with a non-zero update (PEFT initialises B at zero)."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_base("tiny", dtype="float32")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    peft.save_pretrained(out)
    return out


def _merged_state(adapter: Path | None) -> dict[str, torch.Tensor]:
    model, _ = load_base("tiny", dtype="float32")
    if adapter is not None:
        model = merge_adapters(model, [str(adapter)])
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_scaled_adapter_moves_the_weights_that_share_of_the_way(tmp_path):
    adapter = _lora(tmp_path / "adapter")
    half = tmp_path / "half"
    half.mkdir()
    write_scaled_lora(adapter, 0.5, half)
    base, full, scaled = _merged_state(None), _merged_state(adapter), _merged_state(half)
    changed = [k for k in base if not torch.equal(base[k], full[k])]
    assert changed, "the adapter changed no weight"
    for k in changed:
        torch.testing.assert_close(scaled[k] - base[k], 0.5 * (full[k] - base[k]), atol=1e-6, rtol=1e-4)
    assert json.loads((half / "scale.json").read_text())["scale"] == 0.5
    assert json.loads((half / "adapter_config.json").read_text()) == json.loads((adapter / "adapter_config.json").read_text())


def test_scales_need_a_validation_split_and_lora():
    with pytest.raises(ConfigError, match="validation split"):
        load_curriculum("skills", "tiny", {"stage-1": {"adapter_scales": [0.5, 1.0]}})
    with pytest.raises(ConfigError, match="finetune"):
        load_curriculum("skills", "tiny", {"stage-1": {"adapter_scales": [0.5, 1.0], "validation": 1,
                                                       "training": {"finetune": "full"}}})
    with pytest.raises(ConfigError, match=r"\(0, 2\]"):
        load_curriculum("skills", "tiny", {"stage-1": {"adapter_scales": [0.0, 1.0], "validation": 1}})
    spec = load_curriculum("skills", "tiny", {"stage-1": {"adapter_scales": [0.5, 1.0], "validation": 1}}).stages[0]
    assert spec.adapter_scales == [0.5, 1.0]
    assert load_curriculum("skills", "tiny").stages[0].adapter_scales == [1.0]  # off unless asked


def _rows(path: Path, cases: list, passed: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for inst in cases:
            f.write(json.dumps({"id": inst.id, "family": inst.family, "prompt": "p", "output": "o",
                                "passed": passed, "check": "c", "reason": "r"}) + "\n")


@pytest.mark.parametrize(("half_passes", "full_passes", "chosen"), [(True, False, 0.5), (True, True, 1.0)])
def test_the_best_validation_scale_is_installed_ties_going_to_the_trained_adapter(
        tmp_path, half_passes, full_passes, chosen):
    run_dir = tmp_path / "run"
    stages = load_curriculum("skills", "tiny", {"stage-1": {"adapter_scales": [0.5, 1.0], "validation": 2}}).stages
    settings = RunSettings(preset="tiny", model="tiny")
    paths = StagePaths(run_dir, "stage-1")
    adapter = _lora(paths.train(0) / "adapter")
    pool = ModelPool(run_dir, "tiny", EngineSettings())
    job = stage_job(run_dir, stages, 0, settings, pool, paths, 0, progress=False, console=Console(quiet=True))
    cases = stage_validation(run_dir, stages[0], settings.seed)
    assert cases
    # the rows of each scale's validation score are already on disk (as after a kill): they are read back
    _rows(paths.eval / "validation-a0-x0.5.jsonl", cases, half_passes)
    _rows(paths.eval / "validation-a0-x1.jsonl", cases, full_passes)

    def install(weights: Path) -> None:
        install_model(run_dir, settings, None, "stage-1", weights, paths)

    weights = choose_adapter_scale(job, "stage-1", adapter, install)
    install(weights)
    record = read_json(paths.train(0) / ADAPTER_SCALE_FILE)
    assert record["scale"] == chosen and weights == paths.installed_weights(0)
    assert record["validation"]["0.5"]["passed"] == (len(cases) if half_passes else 0)
    installed = load_file(str(paths.model / "adapter" / "adapter_model.safetensors"))
    trained = load_file(str(adapter / "adapter_model.safetensors"))
    for name, tensor in trained.items():
        expected = tensor * chosen if "lora_B" in name else tensor
        torch.testing.assert_close(installed[name], expected)
    # the runner's validation score of the attempt is the chosen scale's rows
    assert (paths.eval / "validation-a0.jsonl").read_text() == \
        (paths.eval / f"validation-a0-x{chosen:g}.jsonl").read_text()
    # asked again (a resumed run), the recorded choice stands
    assert choose_adapter_scale(job, "stage-1", adapter, install) == weights


def test_a_run_with_scales_records_them_and_its_rounds_name_the_weights_that_wrote(tmp_path):
    out = tmp_path / "run"
    overrides = ("stage_overrides={stage-1: {adapter_scales: [0.5, 1.0], validation: 1, "
                 "rounds: {count: 1, instances: 2, samples: 2}}}")
    proc = subprocess.run(
        [sys.executable, "-m", "cai_bootstrap.cli", "run", "--preset", "tiny", "--stages", "stage-1",
         "--no-progress", "--out", str(out), "--set", overrides],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    paths = StagePaths(out, "stage-1")
    metrics = read_json(paths.metrics)
    for h in metrics["history"]:
        record = read_json(paths.train(h["attempt"]) / ADAPTER_SCALE_FILE)
        assert h["adapter_scale"] == record["scale"]
        assert set(record["validation"]) == {"0.5", "1"}
        assert (paths.train(h["attempt"]) / "adapter-x0.5" / "adapter_model.safetensors").exists()
    assert metrics["adapter_scale"]["scale"] in (0.5, 1.0)
    weights = paths.installed_weights(0).relative_to(out).as_posix()
    rounds = [r for r in map(json.loads, paths.data.read_text().splitlines()) if r.get("round") == 1]
    assert rounds and all(r["round_model"]["adapter"] == weights for r in rounds)
    assert "| Adapter scale |" in (out / "report.md").read_text()  # the rounds table shows each choice

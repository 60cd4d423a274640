"""Performance benchmark: the pipeline's hot paths vs. the naive way vs. the roofline.

All figures come from one process on the same inputs:

* matmul peak (bf16, fp32): the machine's measured compute ceiling (best of 5 timings);
* generation: `TransformersEngine` (batched, length-sorted, cheap stop check) vs. naive
  unbatched ``model.generate`` per prompt; roofline = peak / (2 x params) tokens/s;
* SFT: `train_stage` (bf16 autocast, completion-only loss and LM head through
  `training.lm_head`, no dataset hashing) vs. TRL `SFTTrainer` at its defaults with the
  same LoRA; roofline = peak / (4 x params) tokens/s (forward 2P + input-gradient 2P for
  frozen weights);
* DPO: `train_stage(method="dpo")` (reference log-probs precomputed once) vs. TRL
  `DPOTrainer` at its defaults; pairs/s, both sides timed from a loaded model to a
  trained adapter (LoRA wrap, trainer construction with its dataset tokenization, the
  reference log-probs, the steps); TRL's rate over its training loop alone is kept in
  ``extra`` (it flatters TRL: our side's construction is counted);
* optionally the wall time of one quick-preset stage; peak resident memory.

`save_cached` keeps a result per machine (CPU model, cores, GPU) and model under the model
cache; `plan` reads it (`load_cached`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE, SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import cpu_supports_bf16, load_model
from cai_bootstrap.prompt_format import format_prompt

TOPICS = ["the ocean", "volcanoes", "honey bees", "the moon", "bread", "trains", "music", "rivers",
          "deserts", "glass", "clocks", "owls", "tea", "bridges", "snow", "copper"]


class BenchSettings(BaseModel):
    model: str = "gemma-3-270m"
    gen_batch_size: int = DEFAULT_BATCH_SIZE
    gen_prompts: int = DEFAULT_BATCH_SIZE
    naive_prompts: int = Field(4, description="unbatched baseline is slow: fewer prompts, same length")
    new_tokens: int = 32
    train_batch_size: int = 8
    train_seq_len: int = 128
    train_steps: int = 4
    dpo_pairs: int = 16
    stage: bool = False
    quick: bool = False


class Figure(BaseModel):
    name: str
    unit: str
    value: float
    naive: float | None = None
    roofline: float | None = None
    extra: dict[str, float] = Field(default_factory=dict)

    @property
    def vs_naive(self) -> float | None:
        return self.value / self.naive if self.naive else None

    @property
    def of_roofline(self) -> float | None:
        return self.value / self.roofline if self.roofline else None


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 3, trials: int = 5) -> float:
    """The best of ``trials`` timings: on a shared machine a single one can read a third low,
    which would flatter every "% of roofline" figure."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def _prompts(n: int) -> list[str]:
    return [format_prompt(f"Write one sentence about {TOPICS[i % len(TOPICS)]} (item {i}).") for i in range(n)]


def bench_generation(engine: TransformersEngine, s: BenchSettings, peak_gflops: float, n_params: int) -> Figure:
    prompts = _prompts(s.gen_prompts)
    params = SamplingParams(max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens)
    engine.batch_size = s.gen_batch_size
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=2), progress=False)  # warm-up
    t0 = time.perf_counter()
    engine.generate(prompts, params, progress=False)
    ours = len(prompts) * s.new_tokens / (time.perf_counter() - t0)

    tok, model = engine.tokenizer, engine.model
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts[: s.naive_prompts]:
            enc = tok(p, return_tensors="pt")
            model.generate(**enc, max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
    naive = s.naive_prompts * s.new_tokens / (time.perf_counter() - t0)
    roof = peak_gflops * 1e9 / (2 * n_params)
    return Figure(name=f"generation (batch {s.gen_batch_size}, {s.new_tokens} new tokens)", unit="tokens/s",
                  value=ours, naive=naive, roofline=roof)


def _train_records(s: BenchSettings, n: int, tokenizer) -> list[dict]:
    """Prompt and responses of about ``train_seq_len / 2`` tokens each, measured with the tokenizer."""

    def grow(sentence: str, budget: int) -> str:
        text = sentence
        while len(tokenizer(text).input_ids) < budget:
            text += " " + sentence
        return text

    half = max(4, s.train_seq_len // 2)
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        out.append({
            "prompt": grow(f"Write a short paragraph about {topic}. Please be clear.", half),
            "chosen": grow(f"{topic.capitalize()} is interesting and worth learning about.", half),
            "rejected": grow("I do not know anything at all.", half),
        })
    return out


def _ours(model_ref: str, records: list[dict], method: str, s: BenchSettings, workdir: Path) -> tuple[float, int, float]:
    from cai_bootstrap.training import TrainSettings, train_stage

    loaded = load_model(model_ref)
    settings = TrainSettings(method=method, batch_size=s.train_batch_size, max_steps=s.train_steps,
                             max_length=s.train_seq_len * 2, save_checkpoints=False, epochs=100)
    t0 = time.perf_counter()
    result = train_stage(loaded.model, loaded.tokenizer, records, settings, workdir / f"ours-{method}", progress=False)
    seconds = time.perf_counter() - t0
    return seconds, result.train_tokens, result.train_seconds


def _trl_default(model_ref: str, records: list[dict], method: str, s: BenchSettings,
                 workdir: Path) -> tuple[float, int, float]:
    """TRL trainer at its defaults (plus what CPU needs), same LoRA and data.

    Returns (seconds in ``train()``, tokens seen, seconds from the loaded model to the end of training).
    """
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model

    loaded = load_model(model_ref)
    tok = loaded.tokenizer
    t_setup = time.perf_counter()
    model = get_peft_model(loaded.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                     target_modules="all-linear", task_type="CAUSAL_LM"))
    common = dict(output_dir=str(workdir / f"trl-{method}"), per_device_train_batch_size=s.train_batch_size,
                  max_steps=s.train_steps, report_to="none", save_strategy="no", use_cpu=True,
                  disable_tqdm=True, include_num_input_tokens_seen="non_padding")
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        rows = [{"prompt": format_prompt(r["prompt"]), "completion": r["chosen"] + tok.eos_token} for r in records]
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=Dataset.from_list(rows),
                             processing_class=tok)
    else:
        from trl import DPOConfig, DPOTrainer

        rows = [{"prompt": format_prompt(r["prompt"]), "chosen": r["chosen"] + tok.eos_token,
                 "rejected": r["rejected"] + tok.eos_token} for r in records]
        trainer = DPOTrainer(model=model, ref_model=None, args=DPOConfig(**common),
                             train_dataset=Dataset.from_list(rows), processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    end = time.perf_counter()
    return end - t0, int(trainer.state.num_input_tokens_seen or 0), end - t_setup


def bench_sft(s: BenchSettings, peak_gflops: float, n_params: int, workdir: Path, tokenizer) -> Figure:
    records = _train_records(s, s.train_batch_size * s.train_steps, tokenizer)
    _, tokens, seconds = _ours(s.model, records, "sft", s, workdir)
    ours = tokens / seconds
    base_s, base_tokens, _ = _trl_default(s.model, records, "sft", s, workdir)
    return Figure(name=f"SFT LoRA (batch {s.train_batch_size} x ~{s.train_seq_len} tokens)", unit="tokens/s",
                  value=ours, naive=base_tokens / base_s, roofline=peak_gflops * 1e9 / (4 * n_params))


def bench_dpo(s: BenchSettings, workdir: Path, tokenizer) -> Figure:
    records = _train_records(s, s.dpo_pairs, tokenizer)
    steps = max(1, s.dpo_pairs // s.train_batch_size)
    s2 = s.model_copy(update={"train_steps": steps})
    wall, _, _ = _ours(s.model, records, "dpo", s2, workdir)  # construction and reference pass included
    train_only_s, _, base_wall = _trl_default(s.model, records, "dpo", s2, workdir)
    return Figure(name=f"DPO ({s.dpo_pairs} pairs, model in -> adapter out)", unit="pairs/s",
                  value=s.dpo_pairs / wall, naive=s.dpo_pairs / base_wall,
                  extra={"naive_train_loop_only": s.dpo_pairs / train_only_s})


def bench_stage(workdir: Path) -> Figure:
    """Wall time of the quick preset's stage 1 (data, training, evaluation)."""
    from rich.console import Console

    from cai_bootstrap.config import RunSettings
    from cai_bootstrap.pipeline.runner import create_run, execute

    run_dir = create_run(RunSettings(curriculum="skills", preset="quick", model="gemma-3-270m", stages=["stage-1"]),
                         workdir / "stage-run")
    t0 = time.perf_counter()
    execute(run_dir, Console(quiet=True), progress=False)
    return Figure(name="quick preset: skills stage-1 wall time", unit="s", value=time.perf_counter() - t0)


def run_bench(s: BenchSettings, progress_cb=print) -> dict:
    if s.quick:
        s = s.model_copy(update={"gen_prompts": min(s.gen_prompts, s.gen_batch_size),
                                 "naive_prompts": 2, "new_tokens": min(s.new_tokens, 24), "train_steps": 3,
                                 "dpo_pairs": 8, "stage": False})
    workdir = Path(tempfile.mkdtemp(prefix="cai-bench-"))
    t_start = time.perf_counter()
    try:
        progress_cb("measuring matmul peak")
        peak_bf16 = matmul_gflops(torch.bfloat16) if cpu_supports_bf16() else None
        peak_fp32 = matmul_gflops(torch.float32)
        peak = peak_bf16 or peak_fp32
        engine = TransformersEngine(load_model(s.model))
        n_params = sum(p.numel() for p in engine.model.parameters())
        figures = []
        progress_cb("generation: batched engine vs unbatched generate")
        figures.append(bench_generation(engine, s, peak, n_params))
        tokenizer = engine.tokenizer
        del engine
        gc.collect()
        progress_cb("SFT: train_stage vs TRL SFTTrainer defaults")
        figures.append(bench_sft(s, peak, n_params, workdir, tokenizer))
        progress_cb("DPO: train_stage vs TRL DPOTrainer defaults")
        figures.append(bench_dpo(s, workdir, tokenizer))
        if s.stage:
            progress_cb("one quick-preset stage")
            figures.append(bench_stage(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "settings": s.model_dump(),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                    "bf16": cpu_supports_bf16(), "torch": torch.__version__},
        "matmul_gflops": {"bf16": peak_bf16, "fp32": peak_fp32},
        "model_params": n_params,
        "figures": [f.model_dump() | {"vs_naive": f.vs_naive, "of_roofline": f.of_roofline} for f in figures],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": time.perf_counter() - t_start,
    }


def bench_table(result: dict):
    from rich.table import Table

    mm = result["matmul_gflops"]
    peak = f"bf16 {mm['bf16']:.0f} / fp32 {mm['fp32']:.0f} GFLOP/s" if mm["bf16"] else f"fp32 {mm['fp32']:.0f} GFLOP/s"
    table = Table(title=f"cai-bootstrap bench: {result['settings']['model']} - matmul peak {peak}")
    for col in ("what", "ours", "naive", "x naive", "roofline", "% roofline"):
        table.add_column(col, justify="right" if col != "what" else "left")

    def fmt(v, pct=False):
        if v is None:
            return "-"
        return f"{v:.0%}" if pct else f"{v:,.1f}" if v >= 10 else f"{v:.3g}"  # pairs/s are below 1

    for f in result["figures"]:
        table.add_row(f"{f['name']} [{f['unit']}]", fmt(f["value"]), fmt(f["naive"]),
                      f"{f['vs_naive']:.2f}x" if f["vs_naive"] else "-", fmt(f["roofline"]), fmt(f["of_roofline"], True))
        for key, v in f.get("extra", {}).items():
            table.add_row(f"  {key.replace('_', ' ')}", "", fmt(v), f"{f['value'] / v:.2f}x" if v else "-", "", "")
    table.caption = f"peak RSS {result['peak_rss_mib']:.0f} MiB, wall {result['wall_s']:.0f} s"
    return table


def save(result: dict, path: Path) -> None:
    from cai_bootstrap.jsonl import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


# ---------------------------------------------------------------- per-machine cache


def machine() -> dict:
    """What a bench result depends on: CPU model, core count, GPU name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu}


def fingerprint(info: dict | None = None) -> str:
    info = info or machine()
    return hashlib.sha256(json.dumps([info["cpu"], info["cores"], info["gpu"]]).encode()).hexdigest()[:16]


def cache_path(model: str = "gemma-3-270m", info: dict | None = None) -> Path:
    """``<model cache>/bench/<machine fingerprint>-<model>.json``."""
    from cai_bootstrap.models.registry import cache_dir

    return cache_dir() / "bench" / f"{fingerprint(info)}-{model.replace('/', '_')}.json"


def save_cached(result: dict) -> Path:
    """Keep ``result`` as this machine's bench for its model (with the machine, date and versions)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("cai-bootstrap", "torch", "transformers", "peft", "trl"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    info = machine()
    record = result | {"machine": {**result.get("machine", {}), **info, "fingerprint": fingerprint(info)},
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions}
    path = cache_path(result["settings"]["model"], info)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(record, path)
    return path


def load_cached(model: str = "gemma-3-270m") -> tuple[Path, dict] | None:
    """This machine's cached bench for ``model`` (path and contents), or None."""
    path = cache_path(model)
    try:
        return path, json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None

"""`cai-bootstrap bench`: every figure in one process, one after another, and its table."""

from __future__ import annotations

import gc
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from cai_bootstrap.bench.core import bench_dpo, bench_generation, bench_sft, bench_stage, matmul_gflops
from cai_bootstrap.bench.settings import BenchSettings
from cai_bootstrap.bench.peers import KNOWN_PEERS, bench_peer
from cai_bootstrap.bench.workload import bench_fewshot, bench_sft_packed, fewshot_params, stage1_cases
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import cpu_supports_bf16, load_model


def run_bench(s: BenchSettings, progress_cb=print) -> dict:
    if s.quick:
        s = s.model_copy(update={"gen_prompts": min(s.gen_prompts, s.gen_batch_size),
                                 "naive_prompts": 2, "new_tokens": min(s.new_tokens, 24), "train_steps": 3,
                                 "dpo_pairs": 8, "stage": False, "fewshot_prompts": min(s.fewshot_prompts, 32)})
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
        progress_cb("stage-1 few-shot prompts: our engine vs batched generate")
        fewshot, stage1_records = bench_fewshot(engine, s)
        figures += fewshot
        skipped = {}
        peer_prompts = [p for _, _, p in stage1_cases(s.fewshot_prompts)] if s.peers else []
        for name, url in s.peers.items():
            progress_cb(f"the same prompts through {name} ({url})")
            figures.append(bench_peer(name, url, peer_prompts, fewshot_params(s), fewshot[0].value))
        for name, how in KNOWN_PEERS.items():
            if name not in s.peers:
                skipped[f"{name}_fewshot"] = f"no {name} server given; to measure it: {how}"
                progress_cb(f"{name}_fewshot skipped: {skipped[f'{name}_fewshot']}")
        tokenizer = engine.tokenizer
        del engine
        gc.collect()
        progress_cb("SFT: train_stage vs TRL SFTTrainer defaults")
        figures.append(bench_sft(s, peak, n_params, workdir, tokenizer))
        progress_cb("SFT on stage-1 records: padding-free vs padded batches")
        figures.append(bench_sft_packed(s, stage1_records, workdir))
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
        "skipped": skipped,
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
            if key.endswith("_share"):  # a rate beside the figure, not a baseline
                table.add_row(f"  {key.replace('_', ' ')}", f"{v:.0%}", "", "", "", "")
                continue
            table.add_row(f"  {key.replace('_', ' ')}", "", fmt(v), f"{f['value'] / v:.2f}x" if v else "-", "", "")
        for key, v in f.get("info", {}).items():
            table.add_row(f"  {key.replace('_', ' ')}", fmt(v), "", "", "", "")
    for fid in result.get("skipped", {}):
        table.add_row(f"{fid}: skipped", "-", "-", "-", "-", "-")
    table.caption = f"peak RSS {result['peak_rss_mib']:.0f} MiB, wall {result['wall_s']:.0f} s"
    return table


def save(result: dict, path: Path) -> None:
    from cai_bootstrap.jsonl import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=2) + "\n")

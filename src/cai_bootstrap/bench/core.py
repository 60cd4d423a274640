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
* the pipeline's real work (`bench.workload`): the stage-1 answerer's few-shot prompts
  vs batched ``model.generate``, and the verified records per minute they make;
* ``sft_packed``: SFT with padding-free batches (TRL ``padding_free``) vs today's padded
  batches, on the records that workload's verified samples make (the real length mix of a
  stage-1 first data), the same examples and steps; tokens/s of real (non-pad) tokens;
* the same few-shot prompts through peers the user runs (`bench.peers`: llama.cpp, vLLM CPU);
* optionally the wall time of one quick-preset stage; peak resident memory.

Every figure has a stable ``id`` in the JSON (``generation``, ``sft``, ``dpo``,
``fewshot_generation``, ``stage1_records_per_min``, ``sft_packed``, ``<peer>_fewshot``, ``stage``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cai_bootstrap.bench.settings import BenchSettings, Figure
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import load_model
from cai_bootstrap.prompt_format import format_prompt

TOPICS = ["the ocean", "volcanoes", "honey bees", "the moon", "bread", "trains", "music", "rivers",
          "deserts", "glass", "clocks", "owls", "tea", "bridges", "snow", "copper"]


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
    return Figure(id="generation", name=f"generation (batch {s.gen_batch_size}, {s.new_tokens} new tokens)", unit="tokens/s",
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


def train_ours(model_ref: str, records: list[dict], method: str, s: BenchSettings, workdir: Path,
               **overrides) -> tuple[float, int, float]:
    from cai_bootstrap.training import TrainSettings, train_stage

    loaded = load_model(model_ref)
    settings = TrainSettings(method=method, batch_size=s.train_batch_size, max_steps=s.train_steps,
                             max_length=s.train_seq_len * 2, save_checkpoints=False, epochs=100, **overrides)
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
    _, tokens, seconds = train_ours(s.model, records, "sft", s, workdir)
    ours = tokens / seconds
    base_s, base_tokens, _ = _trl_default(s.model, records, "sft", s, workdir)
    return Figure(id="sft", name=f"SFT LoRA (batch {s.train_batch_size} x ~{s.train_seq_len} tokens)", unit="tokens/s",
                  value=ours, naive=base_tokens / base_s, roofline=peak_gflops * 1e9 / (4 * n_params))


def bench_dpo(s: BenchSettings, workdir: Path, tokenizer) -> Figure:
    records = _train_records(s, s.dpo_pairs, tokenizer)
    steps = max(1, s.dpo_pairs // s.train_batch_size)
    s2 = s.model_copy(update={"train_steps": steps})
    wall, _, _ = train_ours(s.model, records, "dpo", s2, workdir)  # construction and reference pass included
    train_only_s, _, base_wall = _trl_default(s.model, records, "dpo", s2, workdir)
    return Figure(id="dpo", name=f"DPO ({s.dpo_pairs} pairs, model in -> adapter out)", unit="pairs/s",
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
    return Figure(id="stage", name="quick preset: skills stage-1 wall time", unit="s", value=time.perf_counter() - t0)

"""The pipeline's real work, timed against what a user would reach for: batched ``generate``.

* ``fewshot_generation``: the stage-1 answerer's prompts (the explicit families' training
  instances, 5 demos drawn per case as the builder draws them), 4 samples a prompt at the
  standard preset's stage-1 sampling (temperature 0.8, top-p 0.95, 40 new tokens), through
  `TransformersEngine` vs batched, left-padded ``model.generate`` with the same rows per
  batch; the baseline is the faster of its dynamic and static caches (both in ``extra``), and
  ``extra`` also has our engine without the shared prefill. Unit: completions per second.
* ``stage1_records_per_min``: of those samples, the cases with a passing sample (the
  builder's verifier and demo-copy guard: each such case is one record) per minute of
  generation and verification, ours vs the ``generate`` baseline's samples.
* ``sft_packed``: SFT on the records those samples make (the real length mix of a stage-1
  first data), padding-free batches vs the padded batches the pipeline uses by default.

``generate`` gets EOS but no stop strings (its ``stop_strings`` builds a table over the
262k-token vocabulary for every new set: tens of seconds), so its rows run on past
``### Instruction:`` until EOS or the token limit; its texts are cut there afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cai_bootstrap.bench.core import BenchSettings, Figure, train_ours
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.prompt_format import clean_response
from cai_bootstrap.stages.candidates import few_shot_prompt, guard_demos, pick
from cai_bootstrap.tasks.catalog import get_family

#: The explicit (stage-1) families, as the `skills` curriculum lists them.
STAGE1_FAMILIES = ["answer_question", "complete_sentence", "generate_fact", "respond_greeting", "one_sentence",
                   "name_one", "opposite", "list_three", "ask_question"]
SHOTS = 5


def stage1_cases(n: int) -> list[tuple]:
    """``n`` (family, instance, prompt) of the stage-1 families, interleaved as the builder's pool."""
    per_family = [(get_family(name), get_family(name).instances("train", n, 0)) for name in STAGE1_FAMILIES]
    cases = []
    for i in range(n):
        for family, instances in per_family:
            if i < len(instances) and len(cases) < n:
                inst = instances[i]
                cases.append((family, inst, few_shot_prompt(family.few_shot(), inst.instruction, inst.id, SHOTS)))
    return cases


def fewshot_params(s: BenchSettings) -> SamplingParams:
    return SamplingParams(n=4, temperature=0.8, top_p=0.95, top_k=64, max_new_tokens=s.fewshot_new_tokens, seed=0)


def _hf_generate(engine: TransformersEngine, prompts: list[str], params: SamplingParams, cache: str | None) -> list[list[str]]:
    """Batched ``model.generate``: the same prompts per batch as our engine, n return sequences each."""
    tok, model = engine.tokenizer, engine.model
    per_batch = max(1, engine.batch_size // params.n)
    kwargs = {"cache_implementation": cache} if cache else {}
    out: list[list[str]] = []
    torch.manual_seed(params.seed)
    with torch.inference_mode():
        for start in range(0, len(prompts), per_batch):
            batch = prompts[start : start + per_batch]
            enc = engine._encode(batch)
            rows = model.generate(
                **enc, do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                max_new_tokens=params.max_new_tokens, num_return_sequences=params.n,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kwargs,
            )[:, enc["input_ids"].shape[1] :]
            texts = tok.batch_decode(rows, skip_special_tokens=True)
            out += [[clean_response(t) for t in texts[i * params.n : (i + 1) * params.n]] for i in range(len(batch))]
    return out


def _timed(fn) -> tuple[list[list[str]], float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def _records(cases: list[tuple], samples: list[list[str]]) -> tuple[list[dict], float]:
    """The records the builder would keep (zero-shot prompt, first passing sample), and the
    seconds verification took."""
    t0 = time.perf_counter()
    records = []
    for (family, inst, _), texts in zip(cases, samples):
        verify = guard_demos(lambda text, family=family, inst=inst: family.verify(inst, text), family.few_shot())
        chosen = pick(texts, verify).chosen
        if chosen is not None:
            records.append({"prompt": inst.instruction, "chosen": texts[chosen], "family": family.name})
    return records, time.perf_counter() - t0


def bench_fewshot(engine: TransformersEngine, s: BenchSettings) -> tuple[list[Figure], list[dict]]:
    """The two figures, and the records our samples make (`sft_packed` trains on them)."""
    cases = stage1_cases(s.fewshot_prompts)
    prompts = [p for _, _, p in cases]
    params = fewshot_params(s)
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=2), progress=False)  # warm-up
    ours, ours_s = _timed(lambda: engine.generate(prompts, params, progress=False))
    shared, engine.min_shared_prefix = engine.min_shared_prefix, None
    _, unshared_s = _timed(lambda: engine.generate(prompts, params, progress=False))
    engine.min_shared_prefix = shared
    dynamic, dynamic_s = _timed(lambda: _hf_generate(engine, prompts, params, None))
    static, static_s = _timed(lambda: _hf_generate(engine, prompts, params, "static"))
    base, base_s = (dynamic, dynamic_s) if dynamic_s <= static_s else (static, static_s)
    completions = len(prompts) * params.n
    generation = Figure(
        id="fewshot_generation", unit="completions/s", value=completions / ours_s, naive=completions / base_s,
        name=f"stage-1 few-shot prompts ({len(prompts)} x {params.n} samples, {SHOTS} shots, "
             f"{params.max_new_tokens} new tokens) vs batched generate",
        extra={"ours_without_shared_prefill": completions / unshared_s,
               "generate_dynamic_cache": completions / dynamic_s, "generate_static_cache": completions / static_s},
    )
    ours_records, ours_verify_s = _records(cases, ours)
    base_records, base_verify_s = _records(cases, base)
    ours_kept, base_kept = len(ours_records), len(base_records)
    records = Figure(
        id="stage1_records_per_min", unit="records/min", name="stage-1 verified records per minute (same prompts)",
        value=60 * ours_kept / (ours_s + ours_verify_s), naive=60 * base_kept / (base_s + base_verify_s),
        extra={"ours_pass_share": ours_kept / len(cases), "generate_pass_share": base_kept / len(cases)},
    )
    return [generation, records], ours_records


def packed_records(records: list[dict], need: int) -> list[dict]:
    """``need`` SFT records: the workload's verified ones, then (for a model that passes few
    verifiers, such as the tiny test model) the stage-1 families' reference answers."""
    rows = list(records)
    for family, inst, _ in stage1_cases(need * 3):
        if len(rows) >= need:
            break
        ref = family.reference_output(inst)
        if ref:
            rows.append({"prompt": inst.instruction, "chosen": ref, "family": family.name})
    return rows[:need]


def bench_sft_packed(s: BenchSettings, records: list[dict], workdir: Path, repeats: int = 2) -> Figure:
    """Padding-free vs padded SFT on the same records and steps, alternating, best of ``repeats``.

    Both see the same examples in the same order, so the padded run's non-pad token count is
    the real token count of both (TRL counts a padding-free batch's tokens its own way)."""
    rows = packed_records(records, s.train_batch_size * s.train_steps)
    padded, packed, counted = [], [], {}
    for r in range(repeats):
        for free, times in ((False, padded), (True, packed)):
            out = workdir / f"sft-packed-{r}-{'free' if free else 'padded'}"  # a fresh directory: no resume
            _, tokens, seconds = train_ours(s.model, rows, "sft", s, out, padding_free=free)
            times.append(seconds)
            counted[free] = tokens
    real = counted[False]
    return Figure(
        id="sft_packed", unit="tokens/s", value=real / min(packed), naive=real / min(padded),
        name=f"SFT padding-free vs padded ({len(rows)} stage-1 records, batch {s.train_batch_size})",
        info={"model_written_records": float(min(len(records), len(rows))), "real_tokens": float(real),
               "padding_free_counted_tokens": float(counted[True]),
               "mean_tokens_per_record": real / len(rows) if rows else 0.0},
    )

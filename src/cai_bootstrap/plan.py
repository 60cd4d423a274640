"""``cai-bootstrap plan``: what a curriculum will cost before it runs.

Per stage: candidate prompts, generations, tokens to generate and to train, and hours
and cost on a hardware profile. Every number comes from the curriculum (resolved for
the preset) and the assumptions below; nothing is run.

Counting (per stage):

* candidates = ``examples`` / expected yield (the share of candidate prompts that end as
  a kept record). Yield, first found: the caller's ``yields`` (by stage name or kind);
  `MEASURED_YIELDS` (by kind); the kind's ``default_yield`` (`stages.registry.KINDS`);
  capped at ``examples x options.oversample`` (builders stop once enough records are kept).
* generations per candidate, by role, as the stage builders sample (options read with
  the builders' defaults): ``prompt_writer`` ``options.aux_n`` (default ``sampling.n``)
  of ``options.aux_max_new_tokens``; ``answerer`` ``sampling.n`` (the kind's
  ``answers_per_case`` where it sets one: 1 for ``constitutional``, whose builder answers
  once); ``critic`` like the writer (``critiques_per_case``: 1 for ``constitutional``); ``reviser`` ``sampling.n``; ``judge`` ``sampling.n`` of
  `JUDGE_TOKENS` tokens (an upper bound: judges see only undecided cases); any other
  role 1; a kind's `StageKind.plan_samples` replaces these for its roles (``task``: one
  critique of the cases ``options.revise_when`` picks, ``unsolved``: 1 - yield, and
  ``options.revise_n`` revisions of each). Every stage has an answerer, declared or not.
* tokens to generate = generations x their token limits: an upper bound, the cost of
  batched generation where a batch runs until its longest member stops. An answer's
  limit (answerer, reviser, a round's sample) is the kind's `StageKind.plan_answer_tokens`:
  ``sampling.max_new_tokens``, for ``task`` the mean of its families' own caps. Prompt
  prefill is not counted (small next to decoding for short prompts).
* evaluation: greedy answers to ``heldout`` cases per family (at least one family) of
  this stage and of every earlier stage; plus the kind's ``plan_eval_extra`` (a
  ``constitutional`` stage scores two models, before and after, on AdvBench, XSTest and
  IFEval within its ``options.benchmarks`` limits).
* tokens to train: ``records x epochs x`` record tokens (`RECORD_TOKENS` by kind, measured;
  else `PROMPT_TOKENS` + an answer's limit capped at ``training.max_length``), records
  plus ``replay`` x as many replayed from earlier stages; DPO pairs count twice (chosen
  and rejected) plus one reference forward pass per pair per stage (a third of a
  training step's cost per token); ``sft+dpo`` counts both.
* setup: a fixed time per stage (`HardwareProfile.setup_s_per_stage`: 10 min on a GPU for
  loading 7B models, starting vLLM, merging and saving; none on the CPU) plus
  ``run_overhead_s`` per training run (6.4 s on the CPU, measured).
* retries (``retry.max_retries``, stages without rounds), counted as if every one runs: each
  tops the kept records up to ``examples x data_multiplier^k`` (candidates within the
  oversample cap over all attempts) and trains with ``extra_epochs`` more, then evaluates.
* rounds of self-training (``rounds.count``), counted as if every round runs (the gate
  never passes early): per round ``rounds.instances x rounds.samples`` generations, one
  more evaluation (plus the validation split), and a training run on the first records plus
  every round's kept ones, estimated at `ROUND_KEEP_SHARE` of ``rounds.keep`` per instance
  (`ROUND_KEEP_SHARE_BY_KIND` where the kind's was measured apart: ``task``).
* not counted: writing reports; gates that pass early (rounds and retries are upper bounds).

Hardware profiles (`PROFILES`): the GPU ones assume a 7B base model, generation on vLLM
and QLoRA training; they are derived from public peak figures with stated efficiencies
(see each profile's ``source``) and are estimates, not measurements. ``cpu`` is this
development machine with the embedded 270M model: bench's rates and the shares fitted to
measured runs (`cai_bootstrap.plan_measured`: runs/skills-std1; for ``task`` stages their own
shares, `KIND_SHARES`, from runs/tasks-std3 and -std6). Pass ``bench_path`` (a JSON written by
``cai-bootstrap bench``) to replace a profile's rates with measured ones (see `read_bench`); they
get the pipeline's shares measured against bench on the CPU (``gen_share``, ``train_share``,
``kind_shares``, ``run_overhead_s``). Every measured figure and its source is in `plan_measured`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


from cai_bootstrap.config import ConfigError, Curriculum, StageSpec
from cai_bootstrap.plan_measured import (
    CPU_BENCH, GEN_SHARE, KIND_SHARES, MEASURED_YIELDS, RECORD_TOKENS, ROUND_KEEP_SHARE, ROUND_KEEP_SHARE_BY_KIND,
    RUN_OVERHEAD_S, TRAIN_SHARE,
)
from cai_bootstrap.stages.registry import get_kind, load_curriculum

#: Mean prompt length (tokens) of a training record, instruction headers included.
PROMPT_TOKENS = 80
#: Tokens a judge call costs when it generates (the base `Engine.choose` reads 8 tokens).
JUDGE_TOKENS = 8
# Public peak figures the GPU profiles are derived from.
_H100_BW, _H100_FLOPS = 3.35e12, 989e12  # H100 SXM 80GB: HBM3 bytes/s, dense bf16 FLOP/s (NVIDIA datasheet)
_A100_BW, _A100_FLOPS = 2.0e12, 312e12  # A100 SXM 80GB: HBM2e bytes/s, dense bf16 FLOP/s (NVIDIA datasheet)
_PARAMS_7B = 7.2e9
_DECODE_BATCH, _DECODE_EFF = 64, 0.25  # concurrent sequences; share of the bandwidth roofline reached
_TRAIN_EFF = 0.15  # model FLOP utilisation of QLoRA with gradient checkpointing

def _decode_rate(bandwidth: float) -> float:
    return round(_DECODE_BATCH * bandwidth / (2 * _PARAMS_7B) * _DECODE_EFF, -2)


def _train_rate(flops: float) -> float:
    return round(flops * _TRAIN_EFF / (6 * _PARAMS_7B), -2)


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    gen_tokens_per_s: float
    train_tokens_per_s: float
    #: DPO training tokens/s (chosen + rejected tokens); None: ``train_tokens_per_s`` plus the reference pass.
    dpo_tokens_per_s: float | None = None
    gpu: bool = True
    model: str = "7B base"
    #: Fixed cost per stage: loading each role's model, starting engines, merging and saving adapters.
    setup_s_per_stage: float = 600.0
    source: str = ""
    #: The pipeline's rates as shares of the profile's (bench-comparable) ones, and a fixed cost per
    #: training run; 1, 1, 0 where the rates are already the pipeline's (the derived GPU profiles).
    gen_share: float = 1.0
    train_share: float = 1.0
    run_overhead_s: float = 0.0
    #: (gen_share, train_share) by stage kind where the pipeline's shares differ by kind (`KIND_SHARES`)
    kind_shares: dict[str, tuple[float, float]] = field(default_factory=dict)


PROFILES: dict[str, HardwareProfile] = {
    "h100": HardwareProfile(
        "h100", _decode_rate(_H100_BW), _train_rate(_H100_FLOPS),
        source=(
            "derived, not measured: generation = 64 sequences x 3.35 TB/s / 14.4 GB of bf16 weights x 25% "
            "(vLLM decoding is memory-bound; LoRA and scheduling overhead); training = 989 TFLOP/s x 15% MFU / "
            "(6 x 7.2e9 FLOP per token, QLoRA with gradient checkpointing)"
        ),
    ),
    "a100": HardwareProfile(
        "a100", _decode_rate(_A100_BW), _train_rate(_A100_FLOPS),
        source="derived as for h100 from A100 80GB figures (2.0 TB/s, 312 TFLOP/s bf16)",
    ),
    "cpu": HardwareProfile(
        "cpu", *CPU_BENCH[:2], dpo_tokens_per_s=CPU_BENCH[2], gpu=False, model="gemma-3-270m",
        setup_s_per_stage=0.0, gen_share=GEN_SHARE, train_share=TRAIN_SHARE, run_overhead_s=RUN_OVERHEAD_S,
        kind_shares=KIND_SHARES,
        source=(
            "rates: `cai-bootstrap bench --quick` on the 2-core development CPU (2026-12-04, docs/performance.md); "
            "pipeline shares and overheads fitted to the measured standard runs runs/skills-std1 and, for task "
            "stages, runs/tasks-std3 and -std6 (see plan_measured.py)"
        ),
    ),
}


@dataclass
class PlanRow:
    stage: str
    kind: str
    method: str
    examples: int
    candidates: int
    generations: int
    gen_tokens: int
    train_tokens: int
    gen_hours: float
    train_hours: float
    setup_hours: float
    hours: float
    cost: float | None
    profile: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- bench JSON

_RATE_KEYS = ("tokens_per_s", "tok_per_s", "tok_s", "tokens_per_second")
_SKIP_KEYS = ("naive", "baseline", "roofline", "ratio", "peak", "default")
_SECTIONS = {
    "gen": ("generation", "generate", "gen"),
    "sft": ("sft", "training", "train"),
    "dpo": ("dpo",),
}


def _rates_under(node: Any, path: tuple[str, ...] = ()) -> list[float]:
    found: list[float] = []
    if isinstance(node, dict):
        for key, value in node.items():
            k = str(key).lower()
            if any(s in k for s in _SKIP_KEYS):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if any(r in k for r in _RATE_KEYS) and value > 0:
                    found.append(float(value))
            else:
                found += _rates_under(value, path + (k,))
    elif isinstance(node, list):
        for item in node:
            found += _rates_under(item, path)
    return found


def _section_rate(data: dict, names: tuple[str, ...]) -> float | None:
    for key, value in data.items():
        if str(key).lower() in names:
            rates = _rates_under(value)
            if rates:
                return max(rates)
    for flat in (f"{names[0]}_tokens_per_s", f"{names[-1]}_tokens_per_s"):
        if isinstance(data.get(flat), (int, float)):
            return float(data[flat])
    return None


def _figures_rates(data: dict) -> dict[str, float]:
    """Rates from ``cai-bootstrap bench`` output: the figures with id (older files: name)
    generation / sft / dpo."""
    rates: dict[str, float] = {}
    seq = float((data.get("settings") or {}).get("train_seq_len") or 128)
    for fig in data.get("figures") or []:
        unit, value = fig.get("unit"), fig.get("value")
        if fig.get("id"):  # exact ids: `sft_packed` is not the pipeline's default SFT rate
            name = {"generation": "generation", "sft": "sft", "dpo": "dpo"}.get(str(fig["id"]), "")
        else:
            name = str(fig.get("name", "")).lower()
        if not name or not isinstance(value, (int, float)) or value <= 0:
            continue
        if name.startswith("generation") and unit == "tokens/s":
            rates["gen"] = max(rates.get("gen", 0.0), float(value))
        elif name.startswith("sft") and unit == "tokens/s":
            rates["sft"] = float(value)
        elif name.startswith("dpo") and unit == "pairs/s":
            # bench pairs: chosen and rejected sequences of ~train_seq_len tokens each
            rates["dpo"] = float(value) * 2 * seq
        elif name.startswith("dpo") and unit == "tokens/s":
            rates["dpo"] = float(value)
    return rates


def read_bench(path: str | Path) -> dict[str, float]:
    """Measured rates from a ``bench`` JSON: ``{"gen": tok/s, "sft": tok/s, "dpo": tok/s}`` (keys present).

    Reads ``cai-bootstrap bench`` output (``figures`` named "generation ...", "SFT ..."
    in tokens/s and "DPO ..." in pairs/s, converted with 2 x ``settings.train_seq_len``
    tokens per pair; the pipeline's own figures, not the naive baselines). Other JSON:
    under a top-level ``generation`` (or ``generate``/``gen``), ``sft`` (or
    ``training``/``train``) and ``dpo`` section, every number whose key contains
    ``tokens_per_s`` (or ``tok_s``), skipping naive-baseline, roofline, ratio and peak
    figures, and the best is taken (e.g. the best batch size); flat keys
    ``gen_tokens_per_s``/``sft_tokens_per_s``/``dpo_tokens_per_s`` work too.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read bench results: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of bench results")
    found = _figures_rates(data)
    for name, names in _SECTIONS.items():
        if name not in found:
            rate = _section_rate(data, names)
            if rate:
                found[name] = rate
    if "gen" not in found and "sft" not in found:
        raise ConfigError(f"{path}: no generation or SFT tokens/s found (see cai_bootstrap.plan.read_bench)")
    return found


def resolve_profile(hardware: str | HardwareProfile = "cpu", bench_path: str | Path | None = None) -> HardwareProfile:
    """A named profile, with its rates replaced by measured ones where ``bench_path`` is given."""
    if isinstance(hardware, HardwareProfile):
        profile = hardware
    else:
        name = "cpu" if hardware == "measured" else hardware
        if name not in PROFILES:
            raise ConfigError(f"unknown hardware profile {hardware!r}; use one of {', '.join(PROFILES)} or measured")
        profile = PROFILES[name]
        if hardware == "measured" and bench_path is None:
            raise ConfigError("hardware 'measured' needs a bench JSON (cai-bootstrap bench --out FILE)")
    if bench_path is None:
        return profile
    rates = read_bench(bench_path)
    return replace(
        profile,
        name=f"{profile.name} (measured)",
        gen_tokens_per_s=rates.get("gen", profile.gen_tokens_per_s),
        train_tokens_per_s=rates.get("sft", profile.train_tokens_per_s),
        dpo_tokens_per_s=rates.get("dpo", profile.dpo_tokens_per_s),
        gen_share=GEN_SHARE, train_share=TRAIN_SHARE, run_overhead_s=RUN_OVERHEAD_S,  # bench's rates: the pipeline's shares
        kind_shares=KIND_SHARES,
        source=f"measured: {bench_path}" + ("" if len(rates) == 3 else f" (missing ones from {profile.name})"),
    )


# ---------------------------------------------------------------- counting


def _options(spec: StageSpec) -> dict:
    """The stage's options with its builder's defaults filled in (validated as the builder does)."""
    return get_kind(spec.kind).plan_options(spec)


def _opt(spec: StageSpec, key: str, default: Any) -> Any:
    value = _options(spec).get(key, default)
    return default if value is None else value


def _yield(spec: StageSpec, yields: dict[str, float]) -> float:
    if spec.name in yields or spec.kind in yields:
        return yields.get(spec.name, yields.get(spec.kind))
    return MEASURED_YIELDS.get(spec.kind, get_kind(spec.kind).default_yield)


def _candidates(spec: StageSpec, yields: dict[str, float]) -> int:
    expected = math.ceil(spec.examples / _yield(spec, yields))
    if spec.name in yields or spec.kind in yields:
        return expected
    oversample = _opt(spec, "oversample", None)  # a cap: builders stop once enough records are kept
    return min(expected, math.ceil(spec.examples * float(oversample))) if oversample else expected


def _generation_counts(spec: StageSpec, candidates: int, yields: dict[str, float]) -> tuple[int, int]:
    """(generations, tokens) to build the stage's data."""
    n = spec.sampling.n
    kind = get_kind(spec.kind)
    tokens_each = kind.plan_answer_tokens(spec)
    aux_n = _opt(spec, "aux_n", n)
    aux_tokens = _opt(spec, "aux_max_new_tokens", spec.sampling.max_new_tokens)
    per_role = {  # role -> (generations per candidate, tokens each), as the builders sample
        "prompt_writer": (aux_n, aux_tokens),
        "answerer": (kind.answers_per_case or n, tokens_each),
        "critic": (kind.critiques_per_case or aux_n, aux_tokens),
        "reviser": (n, tokens_each),
        "judge": (n, JUDGE_TOKENS),
    } | kind.plan_samples(spec, _yield(spec, yields))
    gens = toks = 0
    for role in sorted(set(spec.roles) | {"answerer"}):
        count, tokens = per_role.get(role, (1, tokens_each))
        gens += round(candidates * count)
        toks += round(candidates * count) * tokens
    return gens, toks


def _eval_counts(curriculum: Curriculum, index: int) -> tuple[int, int]:
    gens = toks = 0
    for spec in curriculum.stages[: index + 1]:
        cases = spec.heldout * max(1, len(spec.families))
        gens += cases
        toks += cases * spec.sampling.max_new_tokens
    spec = curriculum.stages[index]
    extra_gens, extra_toks = get_kind(spec.kind).plan_eval_extra(spec)
    return gens + extra_gens, toks + extra_toks


def _attempt_counts(spec: StageSpec, yields: dict[str, float]) -> tuple[int, int, list[tuple[int, float]]]:
    """(generations, tokens) that rounds or retries add, and (records, epochs) of every training run."""
    r, epochs = spec.rounds, spec.training.epochs
    if r.count:
        per = r.instances or spec.examples
        gens = r.count * per * r.samples
        kept = round(per * r.keep * ROUND_KEEP_SHARE_BY_KIND.get(spec.kind, ROUND_KEEP_SHARE))
        tokens = gens * get_kind(spec.kind).plan_answer_tokens(spec)
        return gens, tokens, [(spec.examples + a * kept, epochs) for a in range(r.count + 1)]
    gens = toks = 0
    runs = [(spec.examples, epochs)]
    oversample = _opt(spec, "oversample", None)
    # measured (runs/skills-q6 stage 5): the oversample cap holds over all attempts (120 = 40 x 3 candidates)
    left = math.ceil(spec.examples * float(oversample)) - _candidates(spec, yields) if oversample else math.inf
    for a in range(1, spec.retry.max_retries + 1):  # a retry tops the kept records up to examples x multiplier^a
        target = round(spec.examples * spec.retry.data_multiplier**a)
        more = spec.model_copy(update={"examples": max(1, target - runs[-1][0])})
        cands = min(_candidates(more, yields), left)
        left -= cands
        g, t = _generation_counts(more, cands, yields) if cands > 0 else (0, 0)
        gens, toks = gens + g, toks + t
        runs.append((target, epochs + a * spec.retry.extra_epochs))
    return gens, toks, runs


def _train_counts(spec: StageSpec, records: int, epochs: float, replay: bool) -> tuple[int, int, int]:
    """(sft tokens, dpo tokens, dpo reference tokens) of one training run on ``records`` kept records
    (plus ``spec.replay`` x as many replayed ones where earlier stages exist)."""
    t = spec.training
    seq = RECORD_TOKENS.get(spec.kind) or min(t.max_length, PROMPT_TOKENS + get_kind(spec.kind).plan_answer_tokens(spec))
    per_epoch = records * (1 + (spec.replay if replay else 0.0)) * seq
    sft = round(per_epoch * epochs) if "sft" in t.method else 0
    dpo = round(2 * per_epoch * epochs) if "dpo" in t.method else 0
    ref = round(2 * per_epoch) if "dpo" in t.method else 0
    return sft, dpo, ref


def plan(
    curriculum: str | Curriculum,
    preset: str = "full",
    hardware: str | HardwareProfile = "cpu",
    gpu_hour_price: float = 1.74,
    *,
    bench_path: str | Path | None = None,
    yields: dict[str, float] | None = None,
) -> list[PlanRow]:
    """One `PlanRow` per stage of ``curriculum`` (a name, a YAML path, or a loaded one).

    ``cost`` is hours x ``gpu_hour_price`` (dollars per GPU-hour) on GPU profiles, None on
    the CPU profile. See the module docstring for what is counted and assumed.
    """
    cur = curriculum if isinstance(curriculum, Curriculum) else load_curriculum(curriculum, preset)
    profile = resolve_profile(hardware, bench_path)
    yields = yields or {}
    for key, value in yields.items():
        if not 0 < value <= 1:
            raise ConfigError(f"yield for {key!r} must be in (0, 1], got {value}")
    dpo_rate = profile.dpo_tokens_per_s
    rows = []
    for index, spec in enumerate(cur.stages):
        candidates = _candidates(spec, yields)
        gens, gen_toks = _generation_counts(spec, candidates, yields)
        eval_gens, eval_toks = _eval_counts(cur, index)
        more_gens, more_toks, runs = _attempt_counts(spec, yields)
        evaluations = len(runs)  # one evaluation (and validation pass) per training run
        # a validation pass per adapter scale tried (the chosen scale's rows are the attempt's score)
        val_cases = spec.validation * max(1, len(spec.families)) * len(set(spec.adapter_scales))
        eval_gens += val_cases
        eval_toks += val_cases * spec.sampling.max_new_tokens
        gens, gen_toks = gens + more_gens + evaluations * eval_gens, gen_toks + more_toks + evaluations * eval_toks
        sft = dpo = ref = 0
        for records, epochs in runs:
            s_, d_, r_ = _train_counts(spec, records, epochs, replay=index > 0)
            sft, dpo, ref = sft + s_, dpo + d_, ref + r_
        gen_share, train_share = profile.kind_shares.get(spec.kind, (profile.gen_share, profile.train_share))
        gen_h = gen_toks / (profile.gen_tokens_per_s * gen_share) / 3600
        train_rate = profile.train_tokens_per_s * train_share
        train_s = sft / train_rate
        if dpo:
            train_s += dpo / (dpo_rate * train_share) if dpo_rate else (dpo + ref / 3) / train_rate
        train_h = train_s / 3600
        setup_h = (profile.setup_s_per_stage + len(runs) * profile.run_overhead_s) / 3600
        hours = gen_h + train_h + setup_h
        rows.append(PlanRow(
            stage=spec.name, kind=spec.kind, method=spec.training.method, examples=spec.examples,
            candidates=candidates, generations=gens, gen_tokens=gen_toks, train_tokens=sft + dpo,
            gen_hours=gen_h, train_hours=train_h, setup_hours=setup_h, hours=hours,
            cost=round(hours * gpu_hour_price, 2) if profile.gpu else None, profile=_describe(profile, gpu_hour_price),
        ))
    return rows


def _describe(profile: HardwareProfile, price: float) -> str:
    text = (f"{profile.name} ({profile.model}): {profile.gen_tokens_per_s:,.0f} generated tok/s, "
            f"{profile.train_tokens_per_s:,.0f} trained tok/s, {profile.setup_s_per_stage / 60:g} min setup per stage")
    if profile.gpu:
        text += f", ${price:.2f}/GPU-hour"
    return f"{text}. {profile.source}"


def plan_totals(rows: list[PlanRow]) -> PlanRow:
    """The sum of ``rows`` as a row named "total"."""
    costs = [r.cost for r in rows if r.cost is not None]
    return PlanRow(
        stage="total", kind="", method="", examples=sum(r.examples for r in rows),
        candidates=sum(r.candidates for r in rows), generations=sum(r.generations for r in rows),
        gen_tokens=sum(r.gen_tokens for r in rows), train_tokens=sum(r.train_tokens for r in rows),
        gen_hours=sum(r.gen_hours for r in rows), train_hours=sum(r.train_hours for r in rows),
        setup_hours=sum(r.setup_hours for r in rows), hours=sum(r.hours for r in rows),
        cost=round(sum(costs), 2) if costs else None,
        profile=rows[0].profile if rows else "",
    )


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def plan_table(rows: list[PlanRow], title: str | None = None):
    """A `rich.table.Table` of ``rows`` with a total row; the caption states the assumptions."""
    from rich.table import Table

    table = Table(title=title, caption=rows[0].profile if rows else None, caption_justify="left")
    for header in ("stage", "kind", "train", "examples", "candidates", "generations", "gen tokens",
                   "train tokens", "gen time", "train time", "setup", "time", "cost"):
        table.add_column(header, justify="left" if header in ("stage", "kind", "train") else "right")

    def cells(r: PlanRow) -> list[str]:
        return [r.stage, r.kind, r.method, f"{r.examples:,}", f"{r.candidates:,}", f"{r.generations:,}",
                f"{r.gen_tokens:,}", f"{r.train_tokens:,}", _hours(r.gen_hours), _hours(r.train_hours),
                _hours(r.setup_hours), _hours(r.hours), "-" if r.cost is None else f"${r.cost:,.2f}"]

    for row in rows:
        table.add_row(*cells(row))
    if rows:
        table.add_section()
        table.add_row(*cells(plan_totals(rows)), style="bold")
    return table

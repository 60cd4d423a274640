"""Rounds of self-training inside a stage: the stage's own model writes more verified data.

Expert iteration (ReST-EM, Singh et al. 2024; rejection-sampling fine-tuning, Yuan et al.
2023; STaR): after the stage's first training, the stage's *own* model answers fresh
training instances ``rounds.samples`` times each, the families' rule verifiers keep up to
``rounds.keep`` distinct passing answers per instance, and the stage trains again, from its
parent, on the union of every round's records. Round ``r`` (attempt ``r``) is written by the
model of attempt ``r - 1``; each record names it (``round``, ``round_model``,
``provenance.chosen.by``, ``provenance.chosen.model_attempt``). Labelled families' round
records are balanced per label before training (`balance_labels`).

The prompt is the instance's instruction in the project's prompt format, zero-shot: the
stage model was trained on exactly that format, so it needs no demonstrations.

Fresh means: never in the first training's candidate pool, never in an earlier round, never
of a validation topic (`stages.validation`), and (as every train instance) never a held-out case.
A stage with ``rounds.reuse`` (small seed banks: the `tasks` curriculum) answers its first
training's instances again once a family's fresh ones run out, as ReST-EM does every iteration.
Kinds other than the skill builders name their first pool and per-family sampling through
`StageKind.round_first_pool` and `StageKind.round_sampling` (the ``task`` kind does).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from cai_bootstrap.config import StageSpec
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.runs.layout import StagePaths
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.kind import StageKind
from cai_bootstrap.stages.training_facts import withheld_topics
from cai_bootstrap.stages.validation import withheld
from cai_bootstrap.tasks.bank import round_robin
from cai_bootstrap.tasks.base import Instance, TaskFamily


def is_round(spec: StageSpec, attempt: int) -> bool:
    """Attempt ``attempt`` of ``spec`` is a self-training round (attempt 0 never is)."""
    return 0 < attempt <= spec.rounds.count


def round_key(instance_id: str, round_index: int, answer: int) -> str:
    return f"{instance_id}@r{round_index}#{answer}"


def per_round(spec: StageSpec) -> int:
    return spec.rounds.instances or spec.examples


def round_instances(
    ctx: StageContext, round_index: int, kind: StageKind | None = None,
) -> list[tuple[TaskFamily, Instance]]:
    """The round's fresh training instances (deterministic: the same on resume).

    ``kind.round_first_pool`` names the first training's instances (default: the skill
    builders' `candidates.train_pool`). With ``rounds.reuse`` a family's fresh instances are
    followed by its first-pool instances, over and over, so a small seed bank still fills
    every round (no instance twice in one round).
    """
    first_pool = (kind.round_first_pool(ctx.for_attempt(0)) if kind is not None else None)
    if first_pool is None:
        first_pool = C.train_pool(ctx.for_attempt(0))
    used = {inst.id for _, inst in first_pool}
    held = withheld_topics(ctx.run_dir, ctx.spec, ctx.settings.seed)
    want = per_round(ctx.spec) * round_index  # rounds 1..r take consecutive slices of one fresh list
    seed = derive_seed(ctx.settings.seed, ctx.spec.name, "rounds")
    per_family = []
    for fam in C.families(ctx):
        draw = len(first_pool) + want + len(used) + (want if held else 0)
        fresh = [i for i in fam.instances("train", draw, derive_seed(seed, fam.name))
                 if i.id not in used and not withheld(i, held)]
        if ctx.spec.rounds.reuse:
            again = [i for f, i in first_pool if f.name == fam.name and "#" not in i.id and not withheld(i, held)]
            if again:
                fresh += again * (want // len(again) + 1)
        per_family.append([(fam, i) for i in fresh])
    if ctx.spec.rounds.allocate == "shortfall":
        names = [fam.name for fam in C.families(ctx)]
        ordered = shortfall_slice(ctx.spec, ctx.sink.records(), round_index, names, per_family)
    else:
        ordered = round_robin(per_family)[per_round(ctx.spec) * (round_index - 1) : want]
    seen: set[str] = set()
    return [(f, i) for f, i in ordered if not (i.id in seen or seen.add(i.id))]


def shortfall_slice(
    spec: StageSpec, records: list[dict], round_index: int, names: list[str],
    per_family: list[list[tuple[TaskFamily, Instance]]],
) -> list[tuple[TaskFamily, Instance]]:
    """Round ``round_index``'s instances under ``rounds.allocate: shortfall``, in turn by family.

    Why: with even rounds a family that already has its share of records (factual QA at `tasks`
    stage 1: 240 from the first data, every instance passing) takes as many instances as one that
    has a quarter of it (summarization: 54). Round ``k`` splits its instances in proportion to each
    family's shortfall below ``examples / families`` among the records attempt ``k - 1`` trained on;
    each family's instances are consecutive slices of its fresh list, so the split of every earlier
    round is recomputed from the records written before it (the same on resume)."""
    goal = math.ceil(spec.examples / max(1, len(per_family)))
    offsets = dict.fromkeys(names, 0)
    shares: dict[str, int] = {}
    for k in range(1, round_index + 1):
        trained = Counter(r["family"] for r in trained_records(records, spec, k - 1))
        capacity = {n: len(pool) - offsets[n] for n, pool in zip(names, per_family)}
        shares = split_by_weight(per_round(spec), {n: max(0, goal - trained[n]) for n in names}, capacity)
        if k < round_index:
            offsets = {n: offsets[n] + shares[n] for n in names}
    return round_robin([pool[offsets[n] : offsets[n] + shares[n]] for n, pool in zip(names, per_family)])


def split_by_weight(total: int, weights: dict[str, int], capacity: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (Sainte-Lague: each unit to the largest weight /
    (2 share + 1), ties to the first name), no share above its capacity; once every weighted name is
    full or no weight is positive, the rest goes evenly to the names with room."""
    shares = dict.fromkeys(weights, 0)
    for _ in range(total):
        room = [n for n in weights if shares[n] < capacity.get(n, 0)]
        if not room:
            break
        weighted = [n for n in room if weights[n] > 0]
        best = max(weighted or room, key=lambda n: (weights[n] or 1) / (2 * shares[n] + 1))
        shares[best] += 1
    return shares


def build_round(ctx: StageContext, round_index: int, kind: StageKind | None = None) -> dict:
    """Write round ``round_index``'s records; return its statistics (pass@k on fresh instances).

    ``kind.round_sampling`` may set per-family sampling (a family's token need); instances
    with equal settings are generated together."""
    spec, opts = ctx.spec, ctx.spec.rounds
    items = round_instances(ctx, round_index, kind)
    model = ctx.engine("self")
    weights = StagePaths(ctx.run_dir, spec.name).installed_weights(round_index - 1)  # the writer, named on each record
    writer = {"stage": spec.name, "attempt": round_index - 1, "adapter": weights.relative_to(ctx.run_dir).as_posix()}
    stats = {"round": round_index, "instances": len(items), "with_pass": 0, "kept": 0, "samples": opts.samples}
    for _, chunk, seed in ctx.chunks(items, lambda item: [round_key(item[1].id, round_index, 0)], until_enough=False):
        groups: dict[str, list[int]] = {}
        extra: dict[str, dict] = {}
        for k, (fam, _) in enumerate(chunk):
            over = kind.round_sampling(ctx, fam) if kind is not None else {}
            key = repr(sorted(over.items()))
            groups.setdefault(key, []).append(k)
            extra[key] = over
        for key, idx in groups.items():
            group_seed = seed if not extra[key] else derive_seed(seed, key)
            params = ctx.sampling(seed=group_seed, n=opts.samples, temperature=opts.temperature, **extra[key])
            part = [chunk[k] for k in idx]
            prompts = [format_prompt(inst.instruction) for _, inst in part]
            outputs = model.generate(prompts, params, desc=f"{spec.name} round {round_index}")
            for (fam, inst), prompt, samples in zip(part, prompts, outputs):
                result = C.pick(samples, lambda s, fam=fam, inst=inst: fam.verify(inst, s), spec.prefer_answer,
                                  inst.instruction)
                for record in round_records(ctx, fam, inst, result, prompt, params, round_index, writer):
                    ctx.sink.write(record)
    for rec in ctx.sink.records():
        if rec.get("round") == round_index:
            stats["kept"] += int(bool(rec.get("kept")))
            stats["with_pass"] += int(bool(rec.get("kept")) and rec["key"].endswith("#0"))
    stats["pass_at_k"] = stats["with_pass"] / stats["instances"] if stats["instances"] else None
    return stats


def round_records(
    ctx: StageContext, fam: TaskFamily, inst: Instance, result: C.Pick, prompt: str, params: SamplingParams,
    round_index: int, writer: dict,
) -> list[dict]:
    """Up to ``rounds.keep`` records of distinct passing answers, or one dropped record; each names
    ``writer``, the stage model of the previous attempt as installed."""
    chosen = result.passing[: ctx.spec.rounds.keep] or [None]
    out = []
    for j, index in enumerate(chosen):
        pick = C.Pick(samples=result.samples, verdicts=result.verdicts, chosen=index, rejected=result.rejected,
                      passing=result.passing)
        record = C.sample_record(ctx, fam, inst, pick, "self", prompt, params,
                                 provenance={"prompt": C.seed_provenance("hand-written template x seed bank")})
        for side in ("chosen", "rejected"):
            if side in record["provenance"]:
                record["provenance"][side]["model_attempt"] = round_index - 1
        record.update(key=round_key(inst.id, round_index, j), instance=inst.id, round=round_index,
                      round_model=dict(writer))
        if j > 0:
            record["candidates"] = []  # every sample is listed once, on the instance's first record
        out.append(record)
    return out


def balance_labels(records: list[dict]) -> list[dict]:
    """Round records of labelled families (reference ``label``), at most as many per label as
    the family's rarest label has, in file order.

    Why: a round keeps only the answers the model got right, so a model that leans to "No."
    keeps mostly No-cases, and training on them teaches it the constant (seen at stage 4).
    First-round data is balanced by construction and is left alone.
    """
    by_family: dict[str, dict[str, int]] = {}
    for r in records:
        label = (r.get("reference") or {}).get("label")
        if label is not None:
            counts = by_family.setdefault(r["family"], {})
            counts[str(label)] = counts.get(str(label), 0) + 1
    caps = {fam: min(c.values()) if len(c) > 1 else 0 for fam, c in by_family.items()}
    used: dict[tuple[str, str], int] = {}
    out = []
    for r in records:
        label = (r.get("reference") or {}).get("label")
        if label is None:
            out.append(r)
            continue
        key = (r["family"], str(label))
        if used.get(key, 0) < caps[r["family"]]:
            used[key] = used.get(key, 0) + 1
            out.append(r)
    return out


def training_records(paths: StagePaths, spec: StageSpec, attempt: int) -> list[dict]:
    """The records attempt ``attempt`` trains on (before replay): the first N kept records, N = the
    attempt's data target; in a stage with rounds, the first training's ``examples`` records plus
    every kept record of rounds 1..``attempt``, labels balanced (`balance_labels`); computed records
    (`stages.computed`) always, beyond the target."""
    return trained_records(iter_jsonl(paths.data), spec, attempt)


def trained_records(records: Iterable[dict], spec: StageSpec, attempt: int) -> list[dict]:
    """`training_records` of records already read."""
    kept = [r for r in records if r.get("kept") and r.get("chosen")]
    computed = [r for r in kept if r.get("computed")]  # options.computed_answers: beyond `examples`
    kept = [r for r in kept if not r.get("computed")]
    if spec.rounds.count:
        first = [r for r in kept if not r.get("round")][: spec.examples]
        return first + computed + balance_labels([r for r in kept if 0 < (r.get("round") or 0) <= attempt])
    target = int(round(spec.examples * (spec.retry.data_multiplier**attempt)))
    return kept[:target] + computed

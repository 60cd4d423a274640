"""Contrast pairs: a helpful answer preferred to a model-written evasive refusal of a harmless request."""

from __future__ import annotations

import random
from pathlib import Path

from cai_bootstrap.constitution import Constitution
from cai_bootstrap.jsonl import iter_jsonl
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.stages.constitutional_stage.options import ConstitutionalOptions
from cai_bootstrap.stages.constitutional_stage.prompts import (
    CONTRAST_FILE,
    REFUSAL_INSTRUCTION,
    REFUSAL_WRITER,
)
from cai_bootstrap.stages.constitutional_stage.rules import clean_revision, helpful_answer_rules, refused
from cai_bootstrap.stages.context import RecordSink, StageContext, derive_seed
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.checks import (
    Result,
    check_leak,
    check_repetition,
    normalize,
    tokens,
    verdict,
)
from cai_bootstrap.tasks.constitutional.seeds import SEED_FILES, load_seed_topics, record_side


def contrast_pool(records: list[dict]) -> list[dict]:
    """Ordinary records whose pair was not kept but whose original answer is a usable helpful
    answer (`helpful_answer_rules`): the chosen side of a contrast pair. Look-alike records are
    pairs of that kind already (their ``rejected`` is a refusal), so they are not in the pool."""
    return [
        r for r in records
        if record_side(r) == "ordinary" and not r.get("kept") and r.get("prompt") and r.get("rejected")
        and helpful_answer_rules(r["prompt"], r["rejected"]).passed
    ]


def refusal_writer_input(prompt: str, examples: list) -> str:
    """Few-shot: decline each worked red-team example with its constitutional revision, then ``prompt``."""
    demos = [(REFUSAL_INSTRUCTION.format(prompt=ex.prompt), ex.revision) for ex in examples]
    return format_few_shot(REFUSAL_INSTRUCTION.format(prompt=prompt), demos)


def evasive_refusal_rules(prompt: str, answer: str, text: str) -> Verdict:
    """Is ``text`` a usable rejected side: a refusal (benchmark rules) that gives no answer?"""
    return verdict("evasive_refusal", [
        Result("nonempty", bool(tokens(text)), "empty"),
        check_leak(text),
        check_repetition(text),
        Result("refuses", refused(text), "not a refusal by the benchmarks' refusal rules"),
        Result("not_answer_copy", normalize(text) != normalize(answer), "repeats the answer"),
    ])


def build_contrast_pairs(ctx: StageContext, opts: ConstitutionalOptions, constitution: Constitution) -> None:
    """Write a contrast record to ``contrast.jsonl`` for every `contrast_pool` record that has
    none: ``chosen`` = the answerer's helpful answer, ``rejected`` = the first of the
    refusal writer's samples that passes `evasive_refusal_rules` (kept), or none (dropped).

    Why: at the quick preset every kept pair is a red-team refusal (the judge drops the
    ordinary ones), and DPO or SFT on them alone made the model open every answer with
    "I can't help with ...", harmless ones included (XSTest over-refusal +88 to +98 points).
    These pairs carry the constitution's "helpful, not evasive" preference into DPO: the same
    refusal style, dispreferred where the request is harmless. The chunks are resumable:
    keys already in the file are not redone.
    """
    sink = RecordSink(ctx.stage_dir / CONTRAST_FILE)
    try:
        todo = [r for r in contrast_pool(list(iter_jsonl(ctx.sink.path))) if not sink.has(f"{r['key']}:contrast")]
        if opts.contrast_seed_prompts:
            todo += _answered_seed_requests(ctx, opts, sink)
        examples = constitution.examples_for("redteam", max(opts.shots, 1))
        for start in range(0, len(todo), ctx.chunk_size):
            chunk = todo[start : start + ctx.chunk_size]
            inputs = [refusal_writer_input(r["prompt"], examples) for r in chunk]
            params = ctx.sampling(
                seed=derive_seed(ctx.seed, "contrast", chunk[0]["key"]), max_new_tokens=opts.aux_max_new_tokens
            )
            outs = ctx.engine(REFUSAL_WRITER).generate(inputs, params, desc=f"{ctx.spec.name} {REFUSAL_WRITER}")
            for rec, inp, samples in zip(chunk, inputs, outs):
                sink.write(_contrast_record(ctx, rec, inp, [clean_revision(t) for t in samples]))
        kept = sum(1 for r in iter_jsonl(sink.path) if r.get("kept"))
        ctx.console.log(f"{ctx.spec.name}: contrast pairs: {kept} kept of {len(sink.keys)} helpful answers")
    finally:
        sink.close()


def _answered_seed_requests(ctx: StageContext, opts: ConstitutionalOptions, sink: RecordSink) -> list[dict]:
    """The train-split ordinary seed requests without a contrast record yet, each with the
    answerer's first sample that passes `helpful_answer_rules`, shaped like a data record.
    A request with no such sample gets a dropped contrast record (so it is not redone)."""
    requests = [
        (f"seed-{topic.name}-{i}", topic, text)
        for topic in load_seed_topics("ordinary", opts.ordinary_seeds)
        for i, text in enumerate(topic.train)
        if not sink.has(f"seed-{topic.name}-{i}:contrast")
    ]
    if not requests:
        return []
    inputs = [format_prompt(text) for _, _, text in requests]
    params = ctx.sampling(seed=derive_seed(ctx.seed, "contrast", "answers"))
    outs = ctx.engine("answerer").generate(inputs, params, desc=f"{ctx.spec.name} answerer (seed requests)")
    out = []
    for (key, topic, text), inp, samples in zip(requests, inputs, outs):
        answer = next((a.strip() for a in samples if helpful_answer_rules(text, a.strip()).passed), None)
        rec = {
            "key": key,
            "family": "ordinary",
            "prompt": text,
            "rejected": answer,
            "topic": {"name": topic.name, "kind": "ordinary", "description": topic.description, "edgy": topic.edgy},
            "provenance": {
                "prompt": {"by": "seed", "source": Path(opts.ordinary_seeds or SEED_FILES["ordinary"]).name, "topic": topic.name},
                "rejected": {"by": ctx.role_name("answerer"), "role": "answerer", "input": inp, "n": len(samples)},
            },
        }
        if answer is None:
            sink.write({
                "key": f"{key}:contrast", "contrast_of": key, "family": "ordinary", "side": "ordinary",
                "attempt": ctx.attempt,
                "kept": False, "drop_reason": "contrast:no_helpful_answer", "prompt": text, "chosen": None,
                "rejected": None, "check": "contrast:helpful_over_evasive", "topic": rec["topic"],
                "provenance": rec["provenance"], "samples": [a.strip() for a in samples],
            })
        else:
            out.append(rec)
    return out


def _contrast_record(ctx: StageContext, rec: dict, writer_input: str, texts: list[str]) -> dict:
    checks = [evasive_refusal_rules(rec["prompt"], rec["rejected"], t) for t in texts]
    pick = next((i for i, v in enumerate(checks) if v.passed), None)
    prov = rec.get("provenance") or {}
    return {
        "key": f"{rec['key']}:contrast",
        "contrast_of": rec["key"],
        "family": "ordinary",
        "side": "ordinary",
        "attempt": ctx.attempt,
        "kept": pick is not None,
        "drop_reason": None if pick is not None else f"contrast:{checks[0].check if checks else 'no_sample'}",
        "prompt": rec["prompt"],
        "chosen": rec["rejected"],
        "rejected": texts[pick] if pick is not None else None,
        "check": "contrast:helpful_over_evasive",
        "topic": rec.get("topic"),
        "verdicts": {
            "chosen": helpful_answer_rules(rec["prompt"], rec["rejected"]).model_dump(),
            "rejected": checks[pick].model_dump() if pick is not None else [v.model_dump() for v in checks],
        },
        "provenance": {
            "prompt": prov.get("prompt"),
            "chosen": prov.get("rejected"),
            "rejected": {"by": ctx.role_name(REFUSAL_WRITER), "role": REFUSAL_WRITER, "input": writer_input},
        },
        "samples": texts,
    }


def contrast_pairs(stage_dir: Path, n: int, seed: int) -> list[dict]:
    """Up to ``n`` kept contrast records of the stage (seeded order), for the trainer."""
    path = stage_dir / CONTRAST_FILE
    if n <= 0 or not path.exists():
        return []
    pool = [r for r in iter_jsonl(path) if r.get("kept") and r.get("chosen") and r.get("rejected")]
    random.Random(f"{seed}:contrast_pairs").shuffle(pool)
    return pool[:n]

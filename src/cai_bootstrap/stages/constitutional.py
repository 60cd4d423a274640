"""Constitutional stage: write prompts, answer, critique, revise, prefer (`skills` 6, `tasks` 3).

Contract
    inputs   ``spec.roles``: ``prompt_writer``, ``answerer``, ``critic``, ``reviser`` (earlier
             stages' models) and optionally ``judge`` (a model that is not being trained;
             ``base`` by default in the shipped curricula); ``spec.options``: see
             `ConstitutionalOptions`; ``settings.constitution``: a name or path
             (`cai_bootstrap.constitution.load_constitution`); hand-written seed topics in
             ``data/seeds/redteam.yaml`` and ``data/seeds/ordinary_prompts.yaml`` (train split).
    outputs  ``data.jsonl`` records (schema of `RecordSink`) with ``family`` ``redteam`` or
             ``ordinary``, ``chosen`` = revision, ``rejected`` = original, and the open CAI
             recipe's fields ``init_response``, ``critique``, ``revision_response``, plus
             ``principle``, ``topic`` and ``item``; ``constitutional_stats.json`` beside it.

Process, per chunk of planned work items (resumable through ``ctx.chunks``):

1. the prompt writer writes a user request about the item's seed topic
   ("Write a user request about: <description>", few-shot with seed requests of other
   topics); rule checks (`check_written_prompt`) reject garbage, refusals, off-topic text,
   copies of seeds and anything close to a held-out seed or a benchmark prompt; when every
   sample is rejected, the item falls back to one of its topic's hand-written seed requests
   (provenance ``by: seed``, with the writer's rejected outputs kept);
2. the answerer answers it: the original response;
3. the critic critiques the answer against a principle drawn from the constitution (among
   the principles that apply to the prompt's kind);
4. the reviser rewrites the answer per the principle's revision request and the critique;
5. the pair (revision > original) is filtered: rule checks first (`pair_rules`: for a
   red-team prompt the original must comply and the revision refuse or redirect, by the
   benchmarks' refusal rules; for an ordinary prompt the revision must not be an evasive
   refusal and must stay on topic); then, where the rules cannot tell which is better
   (an ordinary prompt whose original did not refuse), an independent judge must prefer
   the revision in both presentation orders (`judge_pairs`, via `Engine.choose`); a family
   may fill at most ``max_family_share`` of the examples wanted;
6. kept pairs train the next model with DPO (``training.method: dpo``), or SFT on the
   revisions first (``sft+dpo``, as SL-CAI then RL-CAI); with ``helpful_samples`` the SFT
   phase also sees the answerer's own answers to ordinary prompts (`helpful_samples`), as
   SL-CAI mixes helpful samples into its finetuning set; with ``contrast_pairs`` DPO also
   sees ordinary prompts where the answerer's helpful answer is preferred to an evasive
   refusal written by the ``refusal_writer`` role (``contrast.jsonl``, `build_contrast_pairs`).

`evaluate_stage` is this stage's evaluation: safety benchmarks, earlier stages' held-out
sets and this stage's own held-out set for the previous and the new model, and the gate
"safety improved, capability kept" (`cai_bootstrap.evaluation.safety_gate`).

References: Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback"; the Hugging
Face CAI recipe (huggingface/llm-swarm ``examples/constitutional-ai``) for field names;
inspect_ai's ``self_critique`` for the critique -> revision shape.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai_bootstrap.config import PACKAGE_DIR, ConfigError, StageSpec, format_validation_error, load_yaml
from cai_bootstrap.constitution import PROMPT_KINDS, Constitution, Principle, PromptKind, load_constitution
from cai_bootstrap.engines.base import Engine
from cai_bootstrap.evaluation.refusal import refused_by_either_rule
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.stages.context import RecordSink, StageContext, derive_seed
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.checks import (
    Result,
    check_leak,
    check_no_echo,
    check_nonempty,
    check_repetition,
    contains_any,
    normalize,
    tokens,
    verdict,
    word_count,
)

SEEDS_DIR = PACKAGE_DIR / "data" / "seeds"
SEED_FILES: dict[str, Path] = {"redteam": SEEDS_DIR / "redteam.yaml", "ordinary": SEEDS_DIR / "ordinary_prompts.yaml"}
SEED_LIST_KEY: dict[str, str] = {"redteam": "categories", "ordinary": "topics"}
STATS_FILE = "constitutional_stats.json"
WRITER_INSTRUCTION = "Write a user request about: {description}"
#: Hand-written chosen response of ``fallback_to_reference`` pairs (tiny preset only).
REFERENCE_REFUSAL = (
    "I can't help with that, because it could seriously hurt someone. "
    "If something is troubling you, I'm glad to help you find a safe way to deal with it."
)


# --------------------------------------------------------------------------- options


class BenchmarkOptions(BaseModel):
    """How much of each public benchmark `evaluate_stage` runs (None: all of it)."""

    model_config = ConfigDict(extra="forbid")

    advbench_limit: int | None = Field(None, ge=1, description="first N AdvBench behaviours")
    xstest_limit: int | None = Field(None, ge=1, description="first N XSTest prompts of each label")
    ifeval_limit: int | None = Field(None, ge=0, description="first N IFEval prompts; 0 skips IFEval")
    max_new_tokens: int = Field(128, ge=1)


class ConstitutionalOptions(BaseModel):
    """``options:`` of a ``kind: constitutional`` stage (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    redteam_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of work items that are red-team")
    max_family_share: float = Field(0.7, gt=0.0, le=1.0, description="most of the wanted examples one family may fill")
    oversample: float = Field(4.0, ge=1.0, description="work items planned per example wanted")
    aux_n: int | None = Field(
        None, ge=1, description="prompt-writer samples per item, the first that passes is used (default: sampling.n)"
    )
    shots: int = Field(
        2,
        ge=0,
        description="demonstrations per role prompt: seed requests of other topics for the writer, "
        "the constitution's worked examples for the critic and the reviser",
    )
    aux_max_new_tokens: int = Field(48, ge=4, description="token limit for the prompt writer and the critic")
    judge_families: list[PromptKind] = Field(
        default_factory=lambda: ["ordinary"], description="families whose non-decisive pairs need the judge"
    )
    seed_fallback: bool = Field(True, description="use a hand-written seed request when the writer's are rejected")
    decontaminate: bool = Field(True, description="reject written prompts close to benchmark prompts")
    fallback_to_reference: bool = Field(
        False,
        description="keep a red-team pair that failed the filters with `REFERENCE_REFUSAL` as chosen "
        "(provenance by: seed). Only for the tiny preset, whose random models never pass a filter.",
    )
    helpful_samples: float = Field(
        0.0,
        ge=0.0,
        description="SFT-only records per kept record: ordinary prompts of this stage with the answerer's own "
        "answer, where it passes `helpful_answer_rules` (only read by the sft and sft+dpo methods)",
    )
    contrast_pairs: float = Field(
        0.0,
        ge=0.0,
        description="DPO pairs per kept record on harmless prompts: the answerer's own helpful answer "
        "(passes `helpful_answer_rules`) preferred to an evasive refusal of the same request written by "
        "the `refusal_writer` role (`contrast_pairs`)",
    )
    contrast_seed_prompts: bool = Field(
        False,
        description="contrast pairs also on the train-split ordinary seed requests (hand-written, varied in "
        "form: 'How do I ...'), answered by the answerer, not only on the prompts the writer wrote",
    )
    redteam_seeds: str | None = None
    ordinary_seeds: str | None = None
    benchmarks: BenchmarkOptions = Field(default_factory=BenchmarkOptions)


def stage_options(spec: StageSpec) -> ConstitutionalOptions:
    try:
        return ConstitutionalOptions.model_validate(spec.options)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"stage {spec.name!r} options", exc)) from None


# --------------------------------------------------------------------------- seeds


class SeedTopic(BaseModel):
    """A hand-written category of red-team requests, or a topic of ordinary ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: PromptKind
    description: str = Field(min_length=1)
    edgy: bool = False
    keywords: list[str] = Field(default_factory=list)
    avoid: list[str] = Field(default_factory=list)
    train: list[str] = Field(min_length=1)
    heldout: list[str] = Field(default_factory=list)


@lru_cache(maxsize=16)
def _load_seed_topics(kind: str, path: str) -> tuple[SeedTopic, ...]:
    raw = load_yaml(path)
    key = SEED_LIST_KEY[kind]
    items = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty list under '{key}'")
    topics = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: '{key}[{i}]': expected a mapping, got {type(item).__name__}")
        try:
            topics.append(SeedTopic.model_validate({**item, "kind": kind}))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(f"{path} '{key}[{i}]'", exc)) from None
    names = [t.name for t in topics]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: '{key}' names must be unique, got {names}")
    return tuple(topics)


def load_seed_topics(kind: PromptKind, path: str | Path | None = None) -> list[SeedTopic]:
    """Seed topics of ``kind`` (``redteam`` or ``ordinary``) from the shipped file or ``path``."""
    return list(_load_seed_topics(kind, str(path or SEED_FILES[kind])))


# --------------------------------------------------------------------------- text rules


#: the refusal test of every pair rule: either benchmark's string rule
refused = refused_by_either_rule


_PROMPT_LABEL = re.compile(r"^\s*(?:user request|user|request|question|prompt|q)\s*:\s*", re.IGNORECASE)
_REVISION_LABEL = re.compile(
    r"^\s*(?:revised response|revision|new response|response|assistant|answer)\s*:\s*", re.IGNORECASE
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"

_FILLER = frozenset(
    "what when where which with that this your have from should would could about there their into does "
    "make like some want need tell give best good know just help please without they them then than also "
    "more most very much many really thing things something while after before because doing done being "
    "been were whats how why who can you the and for are but not all any our out get got use way ways".split()
)


def clean_written_prompt(raw: str) -> str:
    """The first non-empty line of a writer's output, without a ``User:`` label or quotes."""
    line = next((ln.strip() for ln in raw.strip().splitlines() if ln.strip()), "")
    return _PROMPT_LABEL.sub("", line).strip().strip(_QUOTES).strip()


def clean_revision(raw: str) -> str:
    """A reviser's output without a leading ``Revision:`` / ``Response:`` label."""
    return _REVISION_LABEL.sub("", raw.strip()).strip()


def content_words(text: str) -> set[str]:
    return {t for t in tokens(text) if (len(t) >= 4 or t.isdigit()) and t not in _FILLER}


class OverlapIndex:
    """Texts a written prompt must not copy or nearly copy (held-out seeds, benchmarks, seeds).

    A match is the same normalised text, or a Jaccard overlap of content words (`content_words`:
    function words ignored, so "make a bomb" and "make a cake" differ) of at least ``threshold``.
    """

    def __init__(self, entries: list[tuple[str, str]], threshold: float = 0.6):
        self.threshold = threshold
        self._exact = {normalize(text): label for text, label in entries}
        self._sets = [(frozenset(content_words(text)), label) for text, label in entries]

    def __len__(self) -> int:
        return len(self._sets)

    def match(self, text: str) -> str | None:
        """Label of an entry equal to or within the similarity threshold of ``text``."""
        if normalize(text) in self._exact:
            return self._exact[normalize(text)]
        words = content_words(text)
        if not words:
            return None
        for other, label in self._sets:
            if other and len(words & other) / len(words | other) >= self.threshold:
                return label
        return None


def check_written_prompt(
    text: str, topic: SeedTopic, *, seeds: OverlapIndex, protected: OverlapIndex, duplicate: bool
) -> Verdict:
    """Rule checks of a prompt the writer wrote for ``topic`` (all must pass)."""
    letters = sum(c.isalpha() for c in text)
    visible = sum(not c.isspace() for c in text) or 1
    n_words = word_count(text)
    copied = seeds.match(text)
    evaluation = protected.match(text)
    results = [
        check_nonempty(text),
        Result("length", 3 <= n_words <= 60, f"{n_words} words, want 3-60"),
        Result("letters", letters / visible >= 0.7, "mostly not letters"),
        check_leak(text),
        check_repetition(text),
        Result("not_refusal", not refused(text), "the writer refused instead of writing a request"),
        Result(
            "on_topic",
            not topic.keywords or bool(contains_any(text, topic.keywords, inflect=True)),
            f"none of the topic words {topic.keywords[:5]} appear",
        ),
        Result("avoid", not contains_any(text, topic.avoid, inflect=True), "names a word this topic must avoid"),
        Result(
            "not_instruction_echo",
            WRITER_INSTRUCTION.split("{")[0].strip(" :").lower() not in text.lower(),
            "repeats the writer's instruction instead of writing a request",
        ),
        Result(
            "not_defensive",
            topic.kind != "redteam" or not _DEFENSIVE.search(text),
            "a red-team request framed as self-protection (a harmless question)",
        ),
        Result("not_seed_copy", copied is None, f"copies a seed request ({copied})"),
        Result("not_eval_prompt", evaluation is None, f"too close to an evaluation prompt ({evaluation})"),
        Result("unique", not duplicate, "duplicate of an earlier prompt"),
    ]
    return verdict("prompt_rules", results)


#: a red-team request framed as self-protection is not a harmful request (it drifted)
_DEFENSIVE = re.compile(
    r"\b(?:protect (?:myself|yourself|me|my|us|our|against)|keep (?:myself|me|my|us) safe|tell if|"
    r"recogni[sz]e|spot (?:a|an|the)|avoid (?:being|getting)|defend (?:myself|yourself|against)|"
    r"prevent|report (?:a|an|someone|it|them))\b",
    re.IGNORECASE,
)


def harm_echo(prompt: str, original: str, revision: str, n: int = 4) -> str | None:
    """A run of ``n`` words that the original added to the request (not in the prompt) and
    the revision repeats: a refusal that goes on to give the harmful answer, e.g. "I can't
    help with that. You can hurt yourself and ..."."""

    def grams(text: str) -> set[tuple[str, ...]]:
        words = tokens(text)
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    echoed = (grams(original) - grams(prompt)) & grams(revision)
    return " ".join(min(echoed)) if echoed else None


_META = re.compile(r"^\W*(?:the|this|that|your|my)\s+(?:assistant|response|answer|revision|original|critique)\b", re.I)


def pair_rules(
    kind: PromptKind, prompt: str, original: str, revision: str, demos: OverlapIndex | None = None
) -> tuple[Verdict, bool]:
    """Rule checks of a pair (revision preferred to original), and whether they are decisive.

    ``demos`` holds the worked examples the reviser was shown: a revision that copies one
    (a small model's favourite failure) is rejected. Decisive means the rules alone show
    that the revision is better: a red-team pair whose original complied and whose
    revision refuses, or an ordinary pair whose original was an evasive refusal and whose
    revision answers on topic. Other passing ordinary pairs need the judge.
    """
    copied = demos.match(revision) if demos is not None else None
    results = [
        Result("revision_nonempty", bool(tokens(revision)), "empty revision"),
        Result("changed", normalize(revision) != normalize(original), "the revision repeats the original"),
        check_leak(revision),
        check_repetition(revision),
        Result("not_meta", not _META.match(revision), "the revision talks about the response instead of being one"),
        Result("not_demo_copy", copied is None, f"the revision copies a worked example ({copied})"),
    ]
    if kind == "redteam":
        results += [
            Result("original_nonempty", bool(tokens(original)), "empty original: nothing to prefer over"),
            Result("original_complied", not refused(original), "the original already refuses: nothing to prefer over"),
            Result("revision_refuses", refused(revision), "the revision does not refuse or redirect (refusal rules)"),
            Result(
                "no_harm_echo",
                (echo := harm_echo(prompt, original, revision)) is None,
                f"the revision repeats what the original answered ({echo!r})",
            ),
        ]
        decisive = True
    else:
        topic = content_words(prompt)
        kept_topic = bool(topic & content_words(revision)) or not (topic & content_words(original))
        results += [
            Result("not_evasive", not refused(revision), "the revision refuses a harmless request"),
            Result("on_topic", kept_topic, "the revision drops every topic word the original had"),
        ]
        decisive = refused(original)
    return verdict(f"pair_rules:{kind}", results), decisive


def helpful_answer_rules(prompt: str, answer: str) -> Verdict:
    """Is the answerer's response to a harmless request a usable helpful sample?"""
    return verdict("helpful_answer", [
        Result("nonempty", bool(tokens(answer)), "empty answer"),
        check_no_echo(answer, [], payload=prompt),
        check_leak(answer),
        check_repetition(answer),
        Result("not_meta", not _META.match(answer), "the answer talks about a response instead of being one"),
        Result("not_evasive", not refused(answer), "the answer refuses a harmless request"),
        Result("on_topic", bool(content_words(prompt) & content_words(answer)), "the answer shares no topic word"),
    ])


def helpful_samples(records: list[dict], n: int, seed: int) -> list[dict]:
    """Up to ``n`` SFT-only records (no ``rejected``, so DPO skips them): the stage's ordinary
    prompts whose pair was not kept, with the answerer's original answer as the target,
    where that answer passes `helpful_answer_rules`; seeded order, marked ``helpful_sample_of``.

    Why: SL-CAI finetunes on the revisions *and* on helpful samples for harmless prompts so
    that the model keeps answering them (Bai et al. 2022, section 3). Measured at the quick
    preset: SFT on the kept pairs, which are all refusals, made the model refuse about half of
    XSTest's safe prompts, and 94% once templated stage 1-5 records were replayed beside them.
    """
    if n <= 0:
        return []
    pool = contrast_pool(records)
    random.Random(f"{seed}:helpful_samples").shuffle(pool)
    return [
        {
            "key": f"{r['key']}:helpful",
            "prompt": r["prompt"],
            "chosen": r["rejected"],
            "family": "ordinary",
            "helpful_sample_of": r["key"],
            "provenance": {"chosen": (r.get("provenance") or {}).get("rejected")},
        }
        for r in pool[:n]
    ]


#: records of `build_contrast_pairs`, beside ``data.jsonl``
CONTRAST_FILE = "contrast.jsonl"
#: role that writes the evasive refusals of contrast pairs (shipped curricula: the base model)
REFUSAL_WRITER = "refusal_writer"
REFUSAL_INSTRUCTION = "Decline this request in one or two sentences: {prompt}"


def contrast_pool(records: list[dict]) -> list[dict]:
    """Ordinary records whose pair was not kept but whose original answer is a usable helpful
    answer (`helpful_answer_rules`): the chosen side of a contrast pair."""
    return [
        r for r in records
        if r.get("family") == "ordinary" and not r.get("kept") and r.get("prompt") and r.get("rejected")
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
                "key": f"{key}:contrast", "contrast_of": key, "family": "ordinary", "attempt": ctx.attempt,
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


# --------------------------------------------------------------------------- prompts

CRITIQUE_TEMPLATE = (
    "Here is a conversation between a user and an AI assistant.\n\nUser: {prompt}\n\nAssistant: {response}\n\n{request}"
)
REVISION_TEMPLATE = (
    "Here is a conversation between a user and an AI assistant, and a critique of the assistant's response.\n\n"
    "User: {prompt}\n\n"
    "Assistant: {response}\n\n"
    "Critique: {critique}\n\n"
    "{request} Write only the new response."
)
JUDGE_TEMPLATE = (
    "Two AI assistants answered the same user request. Which response is better: more helpful, "
    "more honest, and harmless?\n\n"
    "User request: {prompt}\n\n"
    "Response A: {a}\n\n"
    "Response B: {b}\n\n"
    "Answer with the letter of the better response, A or B."
)
JUDGE_OPTIONS = ["A", "B"]


def writer_input(topic: SeedTopic, shots: list[SeedTopic], rng: random.Random) -> str:
    demos = [(WRITER_INSTRUCTION.format(description=t.description), rng.choice(t.train)) for t in shots]
    return format_few_shot(WRITER_INSTRUCTION.format(description=topic.description), demos)


def critique_input(prompt: str, response: str, request: str, examples: list) -> str:
    demos = [
        (CRITIQUE_TEMPLATE.format(prompt=ex.prompt, response=ex.response, request=ex.critique_request), ex.critique)
        for ex in examples
    ]
    return format_few_shot(
        CRITIQUE_TEMPLATE.format(prompt=prompt, response=response or "(no answer)", request=request), demos
    )


def revision_input(prompt: str, response: str, critique: str, request: str, examples: list) -> str:
    demos = [
        (
            REVISION_TEMPLATE.format(
                prompt=ex.prompt, response=ex.response, critique=ex.critique, request=ex.revision_request
            ),
            ex.revision,
        )
        for ex in examples
    ]
    body = REVISION_TEMPLATE.format(
        prompt=prompt, response=response or "(no answer)", critique=critique or "(none)", request=request
    )
    return format_few_shot(body, demos)


def judge_input(prompt: str, a: str, b: str) -> str:
    return format_prompt(JUDGE_TEMPLATE.format(prompt=prompt, a=a or "(empty)", b=b or "(empty)"))


def judge_pairs(engine: Engine, prompts: list[str], originals: list[str], revisions: list[str]) -> list[Verdict]:
    """Does the judge prefer the revision? Asked in both orders, to cancel position bias."""
    inputs = []
    for p, o, r in zip(prompts, originals, revisions):
        inputs += [judge_input(p, o, r), judge_input(p, r, o)]
    picks = engine.choose(inputs, [JUDGE_OPTIONS] * len(inputs)) if inputs else []
    out = []
    for i in range(len(prompts)):
        first, second = picks[2 * i] == 1, picks[2 * i + 1] == 0  # revision chosen in each order
        if first and second:
            out.append(Verdict(passed=True, score=1.0, check="judge", reason="revision preferred in both orders"))
        elif not first and not second:
            out.append(
                Verdict(
                    passed=False, score=0.0, check="judge_prefers_original", reason="original preferred in both orders"
                )
            )
        else:
            pos = JUDGE_OPTIONS[picks[2 * i]]
            out.append(
                Verdict(
                    passed=False, score=0.5, check="judge_inconsistent", reason=f"picked position {pos} in both orders"
                )
            )
    return out


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class WorkItem:
    key: str
    index: int
    kind: PromptKind
    topic: SeedTopic
    seed_request: str


#: optional role: revises the items where no candidate of ``reviser`` passes the pair rules
FALLBACK_REVISER = "fallback_reviser"


@dataclass
class Candidate:
    """One revision sample with its rule verdict (and the judge's, when asked)."""

    text: str
    rules: Verdict
    decisive: bool
    judge: Verdict | None = None
    judge_prov: dict | None = None
    role: str = "reviser"

    def summary(self) -> dict:
        return {
            "text": self.text,
            "role": self.role,
            "rules": self.rules.model_dump() | {"decisive": self.decisive},
            "judge": self.judge.model_dump() if self.judge else None,
        }


def plan_items(topics: dict[str, list[SeedTopic]], n: int, redteam_fraction: float, seed: int) -> list[WorkItem]:
    """``n`` work items, red-team and ordinary interleaved, topics round-robin in a seeded order.

    Prefix-stable: the first ``k`` items are the same for any ``n >= k``, so a retry that
    wants more examples continues the same plan.
    """
    rng = random.Random(seed)
    order = {kind: rng.sample(list(ts), len(ts)) for kind, ts in topics.items()}
    used: Counter[str] = Counter()
    items = []
    for i in range(n):
        kind: PromptKind = (
            "redteam" if math.floor((i + 1) * redteam_fraction) > math.floor(i * redteam_fraction) else "ordinary"
        )
        if not order.get(kind):
            raise ConfigError(f"no {kind} seed topics to plan from")
        j = used[kind]
        used[kind] += 1
        ring = order[kind]
        topic = ring[j % len(ring)]
        seed_request = topic.train[(j // len(ring)) % len(topic.train)]
        items.append(WorkItem(f"{kind}-{i:05d}", i, kind, topic, seed_request))
    return items


class _History:
    """What earlier items decided: their prompts (for duplicates) and kept families (for quotas).

    Only items with a smaller plan index count, so a chunk redone after a crash decides
    exactly as it did the first time.
    """

    def __init__(self, records: list[dict]):
        self.first_use: dict[str, int] = {}
        self.kept: dict[str, set[int]] = {kind: set() for kind in PROMPT_KINDS}
        for rec in records:
            self.add(rec.get("item", -1), rec.get("family", ""), rec.get("prompt") or "", bool(rec.get("kept")))

    def add(self, index: int, kind: str, prompt: str, kept: bool) -> None:
        norm = normalize(prompt)
        if norm:
            self.first_use[norm] = min(self.first_use.get(norm, index), index)
        if kept and kind in self.kept:
            self.kept[kind].add(index)

    def duplicate(self, prompt: str, index: int) -> bool:
        return self.first_use.get(normalize(prompt), index) < index

    def kept_before(self, kind: str, index: int) -> int:
        return sum(1 for i in self.kept.get(kind, []) if i < index)


def protected_prompts(
    topics: dict[str, list[SeedTopic]], decontaminate: bool, benchmarks_dir: str | None
) -> tuple[OverlapIndex, list[str]]:
    """Held-out seeds and (when found) AdvBench / XSTest prompts: never trained on."""
    entries = [(text, f"held-out seed {t.name}") for ts in topics.values() for t in ts for text in t.heldout]
    notes = []
    if decontaminate:
        from cai_bootstrap.evaluation.benchmark_data import BenchmarkDataError, load_advbench, load_xstest

        try:
            entries += [(it.goal, "AdvBench") for it in load_advbench(benchmarks_dir)]
            entries += [(it.prompt, f"XSTest {it.id}") for it in load_xstest(benchmarks_dir)]
            notes.append("written prompts checked against AdvBench and XSTest")
        except BenchmarkDataError as exc:
            notes.append(f"benchmark decontamination skipped: {exc}")
    return OverlapIndex(entries), notes


# --------------------------------------------------------------------------- build


def build(ctx: StageContext) -> None:
    """Write this stage's critique/revision preference records to ``ctx.sink``."""
    opts = stage_options(ctx.spec)
    constitution = load_constitution(ctx.settings.constitution)
    seed_paths = {"redteam": opts.redteam_seeds, "ordinary": opts.ordinary_seeds}
    topics = {kind: load_seed_topics(kind, seed_paths[kind]) for kind in PROMPT_KINDS}
    seeds = {
        kind: OverlapIndex([(s, f"seed {t.name}") for t in ts for s in t.train], threshold=0.8)
        for kind, ts in topics.items()
    }
    protected, notes = protected_prompts(topics, opts.decontaminate, ctx.settings.benchmarks_dir)
    n_items = max(ctx.chunk_size, math.ceil(ctx.target_examples * opts.oversample))
    items = plan_items(topics, n_items, opts.redteam_fraction, derive_seed(ctx.settings.seed, ctx.spec.name, "plan"))
    history = _History(list(iter_jsonl(ctx.sink.path)))
    builder = _ChunkBuilder(ctx, opts, constitution, topics, seeds, protected, history)
    for _, chunk, chunk_seed in ctx.chunks(items, lambda it: [it.key]):
        for record in builder.run(chunk, chunk_seed):
            ctx.sink.write(record)
    if opts.contrast_pairs > 0:
        build_contrast_pairs(ctx, opts, constitution)
    write_stats(ctx, constitution, notes)


class _ChunkBuilder:
    """Steps 1-5 for one chunk of work items, batched per role."""

    def __init__(self, ctx, opts, constitution, topics, seeds, protected, history):
        self.ctx: StageContext = ctx
        self.opts: ConstitutionalOptions = opts
        self.constitution: Constitution = constitution
        self.topics: dict[str, list[SeedTopic]] = topics
        self.seeds: dict[str, OverlapIndex] = seeds
        self.protected: OverlapIndex = protected
        self.history: _History = history
        self.cap = math.ceil(ctx.target_examples * opts.max_family_share)
        self.demos = OverlapIndex(
            [
                (t, "constitution example")
                for ex in constitution.examples
                for t in (ex.response, ex.critique, ex.revision)
            ],
            threshold=0.5,
        )
        self.use_judge = "judge" in ctx.spec.roles and bool(opts.judge_families)

    def _generate(self, role: str, inputs: list[str], seed: int, **overrides: Any) -> list[list[str]]:
        params = self.ctx.sampling(seed=derive_seed(seed, role), **{"n": 1, **overrides})
        return self.ctx.engine(role).generate(inputs, params, desc=f"{self.ctx.spec.name} {role}")

    def _prov(self, role: str, text: str, **extra: Any) -> dict:
        return {"by": self.ctx.role_name(role), "role": role, "input": text, **extra}

    def run(self, chunk: list[WorkItem], seed: int) -> list[dict]:
        ctx, opts = self.ctx, self.opts
        n = ctx.spec.sampling.n
        # 1. prompts
        writer_inputs = []
        for item in chunk:
            rng = random.Random(derive_seed(seed, item.key, "shots"))
            others = [t for t in self.topics[item.kind] if t.name != item.topic.name]
            writer_inputs.append(writer_input(item.topic, rng.sample(others, min(opts.shots, len(others))), rng))
        written = self._generate(
            "prompt_writer", writer_inputs, seed, n=opts.aux_n or n, max_new_tokens=opts.aux_max_new_tokens
        )
        prompts: list[str | None] = []
        prompt_prov, prompt_verdicts = [], []
        for item, inp, samples in zip(chunk, writer_inputs, written):
            prompt, prov, pv = self._pick_prompt(item, inp, samples)
            prompts.append(prompt)
            prompt_prov.append(prov)
            prompt_verdicts.append(pv)
            if prompt is not None:
                self.history.add(item.index, item.kind, prompt, kept=False)
        live = [i for i, p in enumerate(prompts) if p is not None]
        items = [chunk[i] for i in live]
        texts = [prompts[i] or "" for i in live]
        # 2. answers: one original per prompt
        answer_inputs = [format_prompt(p) for p in texts]
        originals = [o[0] for o in self._generate("answerer", answer_inputs, seed)]
        # 3. critiques against a principle drawn for the prompt's kind
        principles = [
            self.constitution.sample(random.Random(derive_seed(seed, it.key, "principle")), it.kind) for it in items
        ]
        demos = [self.constitution.examples_for(it.kind, opts.shots) for it in items]
        critique_inputs = [
            critique_input(p, o, pr.critique_request, d) for p, o, pr, d in zip(texts, originals, principles, demos)
        ]
        critiques = [
            c[0].strip()
            for c in self._generate("critic", critique_inputs, seed, max_new_tokens=opts.aux_max_new_tokens)
        ]
        # 4. revisions: best of n
        revision_inputs = [
            revision_input(p, o, c, pr.revision_request, d)
            for p, o, c, pr, d in zip(texts, originals, critiques, principles, demos)
        ]
        revisions = self._generate("reviser", revision_inputs, seed, n=n)
        # 5. rules on every candidate; the judge where no candidate passes decisively
        candidates = [self._candidates(it, p, o, rs) for it, p, o, rs in zip(items, texts, originals, revisions)]
        self._fallback_revisions(items, texts, originals, revision_inputs, candidates, seed)
        self._judge(items, texts, originals, candidates)
        records = []
        pos = {i: j for j, i in enumerate(live)}
        for i, item in enumerate(chunk):
            if i not in pos:
                records.append(self._prompt_dropped(item, prompt_prov[i], prompt_verdicts[i]))
                continue
            j = pos[i]
            pick = self._pick_revision(item, candidates[j])
            kept, drop = self._decide(item, pick)
            reviser_prov = self._prov(pick.role, revision_inputs[j], principle=principles[j].name, n=n)
            if pick.role == FALLBACK_REVISER:
                reviser_prov["fallback_for"] = {
                    "by": self.ctx.role_name("reviser"),
                    "reason": "none of the reviser's candidates passed the pair rules",
                }
            verdicts = {
                "prompt": prompt_verdicts[i].model_dump(),
                "rules": pick.rules.model_dump() | {"decisive": pick.decisive},
                "judge": pick.judge.model_dump() if pick.judge else None,
            }
            provenance = {
                "prompt": prompt_prov[i],
                "rejected": self._prov("answerer", answer_inputs[j]),
                "critique": self._prov("critic", critique_inputs[j], principle=principles[j].name),
                "chosen": reviser_prov,
            }
            if pick.judge_prov:
                provenance["judge"] = pick.judge_prov
            record = self._record(
                item,
                texts[j],
                kept,
                drop,
                principles[j],
                originals[j],
                critiques[j],
                pick.text,
                verdicts=verdicts,
                provenance=provenance,
            )
            record["candidates"] = [c.summary() for c in candidates[j]]
            if self._fallback(item, drop):
                note = f"fallback_to_reference (tiny preset): the reviser's pair failed ({drop})"
                record.update(kept=True, drop_reason=None, chosen=REFERENCE_REFUSAL)
                provenance["chosen"] = {
                    "by": "seed",
                    "reference": "REFERENCE_REFUSAL",
                    "note": note,
                    "reviser": reviser_prov,
                }
                verdicts["fallback"] = Verdict(
                    passed=True, score=0.0, check="fallback_to_reference", reason=note
                ).model_dump()
            self.history.add(item.index, item.kind, texts[j], record["kept"])
            records.append(record)
        ctx.console.log(f"{ctx.spec.name}: chunk of {len(chunk)}: {sum(r['kept'] for r in records)} kept")
        return records

    def _fallback_revisions(
        self,
        items: list[WorkItem],
        prompts: list[str],
        originals: list[str],
        revision_inputs: list[str],
        candidates: list[list[Candidate]],
        seed: int,
    ) -> None:
        """Ask the ``fallback_reviser`` role (if the stage names one) for revisions of the
        items where no candidate of the reviser passes the pair rules (one batch).

        Why: at the quick preset the stage-5 reviser, trained on flawed-text repair, never
        writes a refusal (0 of 36 red-team items in a measured run) while the base model
        with the constitution's worked examples does for most; the fallback's candidates
        are filtered by the same rules and judge, and provenance names who wrote the chosen text.
        """
        if FALLBACK_REVISER not in self.ctx.spec.roles:
            return
        todo = [j for j, cands in enumerate(candidates) if not any(c.rules.passed for c in cands)]
        if not todo:
            return
        outs = self._generate(FALLBACK_REVISER, [revision_inputs[j] for j in todo], seed, n=self.ctx.spec.sampling.n)
        for j, rs in zip(todo, outs):
            candidates[j] += self._candidates(items[j], prompts[j], originals[j], rs, role=FALLBACK_REVISER)

    def _candidates(
        self, item: WorkItem, prompt: str, original: str, samples: list[str], role: str = "reviser"
    ) -> list[Candidate]:
        """A reviser's samples, label-stripped, each with its pair-rule verdict."""
        texts = [clean_revision(raw) for raw in samples]
        return [Candidate(t, *pair_rules(item.kind, prompt, original, t, self.demos), role=role) for t in texts]

    def _needs_judge(self, item: WorkItem, cand: Candidate) -> bool:
        return cand.rules.passed and not cand.decisive and item.kind in self.opts.judge_families

    def _judge(
        self, items: list[WorkItem], prompts: list[str], originals: list[str], candidates: list[list[Candidate]]
    ) -> None:
        """Judge the rule-passing candidates of items that have no decisive one (one batch)."""
        if not self.use_judge:
            return
        jobs = [
            (j, c)
            for j, (it, cands) in enumerate(zip(items, candidates))
            if not any(c.rules.passed and not self._needs_judge(it, c) for c in cands)
            for c in cands
            if self._needs_judge(it, c)
        ]
        if not jobs:
            return
        prompts_, originals_ = [prompts[j] for j, _ in jobs], [originals[j] for j, _ in jobs]
        verdicts = judge_pairs(self.ctx.engine("judge"), prompts_, originals_, [c.text for _, c in jobs])
        for (_, cand), p, o, v in zip(jobs, prompts_, originals_, verdicts):
            cand.judge = v
            cand.judge_prov = self._prov(
                "judge", judge_input(p, o, cand.text), input_swapped=judge_input(p, cand.text, o), method="choose"
            )

    def _pick_revision(self, item: WorkItem, cands: list[Candidate]) -> Candidate:
        """First candidate the rules accept on their own, else first the judge accepts,
        else first the rules accept, else the first."""
        for ok in (
            lambda c: c.rules.passed and not self._needs_judge(item, c),
            lambda c: c.rules.passed and c.judge is not None and c.judge.passed,
            lambda c: c.rules.passed,
        ):
            found = next((c for c in cands if ok(c)), None)
            if found is not None:
                return found
        return cands[0]

    def _pick_prompt(self, item: WorkItem, writer_text: str, samples: list[str]) -> tuple[str | None, dict, Verdict]:
        rejected = []
        for raw in samples:
            text = clean_written_prompt(raw)
            v = check_written_prompt(
                text,
                item.topic,
                seeds=self.seeds[item.kind],
                protected=self.protected,
                duplicate=self.history.duplicate(text, item.index),
            )
            if v.passed:
                return text, self._prov("prompt_writer", writer_text, topic=item.topic.name), v
            rejected.append({"text": raw, "check": v.check, "reason": v.reason})
        writer = self._prov("prompt_writer", writer_text, rejected=rejected)
        summary = "; ".join(f"{r['check']}: {r['reason']}" for r in rejected)
        if not self.opts.seed_fallback:
            return None, writer, Verdict(passed=False, score=0.0, check=rejected[-1]["check"], reason=summary)
        prov = {"by": "seed", "source": SEED_FILES[item.kind].name, "topic": item.topic.name, "writer": writer}
        return (
            item.seed_request,
            prov,
            Verdict(passed=True, score=0.0, check="seed_fallback", reason=f"writer rejected ({summary})"),
        )

    def _decide(self, item: WorkItem, pick: Candidate) -> tuple[bool, str | None]:
        if not pick.rules.passed:
            return False, f"rules:{pick.rules.check}"
        if self._needs_judge(item, pick):
            if pick.judge is None:
                return False, "judge:unavailable"
            if not pick.judge.passed:
                return False, f"judge:{pick.judge.check.removeprefix('judge_')}"
        if self.history.kept_before(item.kind, item.index) >= self.cap:
            return False, f"quota:{item.kind}"
        return True, None

    def _fallback(self, item: WorkItem, drop: str | None) -> bool:
        return (
            self.opts.fallback_to_reference
            and item.kind == "redteam"
            and drop is not None
            and not drop.startswith("quota:")
            and self.history.kept_before(item.kind, item.index) < self.cap
        )

    def _record(
        self, item, prompt, kept, drop, principle: Principle, original, critique, revision, verdicts, provenance
    ) -> dict:
        return {
            "key": item.key,
            "item": item.index,
            "family": item.kind,
            "attempt": self.ctx.attempt,
            "kept": kept,
            "drop_reason": drop,
            "prompt": prompt,
            "chosen": revision,
            "rejected": original,
            "check": f"constitution:{self.constitution.name}/{principle.name}",
            "principle": principle.model_dump(),
            "init_response": original,
            "critique": critique,
            "revision_response": revision,
            "topic": {
                "name": item.topic.name,
                "kind": item.kind,
                "description": item.topic.description,
                "edgy": item.topic.edgy,
            },
            "verdicts": verdicts,
            "provenance": provenance,
            "reference": {"seed_topic": item.topic.name, "seed_request": item.seed_request},
        }

    def _prompt_dropped(self, item: WorkItem, prov: dict, pv: Verdict) -> dict:
        return {
            "key": item.key,
            "item": item.index,
            "family": item.kind,
            "attempt": self.ctx.attempt,
            "kept": False,
            "drop_reason": f"prompt:{pv.check}",
            "prompt": "",
            "chosen": None,
            "rejected": None,
            "check": "prompt_rules",
            "topic": {"name": item.topic.name, "kind": item.kind},
            "verdicts": {"prompt": pv.model_dump()},
            "provenance": {"prompt": prov},
            "reference": {"seed_topic": item.topic.name, "seed_request": item.seed_request},
        }


def write_stats(ctx: StageContext, constitution: Constitution, notes: list[str]) -> dict:
    """Summarise ``data.jsonl`` (recomputed from the file, so resume-safe) into the stats file."""
    fams: dict[str, Counter] = {kind: Counter() for kind in PROMPT_KINDS}
    drops: Counter[str] = Counter()
    principles: Counter[str] = Counter()
    chosen_by: Counter[str] = Counter()
    for rec in iter_jsonl(ctx.sink.path):
        c = fams.setdefault(rec.get("family", "?"), Counter())
        c["written"] += 1
        c["kept"] += bool(rec.get("kept"))
        by = (rec.get("provenance", {}).get("prompt") or {}).get("by")
        c["prompt_by_seed" if by == "seed" else "prompt_by_writer"] += 1
        if rec.get("kept"):
            principles[(rec.get("principle") or {}).get("name", "?")] += 1
            chosen = rec.get("provenance", {}).get("chosen") or {}
            chosen_by[f"{chosen.get('role', 'seed')} ({chosen.get('by', '?')})"] += 1
        else:
            drops[rec.get("drop_reason") or "?"] += 1
    stats = {
        "constitution": {"name": constitution.name, "source": constitution.source, "sha256": constitution.digest()},
        "families": {k: dict(v) for k, v in fams.items()},
        "drop_reasons": dict(drops.most_common()),
        "kept_by_principle": dict(principles.most_common()),
        "kept_by_reviser": dict(chosen_by.most_common()),
        "notes": notes,
    }
    contrast_file = ctx.stage_dir / CONTRAST_FILE
    if contrast_file.exists():
        rows = list(iter_jsonl(contrast_file))
        stats["contrast_pairs"] = {
            "written": len(rows),
            "kept": sum(1 for r in rows if r.get("kept")),
            "drop_reasons": dict(Counter(r["drop_reason"] for r in rows if not r.get("kept")).most_common()),
        }
    atomic_write_json(ctx.stage_dir / STATS_FILE, stats)
    return stats


# --------------------------------------------------------------------------- evaluation


def evaluate_stage(run_dir, stages, index, settings, pool, attempt, paths, progress=True):
    """Evaluate the previous and the new model side by side, and decide the safety gate.

    Both models are scored on: AdvBench and XSTest (string rules and the judge role's model),
    IFEval (reported), every earlier stage's held-out set (capability) and this stage's own
    held-out set (``redteam`` / ``ordinary``). Per-item rows and benchmark results are kept
    under ``paths.eval``, so an interrupted evaluation resumes. Returns ``(gate, metrics)``
    as the runner expects; ``metrics["safety"]`` holds ``before``, ``after`` and ``gate``.
    """
    from cai_bootstrap.config import SafetyGate
    from cai_bootstrap.evaluation.heldout import evaluate_heldout, heldout_instances
    from cai_bootstrap.evaluation.safety_gate import ModelScores, register_families, safety_gate
    from cai_bootstrap.runs.runner import role_resolver, stage_metrics

    spec = stages[index]
    previous = stages[index - 1].name if index > 0 else "base"
    opts = stage_options(spec)
    judge_name = role_resolver(spec, stages[index - 1].name if index > 0 else None, settings)("judge")
    register_families()
    own = heldout_instances(spec.families or list(PROMPT_KINDS), spec.heldout, settings.seed)
    tokens_own = spec.sampling.max_new_tokens

    def heldout(model: str, label: str):
        return evaluate_heldout(
            pool.get(model),
            model,
            own,
            paths.eval / f"heldout-{label}.jsonl",
            max_new_tokens=tokens_own,
            progress=progress,
        )

    def capability(model: str, label: str) -> dict:
        out = {}
        for earlier in stages[:index]:
            if earlier.kind == "constitutional" or not earlier.families:
                continue
            inst = heldout_instances(earlier.families, earlier.heldout, settings.seed)
            out[earlier.name] = evaluate_heldout(
                pool.get(model),
                model,
                inst,
                paths.eval / f"capability-{earlier.name}-{label}.jsonl",
                max_new_tokens=earlier.sampling.max_new_tokens,
                progress=progress,
            )
        return out

    labels = {previous: previous, spec.name: f"{spec.name}-a{attempt}"}
    scores, own_scores, caps = {}, {}, {}
    for model, label in labels.items():
        own_scores[model] = heldout(model, label)
        caps[model] = capability(model, label)
        bench = {
            suite: _benchmark(
                suite,
                pool.get(model),
                pool.get(judge_name) if suite != "ifeval" else None,
                paths.eval / "benchmarks" / label,
                opts.benchmarks,
                settings,
                progress,
            )
            for suite in ("advbench", "xstest", "ifeval")
        }
        scores[model] = ModelScores.from_results(
            model,
            bench["advbench"],
            bench["xstest"],
            bench["ifeval"],
            capability={name: s.mean for name, s in caps[model].items()},
            own_heldout=own_scores[model].mean,
        )
    base = own_scores[previous] if previous == "base" else heldout("base", "base")
    gate = safety_gate(
        spec.safety_gate or SafetyGate(), scores[previous], scores[spec.name], stage=spec.name, where=str(paths.eval)
    )
    retained = {name: s.model_dump() for name, s in caps[spec.name].items()}
    metrics = stage_metrics(spec, paths, attempt, gate, own_scores[spec.name], base, retained)
    metrics["previous_heldout"] = own_scores[previous].model_dump()
    metrics["previous_retained"] = {name: s.model_dump() for name, s in caps[previous].items()}
    metrics["safety"] = {
        "before": scores[previous].flat(),
        "after": scores[spec.name].flat(),
        "gate": gate.summary(),
        "checks": [c.model_dump() for c in gate.checks],
        "judge": f"{judge_name} ({pool.ref(judge_name)})",
    }
    stats_file = paths.root / STATS_FILE
    if stats_file.exists():
        from cai_bootstrap.jsonl import read_json

        metrics["constitutional"] = read_json(stats_file)
    return gate, metrics


def _with_either_rule(result, out_dir: Path):
    """An AdvBench result saved before ``either_rule_safe_rate`` existed, with that rate
    computed from its saved responses (the same rule `eval_advbench` applies now)."""
    from cai_bootstrap.evaluation.benchmarks import share

    rows_path = out_dir / "advbench.rows.jsonl"
    if result.suite != "advbench" or "either_rule_safe_rate" in result.metrics or not rows_path.exists():
        return result
    responses = [row["response"] for row in iter_jsonl(rows_path)]
    result.metrics["either_rule_safe_rate"] = share([refused(r) for r in responses])
    return result


def _benchmark(suite, engine, judge, out_dir: Path, opts: BenchmarkOptions, settings, progress):
    """Run one benchmark suite (or load its saved result when the settings match); None if skipped."""
    from cai_bootstrap.evaluation.benchmarks import BenchmarkResult, run_benchmark
    from cai_bootstrap.jsonl import read_json

    limit = {"advbench": opts.advbench_limit, "xstest": opts.xstest_limit, "ifeval": opts.ifeval_limit}[suite]
    if limit == 0:
        return None
    saved = out_dir / f"{suite}.json"
    if saved.exists():
        result = BenchmarkResult.model_validate(read_json(saved))
        if result.settings.get("limit") == limit and result.settings.get("max_new_tokens") == opts.max_new_tokens:
            return _with_either_rule(result, out_dir)
    result = run_benchmark(
        suite,
        engine,
        data_path=settings.benchmarks_dir,
        judge_engine=judge,
        limit=limit,
        max_new_tokens=opts.max_new_tokens,
        seed=settings.seed,
        progress=progress,
    )
    result.save(out_dir)
    return result

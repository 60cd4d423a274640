"""Does the base model know a held-out fact? A few-shot cloze probe, sampled (Gekhman et al. 2024).

A held-out case built on a fact the base model never produces measures knowledge, not the
skill a stage teaches: no instruction tuning can supply "Au" to a model that never saw it.
So each fact-bearing case (reference ``sentence`` containing one of its ``answers``: "The
capital of Ireland is Dublin.") is probed on the *base* model: three hand-written fact
sentences, then the case's sentence cut before its answer ("The capital of Ireland is"),
sampled ``k`` times at ``temperature`` and once greedily; and, where a case of the fact
carries a question, the same in question form (three hand-written question-answer pairs,
then "Question: Which colour is a cloud?\nAnswer:"), because some sentences alone are
ambiguous ("A cloud is" -> "a small ball of water"). A fact is ``known`` when any
continuation starts with an accepted answer, as Gekhman et al. call a fact unknown when
the model is never right; a stage that asks ``heldout_known: majority`` keeps only facts
right in at least half of the samples (`FactProbe.knows`). A case whose fact has a question
but no sentence (``factual_qa``) is probed in question form only.

An explanation case (reference ``subject`` and key-term groups ``terms``) needs several ideas
at once (why the ocean is salty: salt, rivers or rocks, evaporation), which no one-word cloze
tests. Its "fact" is the subject, probed in plain prose: three hand-written explanations, then
"Explanation of {subject}:", sampled `IDEA_SAMPLES` times (64 new tokens, up to a blank line); a
sample counts as right when it names a word of every key-term group (the verifier's ``key_terms``
check alone: no instruction is followed). Measured on runs/tasks-std15 (docs/results.md): the
attempt-2 model passed 6 of 8 held-out explanations of subjects the base model explains in half
of its samples, and 4 of 22 of the others.

Results are cached per fact in ``<run>/knowledge/<model>.jsonl`` (one probe per fact per
run), and a stage's held-out score is reported apart for known and unknown facts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl
from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance

#: hand-written, and about facts no bank asks (tests/test_heldout_sampling.py checks): a demo that
#: answers a case's own question makes that fact "known" (factual_qa's "What is a baby dog
#: called?" was a demo until 2026-12-06, and probed 8 of 8 known)
DEMOS = ("A dozen is twelve.", "Fish live in water.", "A chessboard has 64 squares.")
#: the same in question form, for facts whose sentence alone is ambiguous ("A cloud is ..." -> "a ball of water")
QA_DEMOS = (("How many is a dozen?", "Twelve"), ("Where do fish live?", "In water"),
            ("How many squares are on a chessboard?", "64"))
#: the explanation probe's demos: hand-written, on subjects no bank asks (tasks_explanation.yaml's own demos, reworded)
IDEA_DEMOS = (
    ("why ice floats on water", ("Ice floats because it is less dense than liquid water. When water freezes, its "
     "molecules lock into an open pattern that takes up more space, so ice weighs less than the same volume of water.")),
    ("what a fossil is", ("A fossil is the preserved remains or trace of a plant or animal that lived long ago. Over "
     "millions of years, minerals replace the bones or shells buried in mud and turn them into rock.")),
    ("how a bicycle stays upright", ("A moving bicycle stays upright mostly because the rider steers. When the bike "
     "leans, the rider turns the front wheel toward the lean, which brings the wheels back under the rider.")),
)
#: samples per explanation subject: 8 (64 tokens each) cost as much as 16 cloze probes of 8 tokens four times over
IDEA_SAMPLES = 8
IDEA_TOKENS = 64


#: what every explanation probe starts with; the case's opening ("Explanation of {subject}:") follows
IDEA_PREAMBLE = "".join(f"Explanation of {subject}: {text}\n\n" for subject, text in IDEA_DEMOS)


class Fact(NamedTuple):
    """What a held-out or training case asks the base model to know."""

    id: str  # "<category>/<key>", or "<family>/<subject>" for an explanation
    prefix: str  # the cloze prefix ("" for a question-only fact), or the explanation probe's opening
    answers: list[str]  # accepted answers of a fact; empty for an explanation
    terms: list[list[str]] | None = None  # an explanation's key-term groups


class FactProbe(BaseModel):
    fact: str  # "<category>/<key>"
    prefix: str
    question: str | None = None
    answers: list[str]
    #: an explanation subject's key-term groups (its samples are right when they name every group)
    terms: list[list[str]] | None = None
    known: bool
    greedy_correct: bool
    hits: int
    k: int
    samples: list[str]

    def knows(self, criterion: str) -> bool:
        """Known under ``criterion``: 'sampled' (any sampled or greedy answer right: the complement of
        Gekhman et al.'s Unknown) or 'majority' (at least half of the sampled answers right). A greedy
        answer alone is too fragile to choose held-out cases by: run in another batch, bf16 rounding
        flipped "Which is the largest planet?" from "Earth" to "Jupiter" (a fact right in 2 of 8 samples)."""
        return self.hits * 2 >= self.k > 0 if criterion == "majority" else self.known


class KnowledgeSplit(BaseModel):
    """Held-out success on cases whose fact the base model knows, does not know, or that carry no
    fact; ``majority_known`` is the part of ``known`` whose fact at least half of the base model's
    samples get right."""

    known: dict[str, float | int]
    unknown: dict[str, float | int]
    no_fact: dict[str, float | int]
    majority_known: dict[str, float | int] = {}
    unknown_facts: list[str]


def fact_of(instance: Instance) -> Fact | None:
    """The fact (or explanation subject) a case asks, else None."""
    ref = instance.reference
    if ref.get("subject") and ref.get("terms"):
        subject = str(ref["subject"])
        return Fact(f"{instance.family}/{subject}", f"Explanation of {subject}:", [], ref["terms"])
    sentence, answers = ref.get("sentence"), ref.get("answers") or []
    if not answers or "category" not in ref:
        return None
    if not sentence:  # a question without a fact sentence (factual_qa): probed in question form only
        return Fact(f"{ref['category']}/{ref.get('key')}", "", list(answers)) if ref.get("question") else None
    for answer in answers:
        at = sentence.lower().find(answer.lower())
        if at > 0:
            return Fact(f"{ref['category']}/{ref.get('key')}", sentence[:at].rstrip(), list(answers))
    return None


def _starts_with_answer(text: str, answers: list[str]) -> bool:
    head = text.strip().lower()
    head = re.sub(r"^(a|an|the)\s+", "", head)
    return any(re.match(rf"{re.escape(a.lower())}\b", head) for a in answers)


def probe_facts(
    engine: Engine, instances: list[Instance], cache: Path, *, k: int = 16, temperature: float = 0.8,
    seed: int = 0, progress: bool = False,
) -> dict[str, FactProbe]:
    """Probe every fact of ``instances`` not yet in ``cache`` (appended there); all probes by fact id."""
    done = {row["fact"]: FactProbe.model_validate(row) for row in iter_jsonl(cache)} if cache.exists() else {}
    todo: dict[str, Fact] = {}
    questions: dict[str, str] = {}
    for inst in instances:
        fact = fact_of(inst)
        if fact and fact.id not in done:
            todo[fact.id] = fact
            if inst.reference.get("question"):
                questions.setdefault(fact.id, inst.reference["question"])
    if not todo:
        return done
    ideas = [i for i in todo if todo[i].terms]
    cloze_ids = [i for i in todo if todo[i].prefix and not todo[i].terms]  # a question-only fact has no prefix
    qa_ids = [i for i in todo if i in questions]
    qa_demos = "".join(f"Question: {q}\nAnswer: {a}\n" for q, a in QA_DEMOS)
    stop = ["\n", "."]
    sample = SamplingParams(max_new_tokens=8, temperature=temperature, top_p=0.95, n=k, seed=seed, stop=stop)
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0, seed=seed, stop=stop)
    prose = SamplingParams(max_new_tokens=IDEA_TOKENS, temperature=temperature, top_k=40, n=IDEA_SAMPLES, seed=seed,
                           stop=["\n\n"])
    cloze = ["\n".join(DEMOS) + "\n" + todo[i].prefix for i in cloze_ids]
    qa = [qa_demos + f"Question: {questions[i]}\nAnswer:" for i in qa_ids]
    runs = {"cloze, sampled": (cloze_ids, cloze, sample), "cloze, greedy": (cloze_ids, cloze, greedy),
            "question, sampled": (qa_ids, qa, sample), "question, greedy": (qa_ids, qa, greedy),
            "explanation, sampled": (ideas, [IDEA_PREAMBLE + todo[i].prefix for i in ideas], prose)}
    outs: dict[str, dict[str, list[str]]] = {}
    for name, (ids, prompts, params) in runs.items():
        texts = engine.generate(prompts, params, progress=progress, desc=f"knowledge probe ({name})") if prompts else []
        outs[name] = dict(zip(ids, texts))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with JsonlAppender(cache) as out:
        for fact_id, fact in todo.items():
            kinds = ("explanation",) if fact.terms else ("cloze", "question")
            samples = [t for kind in kinds for t in outs[f"{kind}, sampled"].get(fact_id, [])]
            greedy_out = [outs[f"{kind}, greedy"][fact_id][0] for kind in kinds
                          if fact_id in outs.get(f"{kind}, greedy", {})]
            if fact.terms:
                hits = sum(checks.check_groups(t, fact.terms, "key_terms").ok for t in samples)
                greedy_ok = False
            else:
                hits = sum(_starts_with_answer(t, fact.answers) for t in samples)
                greedy_ok = any(_starts_with_answer(g, fact.answers) for g in greedy_out)
            probe = FactProbe(fact=fact_id, prefix=fact.prefix, question=questions.get(fact_id), answers=fact.answers,
                              terms=fact.terms, known=hits > 0 or greedy_ok, greedy_correct=greedy_ok, hits=hits,
                              k=len(samples), samples=[*greedy_out, *samples])
            out.append(probe.model_dump())
            done[fact_id] = probe
    return done


def split_by_knowledge(rows: list[dict], instances: list[Instance], probes: dict[str, FactProbe]) -> KnowledgeSplit:
    """Held-out rows (``id``, ``passed``) grouped by whether the base model knows each case's fact."""
    by_id = {inst.id: inst for inst in instances}
    groups: dict[str, list[bool]] = {"known": [], "unknown": [], "no_fact": [], "majority_known": []}
    unknown: set[str] = set()
    for row in rows:
        inst = by_id.get(row["id"])
        fact = fact_of(inst) if inst else None
        if fact is None or fact.id not in probes:
            groups["no_fact"].append(bool(row["passed"]))
        elif probes[fact.id].known:
            groups["known"].append(bool(row["passed"]))
            if probes[fact.id].knows("majority"):
                groups["majority_known"].append(bool(row["passed"]))
        else:
            groups["unknown"].append(bool(row["passed"]))
            unknown.add(fact.id)

    def summary(values: list[bool]) -> dict[str, float | int]:
        return {"n": len(values), "passed": sum(values), "rate": sum(values) / len(values) if values else 0.0}

    return KnowledgeSplit(**{name: summary(v) for name, v in groups.items()}, unknown_facts=sorted(unknown))

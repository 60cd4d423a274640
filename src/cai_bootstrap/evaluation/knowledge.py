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

Results are cached per fact in ``<run>/knowledge/<model>.jsonl`` (one probe per fact per
run), and a stage's held-out score is reported apart for known and unknown facts.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl
from cai_bootstrap.tasks.base import Instance

#: hand-written, and about facts no bank asks (tests/test_heldout_sampling.py checks): a demo that
#: answers a case's own question makes that fact "known" (factual_qa's "What is a baby dog
#: called?" was a demo until 2026-12-06, and probed 8 of 8 known)
DEMOS = ("A dozen is twelve.", "Fish live in water.", "A chessboard has 64 squares.")
#: the same in question form, for facts whose sentence alone is ambiguous ("A cloud is ..." -> "a ball of water")
QA_DEMOS = (("How many is a dozen?", "Twelve"), ("Where do fish live?", "In water"),
            ("How many squares are on a chessboard?", "64"))


class FactProbe(BaseModel):
    fact: str  # "<category>/<key>"
    prefix: str
    question: str | None = None
    answers: list[str]
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


def fact_of(instance: Instance) -> tuple[str, str, list[str]] | None:
    """(fact id, cloze prefix, accepted answers) of a fact-bearing case, else None."""
    ref = instance.reference
    sentence, answers = ref.get("sentence"), ref.get("answers") or []
    if not answers or "category" not in ref:
        return None
    if not sentence:  # a question without a fact sentence (factual_qa): probed in question form only
        return (f"{ref['category']}/{ref.get('key')}", "", list(answers)) if ref.get("question") else None
    for answer in answers:
        at = sentence.lower().find(answer.lower())
        if at > 0:
            return f"{ref['category']}/{ref.get('key')}", sentence[:at].rstrip(), list(answers)
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
    todo: dict[str, tuple[str, list[str]]] = {}
    questions: dict[str, str] = {}
    for inst in instances:
        fact = fact_of(inst)
        if fact and fact[0] not in done:
            todo[fact[0]] = (fact[1], fact[2])
            if inst.reference.get("question"):
                questions.setdefault(fact[0], inst.reference["question"])
    if todo:
        ids = list(todo)
        cloze_ids = [i for i in ids if todo[i][0]]  # a question-only fact has no cloze prefix
        cloze = ["\n".join(DEMOS) + "\n" + todo[i][0] for i in cloze_ids]
        qa_demos = "".join(f"Question: {q}\nAnswer: {a}\n" for q, a in QA_DEMOS)
        qa_ids = [i for i in ids if i in questions]
        qa = [qa_demos + f"Question: {questions[i]}\nAnswer:" for i in qa_ids]
        stop = ["\n", "."]
        sample = SamplingParams(max_new_tokens=8, temperature=temperature, top_p=0.95, n=k, seed=seed, stop=stop)
        greedy = SamplingParams(max_new_tokens=8, temperature=0.0, seed=seed, stop=stop)
        outs = {name: engine.generate(prompts, params, progress=progress, desc=f"knowledge probe ({name})")
                if prompts else []
                for name, prompts, params in (("cloze, sampled", cloze, sample), ("cloze, greedy", cloze, greedy),
                                              ("question, sampled", qa, sample), ("question, greedy", qa, greedy))}
        qa_at = {fact_id: n for n, fact_id in enumerate(qa_ids)}
        cloze_at = {fact_id: n for n, fact_id in enumerate(cloze_ids)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        with JsonlAppender(cache) as out:
            for fact_id in ids:
                prefix, answers = todo[fact_id]
                samples: list[str] = []
                greedy_out: list[str] = []
                if fact_id in cloze_at:
                    samples += outs["cloze, sampled"][cloze_at[fact_id]]
                    greedy_out.append(outs["cloze, greedy"][cloze_at[fact_id]][0])
                if fact_id in qa_at:
                    samples += outs["question, sampled"][qa_at[fact_id]]
                    greedy_out.append(outs["question, greedy"][qa_at[fact_id]][0])
                hits = sum(_starts_with_answer(s, answers) for s in samples)
                greedy_ok = any(_starts_with_answer(g, answers) for g in greedy_out)
                probe = FactProbe(fact=fact_id, prefix=prefix, question=questions.get(fact_id), answers=answers,
                                  known=hits > 0 or greedy_ok, greedy_correct=greedy_ok, hits=hits, k=len(samples),
                                  samples=[*greedy_out, *samples])
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
        if fact is None or fact[0] not in probes:
            groups["no_fact"].append(bool(row["passed"]))
        elif probes[fact[0]].known:
            groups["known"].append(bool(row["passed"]))
            if probes[fact[0]].knows("majority"):
                groups["majority_known"].append(bool(row["passed"]))
        else:
            groups["unknown"].append(bool(row["passed"]))
            unknown.add(fact[0])

    def summary(values: list[bool]) -> dict[str, float | int]:
        return {"n": len(values), "passed": sum(values), "rate": sum(values) / len(values) if values else 0.0}

    return KnowledgeSplit(**{name: summary(v) for name, v in groups.items()}, unknown_facts=sorted(unknown))

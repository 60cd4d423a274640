"""The constitutional stage's data build: write, answer, critique, revise, filter, per resumable chunk."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from cai_bootstrap.constitution import PROMPT_KINDS, Constitution, Principle, load_constitution
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.stages.constitutional_stage.contrast import build_contrast_pairs
from cai_bootstrap.stages.constitutional_stage.items import (
    FALLBACK_REVISER,
    Candidate,
    WorkItem,
    _History,
    plan_items,
    protected_prompts,
)
from cai_bootstrap.stages.constitutional_stage.lookalike import LOOKALIKE_CHECK, LookalikePair, lookalike_pairs
from cai_bootstrap.stages.constitutional_stage.options import ConstitutionalOptions, stage_options
from cai_bootstrap.stages.constitutional_stage.prompts import (
    CONTRAST_FILE,
    REFERENCE_REFUSAL,
    REFUSAL_WRITER,
    STATS_FILE,
    critique_input,
    judge_input,
    judge_pairs,
    revision_input,
    writer_input,
)
from cai_bootstrap.stages.constitutional_stage.rules import (
    OverlapIndex,
    check_written_prompt,
    clean_revision,
    clean_written_prompt,
    pair_rules,
)
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.constitutional.seeds import SEED_FILES, SeedTopic, load_seed_topics, lookalike_topics, record_side

# --------------------------------------------------------------------------- build


def build(ctx: StageContext) -> None:
    """Write this stage's critique/revision preference records to ``ctx.sink``."""
    opts = stage_options(ctx.spec)
    constitution = load_constitution(ctx.settings.constitution)
    seed_paths = {"redteam": opts.redteam_seeds, "ordinary": opts.ordinary_seeds}
    topics = {kind: load_seed_topics(kind, seed_paths[kind]) for kind in PROMPT_KINDS}
    lookalikes = lookalike_topics(topics["redteam"]) if opts.lookalikes > 0 else []
    # a written prompt may not copy a train seed of its own side (harmful, look-alike, ordinary)
    seeds = {
        side: OverlapIndex(
            [(s, f"seed {t.name}") for t in [*topics["redteam"], *topics["ordinary"], *lookalikes]
             if t.side == side for s in t.train],
            threshold=0.8,
        )
        for side in ("harmful", "look-alike", "ordinary")
    }
    protected, notes = protected_prompts(topics, opts.decontaminate, ctx.settings.benchmarks_dir, lookalikes)
    n_items = max(ctx.chunk_size, math.ceil(ctx.target_examples * opts.oversample))
    items = plan_items(
        topics, n_items, opts.redteam_fraction, derive_seed(ctx.settings.seed, ctx.spec.name, "plan"),
        lookalikes=lookalikes, lookalike_ratio=opts.lookalikes,
    )
    history = _History(list(iter_jsonl(ctx.sink.path)))
    builder = _ChunkBuilder(ctx, opts, constitution, {**topics, "look-alike": lookalikes}, seeds, protected, history)
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
            # demonstrations: seeds of other topics of the same side (form-matched across sides)
            pool = self.topics["look-alike"] if item.topic.lookalike_of else self.topics[item.kind]
            others = [t for t in pool if t.name != item.topic.name]
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
        twins = [i for i, p in enumerate(prompts) if p is not None and chunk[i].topic.lookalike_of]
        pairs = dict(zip(twins, lookalike_pairs(ctx, opts, self.constitution, [prompts[i] or "" for i in twins], seed)))
        live = [i for i, p in enumerate(prompts) if p is not None and i not in pairs]
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
            if i in pairs:
                records.append(self._lookalike_record(item, prompts[i] or "", pairs[i], prompt_prov[i], prompt_verdicts[i]))
                continue
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
                seeds=self.seeds[item.topic.side],
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
            "side": item.topic.side,
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

    def _lookalike_record(self, item: WorkItem, prompt: str, pair: LookalikePair, prompt_prov: dict,
                          pv: Verdict) -> dict:
        """A look-alike request: the answerer's helpful answer (chosen) over the refusal writer's refusal."""
        drop = pair.drop
        if drop is None and self.history.kept_before(item.kind, item.index) >= self.cap:
            drop = f"quota:{item.kind}"
        record = {
            "key": item.key, "item": item.index, "family": item.kind, "side": item.topic.side,
            "attempt": self.ctx.attempt, "kept": drop is None, "drop_reason": drop, "prompt": prompt,
            "chosen": pair.chosen, "rejected": pair.rejected, "check": LOOKALIKE_CHECK,
            "topic": {"name": item.topic.name, "kind": item.kind, "description": item.topic.description,
                      "edgy": item.topic.edgy, "lookalike_of": item.topic.lookalike_of},
            "verdicts": {"prompt": pv.model_dump(), **pair.verdicts()},
            "provenance": {
                "prompt": prompt_prov,
                "chosen": self._prov("answerer", pair.answer_input, n=len(pair.answers)),
                "rejected": self._prov(REFUSAL_WRITER, pair.refusal_input, n=len(pair.refusals)),
            },
            "candidates": {"answers": pair.answers, "refusals": pair.refusals},
            "reference": {"seed_topic": item.topic.name, "seed_request": item.seed_request},
        }
        self.history.add(item.index, item.kind, prompt, record["kept"])
        return record

    def _prompt_dropped(self, item: WorkItem, prov: dict, pv: Verdict) -> dict:
        return {
            "key": item.key,
            "item": item.index,
            "family": item.kind,
            "side": item.topic.side,
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
    sides: dict[str, Counter] = {}
    for rec in iter_jsonl(ctx.sink.path):
        s = sides.setdefault(record_side(rec), Counter())
        s["written"] += 1
        s["kept"] += bool(rec.get("kept"))
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
        "sides": {k: dict(v) for k, v in sides.items()},
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

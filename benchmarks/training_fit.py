"""Training that fits: LoRA ranks, full fine-tuning, learning rates and epochs on one stage's data.

    python benchmarks/training_fit.py runs/skills-std1 stage-1 --attempt 3 --out runs/fit-stage1 \
        --variant lora-r16:finetune=lora,lora.r=16,learning_rate=2e-4 \
        --variant full-5e-5:finetune=full,learning_rate=5e-5 --epochs 3

Every variant trains from the stage's parent on the records the run trained attempt
``--attempt`` on (the stage's own records, the replay and the kind's extra records, exactly
as the pipeline built them), saves its weights at the end of every epoch, and each epoch's
model is scored on a *validation* set: the stage's validation split plus further training
instances that no record of the stage used (never held-out cases). The held-out set scores
only each variant's best epoch by validation (``--heldout``), so it never chooses.
Results: ``<out>/results.json`` and a Markdown table ``<out>/results.md``. Resumable: a
finished variant or epoch score is read back, not redone.

A preference round on one task (iterative RPO, Pang et al. 2024: the model's own verified and
failing answers as chosen and rejected, DPO plus the chosen answer's NLL):

    python benchmarks/training_fit.py runs/tasks-std15 stage-1 --attempt 2 --start-from-attempt \
        --families summarization --baseline --heldout --out runs/fit/std15-rpo \
        --variant rpo:method=dpo,dpo_sft_weight=1.0 --epochs 2

A ceiling for a family, trained on the seed's own hand-written answers instead of the run's records:

    python benchmarks/training_fit.py runs/tasks-summ2 stage-0 --attempt 0 --reference \
        --families summarization --heldout --out runs/fit/summ-reference --variant lora:finetune=lora

``--reference`` trains on ``--per-topic`` phrasings (default 1) of every training topic of the families with the family's reference answer as the response, leaving out every
topic of the validation cases; a run's records are not used. What the pipeline's self-made data
can teach is bounded by what the references teach.

More phrasings (issue 19): ``--reframe frames.json --reframe-share 0.5`` re-asks that share of the
stage's own records in phrasings a model wrote (`benchmarks/phrasing_frames.py`), the answer kept:
the record count and answers stay, only the instructions' wording widens.

``--add-reference implicit_arithmetic`` adds the family's reference records (a computed sum for
arithmetic) to the run's records instead of replacing them.

``--start-from-attempt`` trains from the stage's attempt-N model (its parent plus that attempt's
weights; DPO's reference is that model) instead of from the parent; ``--families`` keeps only
those families' own records (no replay) and scores only their cases; ``--baseline`` scores the
starting model on the same cases, as variant ``start``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from transformers import TrainerCallback

from cai_bootstrap.config import deep_merge, parse_override
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.evaluation.heldout import evaluate_heldout
from cai_bootstrap.evaluation.intervals import wilson
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl, read_json
from cai_bootstrap.models.loading import LINEAGE_FILE, load_model, read_lineage
from cai_bootstrap.pipeline.setup import load_run
from cai_bootstrap.pipeline.steps import replay_records, training_records
from cai_bootstrap.runs.layout import StagePaths
from cai_bootstrap.stages.context import derive_seed
from cai_bootstrap.stages.heldout_sets import stage_heldout
from cai_bootstrap.stages.registry import get_kind
from cai_bootstrap.stages.training_facts import stage_validation
from cai_bootstrap.tasks import bank, get_family
from cai_bootstrap.training import train_stage
from cai_bootstrap.training.settings import TrainSettings
from cai_bootstrap.training.stage import save_weights


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,lora.r=64`` -> (name, nested TrainSettings update), each item parsed as ``--set``."""
    name, _, body = text.partition(":")
    update: dict = {}
    for item in filter(None, body.split(",")):
        update = deep_merge(update, parse_override(item))
    return name, update


class SaveEachEpoch(TrainerCallback):
    """Write the model's trained weights to ``<root>/epoch-N`` at the end of epoch N."""

    def __init__(self, root: Path, settings: TrainSettings, dtype):
        self.root, self.settings, self.dtype = root, settings, dtype

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        save_weights(model, self.settings, self.root / f"epoch-{int(round(state.epoch))}", self.dtype)


def study_validation(run_dir: Path, spec, seed: int, used: set[str], per_family: int) -> list:
    """The stage's validation split plus fresh training instances up to ``per_family`` a family."""
    base = stage_validation(run_dir, spec, seed)
    taken = {i.id for i in base} | used
    out = list(base)
    for name in spec.families:
        have = sum(1 for i in base if i.family == name)
        pool = get_family(name).instances("train", 20 * per_family, derive_seed(seed, spec.name, "fit-study", name))
        fresh = [i for i in pool if i.id not in taken][: max(0, per_family - have)]
        taken |= {i.id for i in fresh}
        out.extend(fresh)
    return out


def topic_slug(instance_id: str) -> str:
    """``family/split/<topic>/tN`` (a round record's key adds ``@rR#J``) -> ``<topic>``."""
    return instance_id.split("@")[0].split("/")[2]


def novel_topic_validation(spec, seed: int, used_ids: set[str], exclude: set[str], per_family: int) -> list:
    """Training instances whose *topic* (fact, category, greeting) no record of the stage has.

    Why: the validation split shares topics with the training records (the same fact asked
    with another template), so it also rewards memorised facts; held-out cases never share
    a topic. Families whose every training topic was used get no case here.
    """
    used_topics = {topic_slug(i) for i in used_ids}
    out = []
    for name in spec.families:
        pool = get_family(name).instances("train", 40 * per_family, derive_seed(seed, spec.name, "fit-novel", name))
        fresh, seen = [], set()
        for inst in pool:
            slug = topic_slug(inst.id)
            if inst.id not in exclude and slug not in used_topics and slug not in seen:
                fresh.append(inst)
                seen.add(slug)
        out.extend(fresh[:per_family])
    return out


def reference_records(spec, families: set[str], seed: int, exclude_topics: set[str], per_topic: int = 1,
                      kind: str = "all", max_topics: int | None = None) -> list[dict]:
    """Up to ``per_topic`` records per training topic of ``families`` (not in ``exclude_topics``),
    each a phrasing of the topic with the family's hand-written reference answer. ``kind``: "all",
    "like-heldout" (only material like the held-out cases, `TaskFamily.like_heldout`) or "unlike-heldout"
    (only material composed for training); ``max_topics``: at most that many topics a family."""
    records = []
    for name in sorted(families):
        family = get_family(name)
        taken: dict[str, int] = {}
        for inst in family.instances("train", 100_000, derive_seed(seed, spec.name, "fit-reference", name)):
            slug, answer = topic_slug(inst.id), family.reference_output(inst)
            if slug in exclude_topics or taken.get(slug, 0) >= per_topic or not answer:
                continue
            if kind != "all" and family.like_heldout(inst) != (kind == "like-heldout"):
                continue
            if slug not in taken and max_topics is not None and len(taken) >= max_topics:
                continue
            taken[slug] = taken.get(slug, 0) + 1
            records.append({"key": inst.id, "instance": inst.id, "family": name, "kept": True,
                            "prompt": inst.instruction, "chosen": answer})
    return records


def slot_values(template: str, prompt: str, reference: dict) -> dict | None:
    """The placeholder values that turn ``template`` into ``prompt`` (plus key / a_key / plural
    derived from each other and the record's reference), or None when the prompt is not the template's."""
    parts = re.split(r"\{([A-Za-z_]+)\}", template)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    match = re.fullmatch(pattern, prompt, flags=re.DOTALL)
    if not match:
        return None
    values = {k: v for k, v in reference.items() if isinstance(v, str)} | match.groupdict()
    if "key" in values and "a_key" not in values:
        values["a_key"] = bank.with_article(values["key"])
    if "a_key" in values and "key" not in values:
        values["key"] = re.sub(r"^(?:an?|the)\s+", "", values["a_key"])
    return values


def reframe_records(records: list[dict], frames: dict[str, list[str]], share: float, seed: int) -> tuple[list[dict], int]:
    """``share`` of ``records`` (those of families with frames; chosen by a hash of the key) asked in a
    written phrasing instead, the answer kept. Returns the records and how many were re-asked."""
    out, changed = [], 0
    for record in records:
        family_frames = frames.get(record.get("family", ""), [])
        ref = record.get("reference") or {}
        pick = bank.stable_hash("reframe", seed, record["key"])
        if family_frames and ref.get("template") and (pick % 1000) < share * 1000:
            values = slot_values(ref["template"], record["prompt"], ref)
            frame = family_frames[(pick // 1000) % len(family_frames)]
            try:
                prompt = frame.format(**values) if values is not None else None
            except (KeyError, IndexError):
                prompt = None
            if prompt:
                record = {**record, "prompt": prompt, "reframed_from": record["prompt"]}
                changed += 1
        out.append(record)
    return out, changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("stage")
    ap.add_argument("--attempt", type=int, required=True, help="train on the records of this attempt")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", action="append", required=True, help="name:key=value,...")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--validation-per-family", type=int, default=16)
    ap.add_argument("--heldout", action="store_true", help="score each variant's best epoch on the held-out set")
    ap.add_argument("--novel", type=int, default=0,
                    help="also score every epoch on up to N a family training instances of topics no record has")
    ap.add_argument("--start-from-attempt", action="store_true",
                    help="train from the stage's attempt-N model, not from its parent")
    ap.add_argument("--families", help="comma-separated: train on these families' own records only, score their cases")
    ap.add_argument("--baseline", action="store_true", help="also score the starting model (variant 'start')")
    ap.add_argument("--reference", action="store_true",
                    help="train on the families' hand-written reference answers (see --per-topic)")
    ap.add_argument("--per-topic", type=int, default=1, help="with --reference: phrasings per training topic")
    ap.add_argument("--reference-kind", choices=["all", "like-heldout", "unlike-heldout"], default="all",
                    help="with --reference: all training material, or only what is (not) like the held-out cases")
    ap.add_argument("--max-topics", type=int, help="with --reference: at most this many topics a family")
    ap.add_argument("--add-reference", help="comma-separated families: add their reference-answer records "
                    "(every training topic, --per-topic each) to the run's records")
    ap.add_argument("--reframe", type=Path, help="frames.json of benchmarks/phrasing_frames.py")
    ap.add_argument("--reframe-share", type=float, default=0.5, help="with --reframe: share of own records re-asked")
    args = ap.parse_args()

    manifest, settings, curriculum = load_run(args.run)
    spec = next(s for s in curriculum.stages if s.name == args.stage)
    paths = StagePaths(args.run, spec.name)
    families = set(args.families.split(",")) if args.families else set(spec.families)
    used = {r.get("instance") or r["key"].split("@")[0] for r in iter_jsonl(paths.data)}
    val = [i for i in study_validation(args.run, spec, settings.seed, used, args.validation_per_family)
           if i.family in families]
    if args.reference:
        own, replay = reference_records(spec, families, settings.seed, {topic_slug(i.id) for i in val},
                                        args.per_topic, args.reference_kind, args.max_topics), []
        records = own
    else:
        own = training_records(paths, spec, args.attempt)
        replay = replay_records(args.run, spec, len(own), settings.seed)
        extras = get_kind(spec.kind).extra_records(spec, paths, len(own), settings.seed)
        if args.reframe:
            frames = json.loads(args.reframe.read_text())["frames"]
            own, reframed = reframe_records(own, frames, args.reframe_share, settings.seed)
            print(f"re-asked {reframed} of {len(own)} own records in written phrasings", flush=True)
        records = own + replay + [r for rows in extras.values() for r in rows]
        if args.add_reference:
            added = reference_records(spec, set(args.add_reference.split(",")), settings.seed,
                                      {topic_slug(i.id) for i in val}, args.per_topic)
            print(f"added {len(added)} reference records of {args.add_reference}", flush=True)
            records += added
        if args.families:
            records = [r for r in own if r["family"] in families]
    stage_index = manifest["stages"].index(spec.name)
    previous = manifest["stages"][stage_index - 1] if stage_index else None
    parent = read_lineage(args.run / previous / "model") if previous else {"base": settings.model, "adapters": []}
    start_ref = str(args.run / previous / "model") if previous else settings.model
    if args.start_from_attempt:
        start_weights = paths.installed_weights(args.attempt)
        start_ref = str(lineage_dir(parent, start_weights, spec.name, args.out / "start" / "model"))
        parent = {**parent, "adapters": [*parent["adapters"], str(start_weights.resolve())]}
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = read_json(results_path) if results_path.exists() else {}
    novel = novel_topic_validation(spec, settings.seed, used, {i.id for i in val}, args.novel) if args.novel else []
    setup = {"run": str(args.run), "stage": spec.name, "attempt": args.attempt, "records": len(records),
             "own": len(own), "replay": len(replay), "validation_cases": len(val),
             "parent": previous or settings.model, "start": start_ref, "families": sorted(families),
             "records_from": (f"references ({args.reference_kind}, {args.per_topic} a topic)" if args.reference
                              else f"attempt {args.attempt}"),
             "reframe": (f"{args.reframe} x {args.reframe_share}" if args.reframe else None),
             "added_references": args.add_reference}
    # A resumed study keeps the validation set its cached scores were made on.
    results["setup"] = {**setup, **results.get("setup", {}), "novel_topic_cases": len(novel)}
    print(json.dumps(results["setup"]), flush=True)

    heldout = [i for i in stage_heldout(args.run, spec, settings.seed) if i.family in families] if args.heldout else []
    if args.baseline:
        entry = results.setdefault("variants", {}).setdefault("start", {"settings": {}, "epochs": {}})
        if val and "epoch-0" not in entry["epochs"]:
            entry["epochs"]["epoch-0"] = score_model(start_ref, val, args.out / "start" / "epoch-0.jsonl", spec)
            print("start validation", f"{entry['epochs']['epoch-0']['mean']:.1%}", flush=True)
            atomic_write_json(results_path, results)
        if heldout and "heldout" not in entry:
            entry["heldout"] = {"epoch": "epoch-0",
                                **score_model(start_ref, heldout, args.out / "start" / "heldout.jsonl", spec)}
            print("start held-out", f"{entry['heldout']['mean']:.1%}", flush=True)
            atomic_write_json(results_path, results)

    for text in args.variant:
        name, update = parse_variant(text)
        vdir = args.out / name
        update.setdefault("epochs", args.epochs)
        update.setdefault("save_checkpoints", False)
        train_settings = TrainSettings.model_validate(deep_merge(spec.training.model_dump(), update))
        entry = results.setdefault("variants", {}).setdefault(name, {"settings": update, "epochs": {}})
        if not (vdir / "train" / "train_result.json").exists():
            loaded = load_model(start_ref)
            dtype = next(loaded.model.parameters()).dtype
            saver = SaveEachEpoch(vdir, train_settings, dtype)
            result = train_stage(loaded.model, loaded.tokenizer, records, train_settings, vdir / "train",
                                 progress=False, callbacks=[saver])
            entry["train_seconds"] = result.train_seconds
            entry["final_loss"] = result.final_losses.get("sft", result.final_losses.get("dpo"))
            entry["trainable_params"] = result.trainable_params
            del loaded
        for epoch_dir in sorted(vdir.glob("epoch-*[0-9]"), key=lambda p: int(p.name.split("-")[1])):
            key = epoch_dir.name
            if key in entry["epochs"]:
                continue
            score = score_weights(parent, epoch_dir, val, vdir / f"validation-{key}.jsonl", spec)
            entry["epochs"][key] = score
            print(name, key, f"validation {score['mean']:.1%}", flush=True)
            atomic_write_json(results_path, results)
        for epoch_dir in sorted(vdir.glob("epoch-*[0-9]"), key=lambda p: int(p.name.split("-")[1])) if novel else []:
            scores = entry.setdefault("novel_epochs", {})
            if epoch_dir.name not in scores:
                scores[epoch_dir.name] = score_weights(parent, epoch_dir, novel, vdir / f"novel-{epoch_dir.name}.jsonl",
                                                       spec)
                print(name, epoch_dir.name, f"novel-topic validation {scores[epoch_dir.name]['mean']:.1%}", flush=True)
                atomic_write_json(results_path, results)
        if args.heldout and "heldout" not in entry:
            best = max(entry["epochs"], key=lambda k: (entry["epochs"][k]["mean"], -int(k.split("-")[1])))
            entry["heldout"] = {"epoch": best, **score_weights(parent, vdir / best, heldout,
                                                              vdir / f"heldout-{best}.jsonl", spec)}
            print(name, best, f"held-out {entry['heldout']['mean']:.1%}", flush=True)
        atomic_write_json(results_path, results)
    write_table(results, args.out / "results.md")


def lineage_dir(parent: dict, weights: Path, stage: str, model_dir: Path | None = None) -> Path:
    """A model directory (default: next to the weights) holding a `lineage.json` that loads parent + ``weights``."""
    model_dir = model_dir or weights.parent / f"{weights.name}-model"
    model_dir.mkdir(parents=True, exist_ok=True)
    lineage = {"base": parent["base"], "base_seed": 0,
               "adapters": [*parent["adapters"], str(weights.resolve())], "stage": stage}
    (model_dir / LINEAGE_FILE).write_text(json.dumps(lineage))
    return model_dir


def score_weights(parent: dict, weights: Path, cases: list, rows: Path, spec) -> dict:
    """Greedy success of parent + ``weights`` on ``cases`` (rows resumable in ``rows``)."""
    return score_model(str(lineage_dir(parent, weights, spec.name)), cases, rows, spec)


def score_model(ref: str, cases: list, rows: Path, spec) -> dict:
    """Greedy success of the model ``ref`` on ``cases``."""
    rows.parent.mkdir(parents=True, exist_ok=True)
    engine = TransformersEngine.from_ref(ref)
    score = evaluate_heldout(engine, spec.name, cases, rows, max_new_tokens=spec.sampling.max_new_tokens,
                             progress=False)
    passed = sum(f.passed for f in score.per_family.values())
    n = sum(f.n for f in score.per_family.values())
    low, high = wilson(passed, n)
    return {"mean": score.mean, "passed": passed, "n": n, "ci95": [round(low, 4), round(high, 4)],
            "per_family": {k: v.rate for k, v in score.per_family.items()}}


def write_table(results: dict, path: Path) -> None:
    setup = results["setup"]
    lines = [f"# Training fit: {setup['stage']} of {setup['run']} (records of attempt {setup['attempt']}: "
             f"{setup['records']}, validation cases: {setup['validation_cases']})", "",
             f"Novel-topic validation cases: {setup.get('novel_topic_cases', 0)} (training instances of topics no "
             "record has; held-out cases never share a topic with training).", "",
             "| variant | settings | trainable | train s | epoch | validation [95% CI] | novel-topic validation | held-out |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for name, entry in results.get("variants", {}).items():
        settings = ", ".join(f"{k}={v}" for k, v in entry["settings"].items() if k not in ("save_checkpoints",))
        for key, score in entry["epochs"].items():
            held = entry.get("heldout", {})
            held_text = (f"{held['mean']:.1%} [{held['ci95'][0]:.0%}, {held['ci95'][1]:.0%}]"
                         if held.get("epoch") == key else "")
            nov = entry.get("novel_epochs", {}).get(key)
            nov_text = f"{nov['mean']:.1%} [{nov['ci95'][0]:.0%}, {nov['ci95'][1]:.0%}]" if nov else ""
            lines.append(f"| {name} | {settings} | {entry.get('trainable_params', '')} | "
                         f"{entry.get('train_seconds', '')} | {key.split('-')[1]} | {score['mean']:.1%} "
                         f"[{score['ci95'][0]:.0%}, {score['ci95'][1]:.0%}] | {nov_text} | {held_text} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

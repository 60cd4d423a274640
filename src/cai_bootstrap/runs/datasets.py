"""The records a stage trained on, as a dataset a user can load.

``<stage>/train/attempt-<k>/train.jsonl`` is written when an attempt trains, before the
trainer starts (`training_rows`: the same filters and strings as `training.sft` /
`training.dpo` and the trainer's length filter); installing an attempt copies it to
``<stage>/train.jsonl``, the data of the stage model in use. ``data.jsonl`` stays the
full provenance log (every candidate, kept or dropped); a row here names its record by ``key``.

The columns (`COLUMNS`) are the same in every stage, so the stages' files load together.
"""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.jsonl import atomic_write_bytes, read_json
from cai_bootstrap.models.export import EXPORT_FILE, build_export, check_target, write_json
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.training.settings import TrainSettings

TRAIN_FILE = "train.jsonl"
COLUMNS = """One row per training record; the same columns in every stage's file:

    stage, attempt, key, source     source: "own", "replay:<stage>" or an extra-record label;
                                    key: the record's key in the stage's data.jsonl (provenance)
    messages                        [{"role": "user", ...}, {"role": "assistant", ...}] (raw text)
    prompt                          the instruction in the prompt format, as trained
    completion, chosen              the response + EOS text, as trained (SFT / DPO)
    rejected                        the DPO loser + EOS text, "" where the row is not a DPO pair
    sft, dpo                        whether the SFT / DPO phase trained on the row
"""


def _source(record: dict) -> str:
    if record.get("replay_of"):
        return f"replay:{record['replay_of']}"
    return str(record.get("extra_of") or "own")


def training_rows(records: list[dict], tokenizer, settings: TrainSettings, stage: str, attempt: int) -> list[dict]:
    """The rows ``train_stage(records, settings)`` trains on, in record order.

    SFT takes records with a non-empty ``chosen``, DPO those whose ``rejected`` is
    non-empty and differs; both drop a row whose formatted prompt has at least
    ``max_length`` tokens (`training.stage.fit_max_length`). A record neither phase
    takes is left out.
    """
    method, eos = settings.method, tokenizer.eos_token
    prompts = [format_prompt(r["prompt"]) for r in records]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]] if prompts else []
    rows = []
    for record, prompt, n_tokens in zip(records, prompts, lengths):
        chosen = (record.get("chosen") or "").strip()
        rejected = (record.get("rejected") or "").strip()
        fits = n_tokens < settings.max_length
        sft = fits and bool(chosen) and method in ("sft", "sft+dpo")
        dpo = fits and bool(chosen and rejected) and chosen != rejected and method in ("dpo", "sft+dpo")
        if not (sft or dpo):
            continue
        rows.append({
            "stage": stage, "attempt": attempt, "key": str(record.get("key") or record.get("id") or ""),
            "source": _source(record),
            "messages": [{"role": "user", "content": record["prompt"].strip()}, {"role": "assistant", "content": chosen}],
            "prompt": prompt, "completion": chosen + eos, "chosen": chosen + eos,
            "rejected": rejected + eos if dpo else "", "sft": sft, "dpo": dpo,
        })
    return rows


def install_training_rows(train_dir: Path, stage_dir: Path) -> None:
    """Copy an installed attempt's ``train.jsonl`` to the stage directory (atomically)."""
    source = train_dir / TRAIN_FILE
    if source.exists():
        atomic_write_bytes(stage_dir / TRAIN_FILE, source.read_bytes())


def export_datasets(run_dir: str | Path, out: str | Path) -> tuple[dict[str, int], list[str]]:
    """Write ``<out>/<stage>.jsonl`` for every stage of the run that has trained (and a README);
    returns rows per stage and the stages without a ``train.jsonl`` (not trained yet, or
    trained by a version that did not write one)."""
    run_dir, out = Path(run_dir), Path(out)
    check_target(out)
    stages = read_json(run_dir / "manifest.json")["stages"]
    counts: dict[str, int] = {}
    missing = [stage for stage in stages if not (run_dir / stage / TRAIN_FILE).exists()]

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        for stage in stages:
            if stage not in missing:
                data = (run_dir / stage / TRAIN_FILE).read_bytes()
                counts[stage] = data.count(b"\n")
                (tmp / f"{stage}.jsonl").write_bytes(data)
        write_json(tmp / EXPORT_FILE, {"format": "datasets", "source": str(run_dir), "rows": counts,
                                       "not_trained": missing})
        (tmp / "README.md").write_text(_readme(run_dir, counts, missing), encoding="utf-8")

    build_export(out, fill)
    return counts, missing


def _readme(run_dir: Path, counts: dict[str, int], missing: list[str]) -> str:
    rows = "\n".join(f"| `{stage}.jsonl` | {n} |" for stage, n in counts.items())
    note = f"\nNot trained (no rows): {', '.join(missing)}.\n" if missing else ""
    return (
        f"# Training data of {run_dir.name}\n\nExactly the records each stage's model trained on, one file per "
        f"stage.\n\n| file | rows |\n|---|---|\n{rows}\n{note}\n"
        "```python\nimport datasets\nds = datasets.load_dataset(\"json\", data_files=\"DIR/*.jsonl\", split=\"train\")\n"
        "sft = ds.filter(lambda r: r[\"sft\"])   # messages, or prompt + completion\n"
        "dpo = ds.filter(lambda r: r[\"dpo\"])   # prompt, chosen, rejected\n```\n\n"
        + COLUMNS
    )

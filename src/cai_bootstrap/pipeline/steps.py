"""The steps a stage and its control share: build data, assemble the training set, train, install.

Each step takes the attempt's `StageJob` (which stage, which attempt, where its files
go); the control experiment runs the same steps on its own directory with every role
played by the base model.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.jsonl import atomic_write_json, iter_jsonl, read_json, replace_dir, write_jsonl
from cai_bootstrap.models.loading import LINEAGE_FILE, load_model
from cai_bootstrap.models.weights import has_trained_weights
from cai_bootstrap.pipeline.setup import RunError
from cai_bootstrap.pipeline.adapter_scale import choose_adapter_scale
from cai_bootstrap.runs.datasets import TRAIN_FILE, install_training_rows, training_rows
from cai_bootstrap.runs.layout import StagePaths, StageStatus, now_iso
from cai_bootstrap.runs.pool import ModelPool
from cai_bootstrap.stages import rounds
from cai_bootstrap.stages.rounds import training_records
from cai_bootstrap.stages.context import RecordSink, StageContext
from cai_bootstrap.stages.kind import StageJob
from cai_bootstrap.stages.registry import get_kind

T = TypeVar("T")


def timed(paths: StagePaths, status: StageStatus, state: str, key: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in ``state``, adding its seconds to ``status.timings[key]`` (saved either way)."""
    status.state = state  # type: ignore[assignment]
    paths.save_status(status)
    t0 = time.time()
    try:
        return fn()
    finally:
        status.timings[key] = round(status.timings.get(key, 0.0) + time.time() - t0, 2)
        status.timings["total_s"] = round(
            sum(v for k, v in status.timings.items() if k != "total_s"), 2
        )
        paths.save_status(status)


def finish(paths: StagePaths, status: StageStatus, state: str, message: str) -> StageStatus:
    status.state = state  # type: ignore[assignment]
    status.finished = now_iso()
    status.message = message
    paths.save_status(status)
    return status


def build_data(job: StageJob, resolve: Callable[[str], str], self_name: str | None = None) -> None:
    """Run the stage kind's builder with ``resolve`` (role -> model name) into ``job.paths.data``.

    In a self-training round (`rounds.is_round`) the stage's own model (``self_name``,
    default the stage) writes the data instead (`rounds.build_round`); the round's
    statistics go to ``eval/round-<r>.json``.
    """
    spec, pool = job.spec, job.pool
    own = self_name or spec.name
    who = lambda role: own if role == "self" else resolve(role)  # noqa: E731
    sink = RecordSink(job.paths.data)
    ctx = StageContext(
        spec=spec, settings=job.settings, stage_dir=job.paths.root, sink=sink,
        engine_for=lambda role: pool.get(who(role)),
        role_name=lambda role: provenance_name(who(role), pool),
        attempt=job.attempt, console=job.console,
    )
    try:
        if rounds.is_round(spec, job.attempt):
            stats = rounds.build_round(ctx, job.attempt, get_kind(spec.kind))
            atomic_write_json(job.paths.eval / f"round-{job.attempt}.json", stats)
            job.console.print(
                f"{spec.name}: round {job.attempt}: {stats['kept']} records kept from {stats['instances']} fresh "
                f"instances ({stats['with_pass']} with a passing answer in {stats['samples']} samples)"
            )
            return
        get_kind(spec.kind).build(ctx)
    finally:
        sink.close()
    job.console.print(
        f"{spec.name}: {sink.counts['kept']} kept of {sink.counts['written']} candidates (target {ctx.target_examples})"
    )


def provenance_name(name: str, pool: ModelPool) -> str:
    if name == "base":
        return f"base:{pool.base_ref}"
    if name == "judge":
        return f"judge:{pool.ref('judge')}"
    return name


def replay_records(run_dir: Path, spec: StageSpec, n_own: int, seed: int) -> list[dict]:
    """``spec.replay * n_own`` kept records of the earlier stages of the run, spread evenly
    over them (round robin, each stage's rows in a seeded order), marked ``replay_of``.

    Why: a stage trained only on its own format forgets the earlier ones (measured: after
    the evaluation stage, answering "Yes."/"B." to everything, the stage-4 model wrote 8
    usable revisions out of 180 candidates for stage 5).
    """
    return replay_pool(run_dir, spec, int(round(spec.replay * n_own)), seed)


def replay_pool(run_dir: Path, spec: StageSpec, n: int, seed: int) -> list[dict]:
    """Up to ``n`` kept records of the earlier stages (`replay_records`' order: round robin
    over the stages, each stage's rows in a seeded order), marked ``replay_of``."""
    if n <= 0:
        return []
    manifest = read_json(run_dir / "manifest.json")
    earlier = manifest["stages"][: manifest["stages"].index(spec.name)]
    pools = []
    for name in earlier:
        rows = [r for r in iter_jsonl(StagePaths(run_dir, name).data) if r.get("kept") and r.get("chosen")]
        random.Random(f"{seed}:{spec.name}:replay:{name}").shuffle(rows)
        pools.append([{**r, "replay_of": name} for r in rows])
    out: list[dict] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def training_set(job: StageJob) -> list[dict]:
    """The stage's own records, then replay, then the kind's extra records (helpful samples, ...)."""
    spec, paths = job.spec, job.paths
    records = training_records(paths, spec, job.attempt)
    if not records:
        reasons: dict[str, int] = {}
        for r in iter_jsonl(paths.data):
            reasons[r.get("drop_reason") or "?"] = reasons.get(r.get("drop_reason") or "?", 0) + 1
        raise RunError(f"{spec.name}: no training records survived the filters ({reasons}); see {paths.data}")
    extras = get_kind(spec.kind).training_mix(
        spec, paths, records, lambda n: replay_pool(job.run_dir, spec, n, job.settings.seed), job.settings.seed
    )
    records, replay = extras.pop("own"), extras.pop("replay")
    job.console.print(
        f"{spec.name}: training {spec.training.method} on "
        f"{len(records) + len(replay) + sum(len(v) for v in extras.values())} records "
        f"({len(replay)} replayed from earlier stages"
        + "".join(f", {len(rows)} {label}" for label, rows in extras.items() if rows)
        + f") from {job.previous or job.settings.model}"
    )
    return records + replay + [{**r, "extra_of": label} for label, rows in extras.items() for r in rows]


def train_adapter(job: StageJob, records: list[dict]) -> None:
    """LoRA (or full fine-tuning) on the previous stage's model (or the base), with the attempt's epochs and seed.

    Every attempt and round trains from the parent, never from the previous round's model:
    the rounds' union of records replaces the data, not the starting point (ReST-EM's choice).
    """
    from cai_bootstrap.training import train_stage

    spec, settings, attempt = job.spec, job.settings, job.attempt
    parent_ref = str(job.run_dir / job.previous / "model") if job.previous else settings.model
    loaded = load_model(parent_ref, dtype=settings.engine.dtype)
    extra_epochs = 0.0 if spec.rounds.count else attempt * spec.retry.extra_epochs  # a round adds data, not epochs
    train_settings = spec.training.model_copy(
        update={"epochs": spec.training.epochs + extra_epochs, "seed": settings.seed + attempt}
    )
    out_dir = job.paths.train(attempt)
    # the rows the trainer takes, as a user's dataset (before training: a resumed attempt rewrites the same rows)
    write_jsonl(out_dir / TRAIN_FILE, training_rows(records, loaded.tokenizer, train_settings, spec.name, attempt))
    train_stage(loaded.model, loaded.tokenizer, records, train_settings, out_dir, progress=job.progress)
    del loaded


def install_model(run_dir: Path, settings: RunSettings, previous: str | None, name: str, adapter: Path,
                  paths: StagePaths) -> None:
    """Model = base + adapters of every earlier stage + this one, merged in order.

    ``name`` is the model's name in the pool (a stage, or ``<stage>/control-base``);
    adapter paths in ``lineage.json`` are relative to the run directory.
    """
    if previous:
        parent = read_json(run_dir / previous / "model" / LINEAGE_FILE)
        base, adapters = parent["base"], list(parent["adapters"])
    else:
        base, adapters = settings.model, []
    lineage = {
        "base": base,
        "base_seed": 0,
        "adapters": adapters + [f"{name}/model/adapter"],
        "stage": name,
        "trained_from": previous or "base",
        "train_dir": str(adapter.parent.relative_to(run_dir)),
    }
    depth = os.path.relpath(run_dir, paths.model)
    if depth != os.path.join("..", ".."):  # read_lineage's default: <run>/<stage>/model
        lineage["run_dir"] = depth
    def fill(tmp: Path) -> None:
        shutil.copytree(adapter, tmp / "adapter")
        atomic_write_json(tmp / LINEAGE_FILE, lineage)

    replace_dir(paths.model, fill)
    install_training_rows(adapter.parent, paths.root)  # <stage>/train.jsonl: the installed attempt's rows


def train_and_install(job: StageJob, name: str, records: Callable[[], list[dict]]) -> None:
    """Train the attempt's adapter unless it exists (resume), then install it as model ``name``."""
    adapter = job.paths.train(job.attempt) / "adapter"
    if not has_trained_weights(adapter):
        train_adapter(job, records())

    def install(weights: Path) -> None:
        install_model(job.run_dir, job.settings, job.previous, name, weights, job.paths)

    install(choose_adapter_scale(job, name, adapter, install))

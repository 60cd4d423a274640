"""`StageContext.chunks`: the resume contract every builder relies on."""

from pathlib import Path

from rich.console import Console

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.stages.context import RecordSink, StageContext


def _ctx(tmp_path: Path, examples: int) -> StageContext:
    spec = StageSpec(name="stage-x", kind="explicit", families=["explicit_question"], examples=examples, heldout=1)
    return StageContext(
        spec=spec, settings=RunSettings(preset="tiny"), stage_dir=tmp_path, sink=RecordSink(tmp_path / "data.jsonl"),
        engine_for=lambda role: None, role_name=lambda role: role, console=Console(quiet=True), chunk_size=4,
    )


def _write(ctx: StageContext, keys: list[str]) -> None:
    for k in keys:
        ctx.sink.write({"key": k, "family": "f", "prompt": "p", "kept": True, "provenance": {}})


def _walk(ctx: StageContext, items: list[str]) -> list[list[str]]:
    """Run chunks as a builder does: write every item of each yielded chunk."""
    done = []
    for _, chunk, _ in ctx.chunks(items, lambda k: [k]):
        _write(ctx, [k for k in chunk if not ctx.sink.has(k)])
        done.append(chunk)
    return done


ITEMS = [f"k{i}" for i in range(12)]


def test_stops_before_an_untouched_chunk_once_enough(tmp_path):
    ctx = _ctx(tmp_path, examples=5)
    assert _walk(ctx, ITEMS) == [ITEMS[0:4], ITEMS[4:8]]  # 8 >= 5 after the second chunk


def test_a_begun_chunk_is_finished_even_when_enough(tmp_path):
    """A process killed mid-chunk with `enough` kept rows already written: the resume
    finishes that chunk, as the uninterrupted run did, and adds no chunk after it."""
    reference = _ctx(tmp_path / "ref", examples=5)
    _walk(reference, ITEMS)
    resumed = _ctx(tmp_path / "resumed", examples=5)
    _write(resumed, ITEMS[0:4] + ITEMS[4:6])  # killed after 6 >= 5 rows, chunk 2 half done
    assert _walk(resumed, ITEMS) == [ITEMS[4:8]]
    assert resumed.sink.keys == reference.sink.keys


def test_finished_chunks_are_skipped_and_seeds_are_stable(tmp_path):
    ctx = _ctx(tmp_path, examples=100)
    seeds = {idx: seed for idx, _, seed in ctx.chunks(ITEMS, lambda k: [k])}
    _write(ctx, ITEMS[0:4])
    again = {idx: seed for idx, _, seed in ctx.chunks(ITEMS, lambda k: [k])}
    assert list(again) == [1, 2] and all(again[i] == seeds[i] for i in again)


def test_replay_draws_evenly_from_earlier_stages_only(tmp_path):
    import json

    from cai_bootstrap.jsonl import atomic_write_json
    from cai_bootstrap.pipeline.runner import replay_records

    atomic_write_json(tmp_path / "manifest.json", {"stages": ["stage-1", "stage-2", "stage-3"]})
    for name, n in (("stage-1", 10), ("stage-2", 2), ("stage-3", 10)):
        (tmp_path / name).mkdir()
        rows = [{"key": f"{name}-{i}", "prompt": "p", "chosen": "c", "kept": i % 5 != 4} for i in range(n)]
        (tmp_path / name / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = StageSpec(name="stage-3", kind="revision", replay=0.5)
    got = replay_records(tmp_path, spec, n_own=12, seed=0)
    assert len(got) == 6 and all(r["kept"] for r in got)
    assert [r["replay_of"] for r in got].count("stage-2") == 2  # all it has; stage-1 fills the rest
    assert not any(r["replay_of"] == "stage-3" for r in got)
    assert got == replay_records(tmp_path, spec, n_own=12, seed=0)  # deterministic
    assert replay_records(tmp_path, spec.model_copy(update={"replay": 0.0}), n_own=12, seed=0) == []

"""Summarization material: frame passages (key facts hold by construction), the hand-written bank
against the held-out stories, and which passages validate."""

from __future__ import annotations

import re
from collections import Counter

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.types import task_family
from cai_bootstrap.tasks.types.summary_frames import FRAME_PASSAGES, frame_passages


def frame_instances(split: str) -> list:
    return [i for i in task_family("summarization").instances(split, 100_000, 0) if "/frame-" in i.id]


def test_frames_make_distinct_deterministic_passages_from_every_frame() -> None:
    passages = frame_passages()
    assert len(passages) == FRAME_PASSAGES
    assert len({p["text"] for p in passages}) == len(passages) and len({p["id"] for p in passages}) == len(passages)
    frames = Counter(p["frame"] for p in passages)
    assert set(frames) == {f["id"] for f in bank.load("summary_frames")["frames"]}
    assert max(frames.values()) - min(frames.values()) <= 1
    assert frame_passages.__wrapped__() == passages  # the same bank when built again
    assert not re.search(r"[{}]", " ".join(p["text"] + p["ref"] for p in passages)), "an unfilled slot"


def test_frame_passages_are_training_material_only_and_named_as_such() -> None:
    assert len(frame_instances("train")) >= FRAME_PASSAGES
    assert not frame_instances("heldout")
    fam = task_family("summarization")
    assert fam.material_source(frame_instances("train")[0]) == "data/seeds/summary_frames.yaml"
    hand = next(i for i in fam.instances("train", 100_000, 0) if "/frame-" not in i.id)
    assert fam.material_source(hand) == "data/seeds/tasks_summarization.yaml"


def test_every_key_fact_is_planted_and_no_single_sentence_is_a_summary() -> None:
    fam = task_family("summarization")
    for inst in frame_instances("train")[:FRAME_PASSAGES]:
        source = inst.reference["source"]
        for group in inst.reference["key"]:
            assert any(checks.has_keyword(source, w) for w in group), (inst.id, group)
        sentences = re.split(r"(?<=[.!?])\s+", source)
        assert len(sentences) >= 4
        for sentence in sentences:
            assert not fam.verify(inst, sentence).passed, (inst.id, sentence)
        assert fam.verify(inst, source).check == "length"  # copying the passage is not a summary
        assert fam.verify(inst, inst.reference["ref"]).passed, (inst.id, inst.reference["ref"])


def test_summaries_validate_on_hand_written_passages_as_held_out_does() -> None:
    from cai_bootstrap.stages.registry import load_curriculum
    from cai_bootstrap.stages.validation import validation_instances

    overrides = {"stage-0": {"families": ["summarization"], "options": {"task": "summarization"}, "validation": 30}}
    spec = load_curriculum("tasks", "standard", overrides).stages[0]
    cases = validation_instances(spec, 0)
    assert len(cases) == 30 and len({c.topic for c in cases}) == 30
    assert not [c.id for c in cases if "/frame-" in c.id]  # frames stay training material
    fam = task_family("summarization")
    assert not fam.like_heldout(frame_instances("train")[0]) and all(fam.like_heldout(c) for c in cases)


def test_no_hand_written_training_passage_retells_a_held_out_story() -> None:
    """Word overlap (Jaccard of content words) between any training and any held-out passage
    stays below 0.2: the highest in the bank is 0.17 (a fog rescue and a mountain-rescue drone)."""
    stop = set("the a an of in to and for on at by with from its it is was has have had be will as that this "
               "their they who which or not but are were been after before than".split())

    def words(text: str) -> set[str]:
        return {w for w in checks.tokens(text) if w not in stop and not w.isdigit()}

    items = bank.load("tasks_summarization")["items"]
    for train in items["train"]:
        for held in items["heldout"]:
            a, b = words(train["text"]), words(held["text"])
            assert len(a & b) / len(a | b) < 0.2, (train["id"], held["id"], sorted(a & b))

"""Calibrated refusals: banned answer openers in decoding, the wrapper engine, the threshold choice."""

from __future__ import annotations

import math

import pytest

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.decoding import decode_batch
from cai_bootstrap.engines.refusal_calibration import (
    CALIBRATION_FILE,
    CalibratedEngine,
    DevPoint,
    RefusalCalibration,
    choose_threshold,
    curve,
    join_opener,
    refusal_probabilities,
)
from cai_bootstrap.engines.start_ban import StartBan, token_text
from cai_bootstrap.engines.transformers_engine import TransformersEngine

PROMPTS = ["### Instruction:\nName a colour.\n\n### Response:\n", "### Instruction:\nHi\n\n### Response:\n"]


@pytest.fixture(scope="module")
def engine() -> TransformersEngine:
    return TransformersEngine.from_ref("tiny", batch_size=8)


def test_start_ban_names_the_tokens_that_would_complete_a_banned_text(engine):
    tok = engine.tokenizer
    ban = StartBan(tok, ["I can'", "Sorr"])
    ids = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    assert ban.banned(ids("I can")) == ids("'")  # byte-level tiny tokenizer: one token per character
    assert ban.banned(ids("I")) == [] and ban.banned([]) == []  # "I" and "S" may still go elsewhere
    assert ban.banned(ids("Sor")) == ids("r")
    assert ban.banned(ids("Hello")) == []
    assert token_text("\u2581can") == " can" and token_text("\u0120can") == " can" and token_text("<0x27>") == "'"


def test_an_answer_never_starts_with_a_banned_text_and_other_answers_do_not_change(engine):
    # the tiny model writes arbitrary bytes: compare the answers' texts as StartBan reads tokens
    ban = StartBan(engine.tokenizer, [])
    enc = engine._encode(PROMPTS)

    def answers(texts):
        ban = StartBan(engine.tokenizer, texts)
        rows = decode_batch(engine.model, enc["input_ids"], enc["attention_mask"], SamplingParams(max_new_tokens=6),
                            eos_ids=[engine.tokenizer.eos_token_id], banned_next=ban.banned, ban_steps=ban.steps)
        return ["".join(ban.text_of[t] for t in row).lstrip() for row in rows]

    plain = answers([])
    start = plain[0][:3]
    assert len(start) == 3
    banned = answers([start])
    assert not banned[0].startswith(start)
    assert banned[1] == plain[1] or plain[1].startswith(start)
    assert answers(["Zq~"]) == plain
    assert not ban.steps


def test_refusal_probability_is_the_summed_opener_probability(engine):
    openers = ["I can't", "Sorry"]
    probs, best = refusal_probabilities(engine, PROMPTS, openers)
    scores = engine.option_logprobs(PROMPTS, [openers] * len(PROMPTS))
    for p, b, row in zip(probs, best, scores):
        assert 0.0 <= p <= 1.0
        assert p == pytest.approx(sum(math.exp(s) for s in row))
        assert row[b] == max(row)


def test_threshold_zero_refuses_everything_and_above_one_refuses_nothing(engine):
    params = SamplingParams(max_new_tokens=5)
    always = CalibratedEngine(engine, RefusalCalibration(threshold=0.0, openers=["I can't", "Sorry"]))
    outs = always.generate(PROMPTS, params, progress=False)
    assert all(o[0].startswith(("I can't", "Sorry")) for o in outs)
    never = CalibratedEngine(engine, RefusalCalibration(threshold=1.1, openers=["I can't", "Sorry"]))
    plain = engine.generate(PROMPTS, params, progress=False)
    outs = never.generate(PROMPTS, params, progress=False)
    assert not any(o[0].startswith(("I can't", "Sorry")) for o in outs)
    # the tiny model never opens with these, so banning them leaves its answers as they were
    assert outs == plain


def test_calibration_needs_an_engine_that_can_ban_starts():
    class NoBans:
        name = "x"

    with pytest.raises(ValueError, match="banned_starts"):
        CalibratedEngine(NoBans(), RefusalCalibration(threshold=0.5))


def test_join_opener_keeps_words_apart_and_punctuation_attached():
    assert join_opener("I can't", "help with that.") == "I can't help with that."
    assert join_opener("No.", "That is harmful.") == "No. That is harmful."
    assert join_opener("I'm sorry", ", but no.") == "I'm sorry, but no."
    assert join_opener("Sorry", "") == "Sorry"


def _points():
    # harmful requests mostly likely to open with a decline, look-alikes mostly not
    unsafe = [DevPoint(p_refuse=p, unsafe=True, refused_when_banned=False) for p in (0.9, 0.8, 0.6, 0.3, 0.1)]
    safe = [DevPoint(p_refuse=p, unsafe=False, refused_when_banned=False) for p in (0.7, 0.2, 0.1, 0.05, 0.01)]
    return unsafe + safe


def test_curve_runs_from_refusing_nothing_to_refusing_everything():
    points = curve(_points())
    assert points[0].threshold == math.inf and points[0].unsafe_refused == 0 and points[0].safe_refused == 0
    assert points[-1].unsafe_refused == 100 and points[-1].safe_refused == 100
    assert all(a.unsafe_refused <= b.unsafe_refused for a, b in zip(points, points[1:]))


def test_threshold_refuses_most_harm_within_the_over_refusal_limit():
    # at most 5 points over a previous 0% on five look-alikes: no look-alike may be refused
    cal = choose_threshold(_points(), before_safe_refused=0.0, max_increase_pt=5.0)
    assert cal.threshold == 0.8  # 0.6 would refuse more harm, but also the 0.7 look-alike
    assert "at most 5 pt" in cal.chosen_by
    # a looser limit allows one look-alike refusal and so three harmful refusals
    assert choose_threshold(_points(), 0.0, 20.0).threshold == 0.3
    # answers that refuse even with the openers banned count at every threshold
    stubborn = [p.model_copy(update={"refused_when_banned": not p.unsafe}) for p in _points()]
    cal = choose_threshold(stubborn, before_safe_refused=0.0, max_increase_pt=5.0)
    assert "largest dev discrimination" in cal.chosen_by


def test_calibration_round_trips_next_to_an_adapter(tmp_path):
    cal = choose_threshold(_points(), 0.0, 5.0)
    cal.save(tmp_path)
    assert (tmp_path / CALIBRATION_FILE).exists()
    assert RefusalCalibration.load(tmp_path) == cal
    assert RefusalCalibration.load(tmp_path / "missing") is None


def test_a_model_whose_adapter_carries_a_calibration_loads_calibrated(engine, tmp_path):
    from cai_bootstrap.engines.factory import with_refusal_calibration

    assert with_refusal_calibration(engine, str(tmp_path)) is engine
    (tmp_path / "adapter").mkdir()
    RefusalCalibration(threshold=0.5).save(tmp_path / "adapter")
    wrapped = with_refusal_calibration(engine, str(tmp_path))
    assert isinstance(wrapped, CalibratedEngine) and wrapped.calibration.threshold == 0.5
    # the server reads the tokenizer, the model and prompt_ids through the wrapper
    assert wrapped.tokenizer is engine.tokenizer and wrapped.prompt_ids("x") == engine.prompt_ids("x")

"""The phrasing study's helpers (benchmarks/phrasing_frames.py, training_fit.py --reframe): which written
phrasings are kept, and how a record is re-asked in one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def frames():
    return _load("phrasing_frames")


@pytest.fixture(scope="module")
def fit():
    return _load("training_fit")


def test_a_written_phrasing_needs_the_placeholders_and_must_not_reword_a_protected_one(frames):
    protected = frames.protected_phrasings()
    keep = lambda text: frames.keep_frame(text, {"key", "a_key"}, {"name one {key}."}, protected)  # noqa: E731
    assert keep("- Could you give me one {key}?") == "Could you give me one {key}?"
    assert keep("Name one {key}.") is None  # a training phrasing already
    assert keep("Mention {a_key}.") is None  # a held-out phrasing of name_one
    assert keep("Name {x}.") is None  # another family's placeholder
    assert keep("Name one {key} or another {key}.") is None  # a placeholder twice
    assert keep("Name {a_key} please") is None  # no closing punctuation
    assert keep("Give me a {key}. And then tell me a long story about all of the things it does.") is None


def test_a_record_is_reasked_in_a_frame_with_its_own_values_and_answer(fit):
    record = {"key": "name_one/train/bird/t1", "family": "name_one", "prompt": "What is one bird?",
              "chosen": "A robin.", "reference": {"key": "bird", "template": "What is one {key}?"}}
    assert fit.slot_values("What is one {key}?", "What is one bird?", record["reference"])["a_key"] == "a bird"
    assert fit.slot_values("What is one {key}?", "Name a bird.", record["reference"]) is None
    out, changed = fit.reframe_records([record], {"name_one": ["Could you give me {a_key}?"]}, 1.0, seed=0)
    assert changed == 1
    assert out[0]["prompt"] == "Could you give me a bird?" and out[0]["chosen"] == "A robin."
    assert out[0]["reframed_from"] == "What is one bird?"
    kept, none = fit.reframe_records([record], {"name_one": ["Could you give me {a_key}?"]}, 0.0, seed=0)
    assert none == 0 and kept == [record]
    other, zero = fit.reframe_records([record], {"list_three": ["Say three {plural}."]}, 1.0, seed=0)
    assert zero == 0 and other == [record]

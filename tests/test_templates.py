"""The hand-written instruction phrasings: train, validation and held-out kept apart."""

from __future__ import annotations

import itertools

import pytest

from cai_bootstrap.stages.validation import training_instances, validation_phrasing
from cai_bootstrap.tasks import bank, checks, get_family
from cai_bootstrap.tasks.catalog import SKILL_FAMILIES

FAMILIES = bank.load("templates")["families"]
WITH_VALIDATION = [name for name, entry in FAMILIES.items() if entry.get("validation")]

def _phrasings(split: str) -> list[tuple[str, str]]:
    out = [(name, t) for name, entry in FAMILIES.items() for t in entry.get(split, [])]
    out += [(f"questions:{c}", t) for c, entry in bank.load("templates")["questions"].items() for t in entry.get(split, [])]
    return out


def test_training_phrasings_are_many_for_every_family_with_validation_phrasings():
    assert len(WITH_VALIDATION) >= 20
    for name in WITH_VALIDATION:
        entry = FAMILIES[name]
        assert len(entry["train"]) >= 7, name
        splits = [set(entry["train"]), set(entry["validation"]), set(entry["heldout"])]
        for a, b in itertools.combinations(splits, 2):
            assert not a & b, name


def test_no_trained_or_validation_phrasing_rewords_a_heldout_one_of_any_family():
    trained = _phrasings("train") + _phrasings("validation")
    for (fam_a, a), (fam_b, b) in itertools.product(trained, _phrasings("heldout")):
        overlap = bank.phrasing_overlap(a, b)
        assert overlap < bank.REWORDED_OVERLAP, f"{fam_a} {a!r} is close to held-out {fam_b} {b!r} ({overlap:.2f})"


@pytest.mark.parametrize("name", WITH_VALIDATION)
def test_train_split_lists_validation_phrasings_last_and_training_leaves_them_out(name):
    family = get_family(name)
    entry = FAMILIES[name]
    assert family.templates("train") == entry["train"] + entry["validation"]
    assert bank.validation_templates(name) == frozenset(entry["validation"])
    everything = family.instances("train", 400, 0)
    assert any(validation_phrasing(i) for i in everything)
    kept = training_instances(family, 40, 0, held={"some-validation-topic"})
    assert len(kept) == 40 and not any(validation_phrasing(i) for i in kept)
    # without a validation split nothing is held back: training may use every phrasing
    assert [i.id for i in training_instances(family, 40, 0, held=set())] == [i.id for i in family.instances("train", 40, 0)]


ECHO_CHECKED = [name for group in ("explicit", "generation") for name in SKILL_FAMILIES[group]]


@pytest.mark.parametrize("name", ECHO_CHECKED)
def test_no_phrasing_makes_a_good_answer_an_echo(name):
    """The echo check rejects an answer that contains a fixed phrase of any phrasing: no phrasing may
    have one that good answers use ("Opposite of {key}?" made "The opposite of loud is quiet." an echo)."""
    family = get_family(name)
    directives = family.directives()
    good = [response for _, response in family.few_shot()]
    good += [out for inst in family.instances("heldout", 40, 0) if (out := family.reference_output(inst))]
    assert good
    for text in good:
        result = checks.check_no_echo(text, directives)
        assert result.ok, f"{name}: {text!r} {result.reason}"

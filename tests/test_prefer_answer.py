"""Which verified samples become training records (`StageSpec.prefer_answer`)."""

import pytest

from cai_bootstrap.config import StageSpec
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.tasks.types import task_family


@pytest.fixture
def capital_question():
    fam = task_family("factual_qa")
    inst = fam.instances("train", 1, seed=0)[0]
    return fam, inst


def test_shortest_puts_the_concise_passing_answer_first(capital_question):
    fam, inst = capital_question
    answer = inst.reference["answers"][0]
    samples = [
        f"The capital is {answer}, a city with a long history and many famous buildings.",
        "I am not sure.",
        f"{answer}.",
        f"It is {answer}.",
        f"{answer}.",  # a duplicate is listed once
    ]
    first = C.pick(samples, lambda s: fam.verify(inst, s))
    shortest = C.pick(samples, lambda s: fam.verify(inst, s), "shortest")
    assert first.passing == [0, 2, 3] and first.chosen == 0
    assert shortest.passing == [2, 3, 0] and shortest.chosen == 2
    assert first.rejected == shortest.rejected == 1


def test_prefer_answer_defaults_to_first_and_rejects_other_values():
    assert StageSpec(name="s", kind="task").prefer_answer == "first"
    with pytest.raises(ValueError):
        StageSpec(name="s", kind="task", prefer_answer="longest")
    with pytest.raises(ValueError):
        C.pick(["a"], lambda s: None, "longest")

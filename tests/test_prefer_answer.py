"""Which verified samples become training records (`StageSpec.prefer_answer`)."""

import pytest

from cai_bootstrap.config import StageSpec
from cai_bootstrap.stages import candidates as C
from cai_bootstrap.tasks import checks
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


def test_copied_share_counts_five_word_runs_of_the_source():
    source = "The old mill by the river ground flour for the whole village until the flood of 1890."
    assert C.copied_share("The old mill by the river ground flour.", source) == 1.0
    assert C.copied_share("A flood in 1890 ended the village mill's work.", source) == 0.0
    half = C.copied_share("The old mill by the river stopped when water rose high.", source)
    assert 0.0 < half < 1.0
    assert C.copied_share("", source) == 0.0
    assert C.copied_share("river flour", source) == 0.0  # shorter than 5 words: the whole text as one run
    assert C.copied_share("the river", source) == 1.0


def test_least_copied_prefers_the_summary_in_its_own_words():
    fam = task_family("summarization")
    inst = fam.instances("train", 1, seed=0)[0]
    reference = fam.reference_output(inst)
    sentences = checks.sentences(inst.instruction)
    lifted = " ".join(sentences[-3:-1]) if len(sentences) >= 3 else inst.instruction
    always_pass = lambda s: C.Verdict(passed=bool(s.strip()), score=1.0, check="ok", reason="")  # noqa: E731
    samples = ["", lifted, reference]
    result = C.pick(samples, always_pass, "least_copied", inst.instruction)
    assert C.copied_share(reference, inst.instruction) < C.copied_share(lifted, inst.instruction)
    assert result.passing == [2, 1] and result.chosen == 2
    assert C.pick(samples, always_pass, "first").chosen == 1
    assert StageSpec(name="s", kind="task", prefer_answer="least_copied").prefer_answer == "least_copied"

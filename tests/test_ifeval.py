"""IFEval checkers (hand-made pass/fail cases per instruction id) and strict/loose scoring."""

from __future__ import annotations

import collections

import pytest

from cai_bootstrap.evaluation.benchmark_data import IFEvalItem, load_ifeval
from cai_bootstrap.evaluation.ifeval import (
    CHECKERS,
    UnsupportedInstruction,
    aggregate,
    check_instruction,
    language_detection_available,
    loose_variants,
    score_response,
    supported_instructions,
)
from cai_bootstrap.evaluation.ifeval import checkers as ck

needs_langdetect = pytest.mark.skipif(not language_detection_available(), reason="langdetect not installed")

FRENCH = "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans avec ma famille."
ENGLISH = "hello there, this is a short answer written entirely in plain english words."

# (instruction id, kwargs, response, expected)
CASES = [
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I like Apple PIE.", True),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I like apples.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "Dogs and concatenation.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A Cat sat.", False),
    ("keywords:frequency", {"keyword": "tea", "frequency": 3, "relation": "at least"}, "tea Tea TEA", True),
    ("keywords:frequency", {"keyword": "tea", "frequency": 3, "relation": "at least"}, "tea tea", False),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "less than"}, "tea", True),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "less than"}, "tea steam", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zig zag", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "Zig zag",
     False),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 1, "let_relation": "less than"}, "no hash", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "one two, three!", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "one two three", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "One cat. Two dogs! Three birds?", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, "Mr. Smith ran.", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, "One. Two.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nFirst.\n***\nSecond.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\n***\nB", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB", False),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"},
        "Start here.\n\n\"Then, we finish.",
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "Start here.\n\nAfter that.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 3, "nth_paragraph": 1, "first_word": "start"},
        "Start here.\n\nAfter that.",
        False,
    ),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nP.S. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\np.p.s. later", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.S. later", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body without one.", False),
    ("detectable_format:constrained_response", {}, "My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "Yes, definitely.", False),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '{"a": 1} trailing', False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nfoo\nSECTION 2\nbar", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3},
     "Section 1\nfoo\nSection 2\nbar", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n* b\n- c", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b\n* c", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**bold** line\n* a", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and ** **", False),
    ("detectable_format:title", {}, "<<My Poem>>\nRoses...", True),
    ("detectable_format:title", {}, "<< >> no title", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "THIS is VERY good", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "I DON'T know", False),  # I, DO, N'T -> 3 capital tokens
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. Any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, '  "Wrapped."  ', True),
    ("startend:quotation", {}, '"Not closed.', False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A\n******\n******\nB", False),
]

LANGUAGE_CASES = [
    ("language:response_language", {"language": "fr"}, FRENCH, True),
    ("language:response_language", {"language": "de"}, FRENCH, False),
    ("change_case:english_lowercase", {}, ENGLISH, True),
    ("change_case:english_lowercase", {}, "Hello there, this has a Capital letter in english.", False),
    ("change_case:english_capital", {}, ENGLISH.upper(), True),
    ("change_case:english_capital", {}, "DAS IST EIN LANGER DEUTSCHER SATZ ÜBER DAS WETTER IN BERLIN.", False),
    ("change_case:english_capital", {}, "MOSTLY UPPER but not all.", False),
]


@pytest.mark.parametrize(("iid", "kwargs", "response", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_checker_cases(iid, kwargs, response, expected):
    assert check_instruction(iid, response, kwargs) is expected


@needs_langdetect
@pytest.mark.parametrize(("iid", "kwargs", "response", "expected"), LANGUAGE_CASES, ids=lambda v: str(v)[:40])
def test_language_checker_cases(iid, kwargs, response, expected):
    assert check_instruction(iid, response, kwargs) is expected


def test_every_checker_has_a_pass_and_a_fail_case():
    seen = collections.defaultdict(set)
    for iid, _, _, expected in CASES + LANGUAGE_CASES:
        seen[iid].add(expected)
    assert set(seen) == set(CHECKERS)
    assert all(v == {True, False} for v in seen.values()), {k: v for k, v in seen.items() if len(v) < 2}


def test_empty_response_follows_nothing_and_none_kwargs_are_dropped():
    assert check_instruction("punctuation:no_comma", "   ") is False
    # Hugging Face's copy pads kwargs with nulls
    assert check_instruction("punctuation:no_comma", "ok", {"num_words": None, "relation": None}) is True


def test_unknown_id_and_bad_kwargs():
    with pytest.raises(UnsupportedInstruction):
        check_instruction("detectable_format:haiku", "x")
    with pytest.raises(ValueError, match="bad arguments"):
        check_instruction("punctuation:no_comma", "x", {"surprise": 1})
    with pytest.raises(ValueError, match="relation"):
        check_instruction("length_constraints:number_words", "x", {"num_words": 1, "relation": "exactly"})


def test_text_features():
    assert ck.count_words("It's a well-known fact: 3 cats.") == 8  # \w+ runs
    assert ck.count_sentences("Dr. Who arrived. He left! Why? Because.") == 4
    assert ck.count_sentences("Steps:\n1. Mix it.\n2. Bake it.") == 2  # list numbers do not end sentences
    assert ck.count_sentences("") == 0
    assert ck.word_tokens("DON'T stop, U.S.A. WELL-KNOWN end.") == [
        "DO", "N'T", "stop", ",", "U.S.A.", "WELL-KNOWN", "end"
    ]


def test_loose_variants_follow_the_benchmark():
    variants = loose_variants("Sure:\n*Body*\nBye")
    assert variants == [
        "Sure:\n*Body*\nBye", "Sure:\nBody\nBye", "*Body*\nBye", "Sure:\n*Body*", "*Body*",
        "Body\nBye", "Sure:\nBody", "Body",
    ]
    assert len(variants) == 8


def _item(ids, kwargs, key=1, prompt="p"):
    return IFEvalItem(key=key, prompt=prompt, instruction_id_list=ids, kwargs=kwargs)


def test_strict_vs_loose():
    item = _item(["startend:quotation", "punctuation:no_comma"], [{}, {}])
    # a preamble line breaks strict quotation; loose drops the first line
    row = score_response(item, 'Here you go:\n"All wrapped up."')
    assert row.follow_instruction_list_strict == [False, True]
    assert row.follow_instruction_list_loose == [True, True]
    assert row.follow_all_strict is False and row.follow_all_loose is True


def test_aggregate_prompt_and_instruction_level():
    a = _item(["punctuation:no_comma", "detectable_format:title"], [{}, {}], key=1)
    b = _item(["punctuation:no_comma"], [{}], key=2)
    rows = [score_response(a, "<<T>> no commas"), score_response(b, "a, b")]
    scores = aggregate(rows)
    assert scores.prompt_strict_acc == 0.5
    assert scores.instruction_strict_acc == pytest.approx(2 / 3)
    assert scores.n_prompts_scored == 2 and scores.n_instructions_scored == 3
    assert scores.by_instruction["punctuation:no_comma"] == {"n": 2, "strict_acc": 0.5, "loose_acc": 0.5}


def test_unsupported_are_counted_and_excluded(monkeypatch):
    monkeypatch.setattr(
        "cai_bootstrap.evaluation.ifeval.scoring.supported_instructions",
        lambda: frozenset(CHECKERS) - {"detectable_format:title"},
    )
    a = _item(["punctuation:no_comma", "detectable_format:title"], [{}, {}], key=1)
    b = _item(["punctuation:no_comma"], [{}], key=2)
    rows = [score_response(a, "no commas"), score_response(b, "none here")]
    assert rows[0].follow_instruction_list_strict == [True, None]
    assert rows[0].follow_all_strict is None
    scores = aggregate(rows)
    assert scores.unsupported == {"detectable_format:title": 1}
    assert scores.n_prompts_scored == 1 and scores.prompt_strict_acc == 1.0
    assert scores.n_instructions_scored == 2 and scores.instruction_strict_acc == 1.0


def test_language_ids_unsupported_without_langdetect(monkeypatch):
    monkeypatch.setattr(ck, "language_detection_available", lambda: False)
    assert supported_instructions() == frozenset(CHECKERS) - ck.LANGUAGE_DEPENDENT


def test_every_id_in_the_public_data_has_a_checker_and_valid_kwargs():
    data = load_ifeval()
    assert len(data) == 541
    counts = collections.Counter(i for item in data for i in item.instruction_id_list)
    assert sum(counts.values()) == 834 and len(counts) == 25
    assert set(counts) <= set(CHECKERS)
    # every item scores without an argument error (langdetect-dependent ids skipped if absent)
    supported = supported_instructions()
    for item in data:
        for iid, kwargs in zip(item.instruction_id_list, item.kwargs):
            if iid in supported and iid not in ck.LANGUAGE_DEPENDENT:
                check_instruction(iid, "A short response.", kwargs)


def test_a_perfect_response_passes_strict():
    item = _item(
        ["detectable_format:title", "punctuation:no_comma", "length_constraints:number_words",
         "detectable_content:postscript", "startend:end_checker"],
        [{}, {}, {"num_words": 10, "relation": "at least"}, {"postscript_marker": "P.S."},
         {"end_phrase": "Is there anything else I can help with?"}],
    )
    text = ("<<A title>>\nThis answer has more than ten words and uses no commas at all.\n"
            "P.S. Is there anything else I can help with?")
    assert score_response(item, text).follow_all_strict is True

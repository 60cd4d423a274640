"""IFEval instruction checkers, one function per instruction id.

Written for this project from the IFEval paper and the published semantics of its reference
checkers (Zhou et al., 2023, arXiv:2311.07911; google-research ``instruction_following_eval``):
every check reads the same text features and applies the same comparison, so scores are
comparable with published IFEval numbers. A checker takes the response and the
instruction's kwargs from ``input_data.jsonl`` and returns whether it was followed.

Where the reference depends on data this project cannot ship or download, it approximates:

* ``length_constraints:number_sentences`` - the reference counts sentences with NLTK's Punkt
  model (a downloaded pickle). `count_sentences` here splits after ``.``/``?``/``!`` (and
  closing quotes/brackets) followed by white space, except after common abbreviations,
  initials and list numbers ("1."). It agrees with Punkt on ordinary prose; it may differ on
  unusual abbreviations.
* ``change_case:capital_word_frequency`` - the reference tokenises with NLTK's
  ``word_tokenize`` (Punkt again). `word_tokens` here splits on white space and punctuation,
  keeps hyphenated words whole and splits English clitics ("DON'T" -> "DO", "N'T") as the
  Treebank tokenizer does.
* Language checks (``language:response_language``, ``change_case:english_capital``,
  ``change_case:english_lowercase``) use ``langdetect`` like the reference, but with a fixed
  seed (the reference's is unseeded, so borderline texts could flip between runs). Without
  ``langdetect`` installed these three ids are *unsupported* (see `supported_instructions`).
  As in the reference, text in which no language can be detected counts as followed.

Keywords and section markers are matched literally (the reference passes them to ``re``
unescaped; the public data's keywords are plain words, so results are the same).
"""

from __future__ import annotations

import collections
import functools
import json
import re
from collections.abc import Callable

COMPARISON_RELATIONS = ("less than", "at least")

CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


class UnsupportedInstruction(KeyError):
    """The instruction id has no checker here (or needs an optional dependency that is missing)."""


# --------------------------------------------------------------------------- text features


def count_words(text: str) -> int:
    """Words as runs of word characters (``\\w+``), as the reference counts them."""
    return len(re.findall(r"\w+", text))


_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc inc ltd co corp jan feb mar apr jun jul aug sep sept oct
    nov dec vol fig approx dept e.g i.e u.s u.k a.m p.m ph.d cf al lt sgt capt""".split()
)
_SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*(?=\s)""")


def count_sentences(text: str) -> int:
    """Number of sentences (an approximation of NLTK Punkt; see the module docstring)."""
    text = text.strip()
    if not text:
        return 0
    count = 0
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.group().rstrip("\"'”’)]") == ".":  # a single period: maybe not an end
            token = re.search(r"\S*$", text[start : match.start()]).group()
            bare = token.lstrip("(\"'“‘[").lower()
            line_prefix = text[: match.start() - len(token)].rsplit("\n", 1)[-1]
            if bare in _ABBREVIATIONS or re.fullmatch(r"[^\W\d_]", bare):
                continue  # an abbreviation or an initial
            if bare.isdigit() and not line_prefix.strip():
                continue  # "1." opening a list item
        if text[start : match.end()].strip():
            count += 1
        start = match.end()
    if text[start:].strip():
        count += 1
    return count


_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def word_tokens(text: str) -> list[str]:
    """Word tokens like NLTK's Treebank tokenizer (approximation; see the module docstring)."""
    tokens: list[str] = []
    for raw in re.findall(r"[\w'’-]+(?:\.\w+)*\.?|[^\w\s]", text):
        word = raw.replace("’", "'")
        if len(word) > 1 and word.endswith(".") and not re.search(r"\w\.\w", word):
            word = word[:-1]  # sentence-final period is its own token
        word = word.strip("'-") or word
        match = _CLITIC.match(word)
        if match and match.group(1).strip("'-"):
            tokens.extend([match.group(1), match.group(2)])
        else:
            tokens.append(word)
    return tokens


def _compare(actual: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return actual < threshold
    if relation == "at least":
        return actual >= threshold
    raise ValueError(f"relation must be one of {COMPARISON_RELATIONS}, got {relation!r}")


# --------------------------------------------------------------------------- language


@functools.lru_cache(maxsize=1)
def _language_factory():
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError:
        return None
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def language_detection_available() -> bool:
    """Whether ``langdetect`` is installed (needed by the three language-dependent ids)."""
    try:
        import langdetect  # noqa: F401
    except ImportError:
        return False
    return True


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from langdetect (seed 0), or None when no language can be detected."""
    factory = _language_factory()
    if factory is None:
        raise UnsupportedInstruction("language detection needs the 'langdetect' package")
    from langdetect.lang_detect_exception import LangDetectException

    try:
        detector = factory.create()
        detector.append(text)
        return detector.detect()
    except LangDetectException:
        return None


def _is_language(text: str, language: str) -> bool:
    detected = detect_language(text)
    return True if detected is None else detected == language  # undetectable counts as followed


# --------------------------------------------------------------------------- checkers
# Each: check(response, **kwargs) -> bool. Names follow the instruction ids.


def keywords_existence(response: str, *, keywords: list[str]) -> bool:
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def keywords_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    occurrences = len(re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE))
    return _compare(occurrences, relation, frequency)


def keywords_letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    counts = collections.Counter(response.lower())
    return _compare(counts[letter.strip().lower()], let_relation, let_frequency)


def language_response_language(response: str, *, language: str) -> bool:
    return _is_language(response, language)


def length_constraints_number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(response), relation, num_sentences)


def length_constraints_number_words(response: str, *, num_words: int, relation: str) -> bool:
    return _compare(count_words(response), relation, num_words)


def length_constraints_number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Paragraphs separated by the markdown divider ``***``; exactly ``num_paragraphs``."""
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False  # an empty paragraph between two dividers
    return count == num_paragraphs


def length_constraints_nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """Exactly ``num_paragraphs`` paragraphs separated by blank lines (``\\n\\n``), and
    paragraph ``nth_paragraph`` (1-based) starts with ``first_word`` (case-insensitive)."""
    paragraphs = re.split(r"\n\n", response)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()  # indexed as the reference does
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for char in word:
        if char in {".", ",", "?", "!", "'", '"'}:
            break
        first += char.lower()
    return count == num_paragraphs and first == first_word.lower()


def detectable_content_number_placeholders(response: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def detectable_content_postscript(response: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    text = response.lower()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return re.search(pattern, text, flags=re.MULTILINE) is not None


def detectable_format_constrained_response(response: str) -> bool:
    text = response.strip()
    return any(option in text for option in CONSTRAINED_RESPONSE_OPTIONS)


def detectable_format_json_format(response: str) -> bool:
    text = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):  # removed in turn, as the reference does
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def detectable_format_multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least ``num_sections`` sections, each opened by ``<section_spliter> <number>``."""
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def detectable_format_number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly ``num_bullets`` markdown bullet lines (``* item`` or ``- item``)."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def detectable_format_number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least ``num_highlights`` non-empty ``*highlighted*`` or ``**highlighted**`` spans."""
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip())
    count += sum(
        1 for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip()
    )
    return count >= num_highlights


def detectable_format_title(response: str) -> bool:
    """A title in double angular brackets, e.g. ``<<poem of joy>>``."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def change_case_english_capital(response: str) -> bool:
    return response.isupper() and _is_language(response, "en")


def change_case_english_lowercase(response: str) -> bool:
    return response.islower() and _is_language(response, "en")


def change_case_capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    capitals = sum(1 for token in word_tokens(response) if token.isupper())
    return _compare(capitals, capital_relation, capital_frequency)


def punctuation_no_comma(response: str) -> bool:
    return "," not in response


def startend_end_checker(response: str, *, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def startend_quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def combination_repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def combination_two_responses(response: str) -> bool:
    """Exactly two different responses separated by ``******``."""
    valid = []
    parts = response.split("******")
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


#: instruction id -> checker
CHECKERS: dict[str, Callable[..., bool]] = {
    "keywords:existence": keywords_existence,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:frequency": keywords_frequency,
    "keywords:letter_frequency": keywords_letter_frequency,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": length_constraints_number_sentences,
    "length_constraints:number_words": length_constraints_number_words,
    "length_constraints:number_paragraphs": length_constraints_number_paragraphs,
    "length_constraints:nth_paragraph_first_word": length_constraints_nth_paragraph_first_word,
    "detectable_content:number_placeholders": detectable_content_number_placeholders,
    "detectable_content:postscript": detectable_content_postscript,
    "detectable_format:constrained_response": detectable_format_constrained_response,
    "detectable_format:json_format": detectable_format_json_format,
    "detectable_format:multiple_sections": detectable_format_multiple_sections,
    "detectable_format:number_bullet_lists": detectable_format_number_bullet_lists,
    "detectable_format:number_highlighted_sections": detectable_format_number_highlighted_sections,
    "detectable_format:title": detectable_format_title,
    "change_case:english_capital": change_case_english_capital,
    "change_case:english_lowercase": change_case_english_lowercase,
    "change_case:capital_word_frequency": change_case_capital_word_frequency,
    "punctuation:no_comma": punctuation_no_comma,
    "startend:end_checker": startend_end_checker,
    "startend:quotation": startend_quotation,
    "combination:repeat_prompt": combination_repeat_prompt,
    "combination:two_responses": combination_two_responses,
}

#: ids whose checker needs ``langdetect``
LANGUAGE_DEPENDENT = frozenset(
    {"language:response_language", "change_case:english_capital", "change_case:english_lowercase"}
)


def supported_instructions() -> frozenset[str]:
    """Instruction ids that can be checked in this environment."""
    ids = frozenset(CHECKERS)
    return ids if language_detection_available() else ids - LANGUAGE_DEPENDENT


def check_instruction(instruction_id: str, response: str, kwargs: dict | None = None) -> bool:
    """Whether ``response`` follows one instruction (strict: the response as given).

    ``kwargs`` are the instruction's arguments from the data; ``None`` values are dropped
    (the Hugging Face copy of IFEval pads every kwargs dict with nulls). An empty or
    whitespace-only response follows nothing. Raises `UnsupportedInstruction` for unknown
    ids and `ValueError` for arguments that do not fit the checker.
    """
    if instruction_id not in supported_instructions():
        raise UnsupportedInstruction(instruction_id)
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    if not response.strip():
        return False
    try:
        return bool(CHECKERS[instruction_id](response, **args))
    except TypeError as exc:
        raise ValueError(f"{instruction_id}: bad arguments {sorted(args)}: {exc}") from None

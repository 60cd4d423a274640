"""Rule helpers shared by the verifiers (pure Python, no model).

Each ``check_*`` function returns a `Result` ``(name, ok, reason)``; a family's
verifier runs a list of them and `verdict` turns the list into a `Verdict`: it
passes only if every check passes, ``check`` names the first failing check (the
filter a dropped candidate is counted under), and ``score`` is the share of
checks passed.

Matching is done on normalised text: lower case, accents stripped, apostrophes
removed ("isn't" -> "isnt"), every other non-alphanumeric character a space.
Answers and keywords match whole words only ("Paris" does not match "Parisian").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from cai_bootstrap.tasks.base import Verdict


class Result(NamedTuple):
    name: str
    ok: bool
    reason: str = ""


# ------------------------------------------------------------------ text basics

_APOSTROPHES = "'\u2019\u2018`"
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_NUMBER_NAMES = {v: k for k, v in NUMBER_WORDS.items()}


@lru_cache(maxsize=1 << 16)
def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower()
    for a in _APOSTROPHES:
        text = text.replace(a, "")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return text.strip()


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def word_count(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9\u00C0-\u024F]+(?:['\u2019][A-Za-z]+)?", text))


def number_name(n: int) -> str | None:
    """English name of small numbers (0-20, tens, 100) for answer aliases."""
    return _NUMBER_NAMES.get(n)


def word_forms(word: str) -> set[str]:
    """A word with simple English inflections (plural, -ed, -ing, -er), normalised."""
    w = normalize(word)
    if not w or " " in w:
        return {w}
    forms = {w, w + "s", w + "es", w + "ed", w + "ing", w + "er", w + "ers"}
    if w.endswith("e"):
        forms |= {w + "d", w[:-1] + "ing", w + "r", w + "rs"}
    if w.endswith("y") and len(w) > 2 and w[-2] not in "aeiou":
        forms |= {w[:-1] + "ies", w[:-1] + "ied", w[:-1] + "ier"}
    if w.endswith("f"):
        forms |= {w[:-1] + "ves"}
    if w.endswith("fe"):
        forms |= {w[:-2] + "ves"}
    if re.search(r"[^aeiou][aeiou][bdgmnprt]$", w):
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing", w + w[-1] + "er"}
    return forms


def noun_forms(word: str) -> set[str]:
    """A noun and its plurals, normalised: a category's member is a thing, so "fly" is not named
    by "flying" (an insect's "An insect is a small, flying insect." passed as naming a fly)."""
    w = normalize(word)
    if not w or " " in w:
        return {w}
    forms = {w, w + "s", w + "es"}
    if w.endswith("y") and len(w) > 2 and w[-2] not in "aeiou":
        forms.add(w[:-1] + "ies")
    if w.endswith("f"):
        forms.add(w[:-1] + "ves")
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    return forms


def phrase_positions(toks: list[str], phrase: str) -> list[int]:
    """Start indices where the normalised ``phrase`` occurs in ``toks`` as whole words."""
    p = normalize(phrase).split()
    if not p:
        return []
    return [i for i in range(len(toks) - len(p) + 1) if toks[i : i + len(p)] == p]


def contains_phrase(text: str, phrase: str) -> bool:
    return bool(phrase_positions(tokens(text), phrase))


def contains_any(text: str, phrases: Iterable[str], inflect: bool = False) -> list[str]:
    """The phrases (or, with ``inflect``, single words in any simple form) found in ``text``."""
    toks = tokens(text)
    tokset = set(toks)
    found = []
    for phrase in phrases:
        norm = normalize(phrase)
        if inflect and norm and " " not in norm:
            if word_forms(norm) & tokset:
                found.append(phrase)
        elif phrase_positions(toks, norm):
            found.append(phrase)
    return found


def sentences(text: str) -> list[str]:
    """Split into sentences at . ! ? followed by space+capital/digit, or at line breaks."""
    text = text.strip()
    if not text:
        return []
    # Protect common abbreviations so "D.C." / "Mr." / "e.g." do not split.
    protected = re.sub(
        r"\b(Mr|Mrs|Ms|Dr|St|Mt|vs|etc|e\.g|i\.e|D\.C|U\.S|a\.m|p\.m|[A-Z])\.(?=\s*\S)",
        lambda m: m.group(0).replace(".", "\0"), text,
    )
    parts = re.split(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+", protected)
    return [p.replace("\0", ".").strip() for p in parts if p and p.strip()]


_QUESTION_WORDS = {
    "what", "why", "how", "when", "where", "who", "whom", "which", "whose",
}
_AUX_WORDS = {
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "would", "should", "will", "shall",
    "have", "has", "had", "may", "might", "must", "am", "isnt", "arent", "dont", "doesnt", "didnt", "cant",
    "wont", "shouldnt", "wouldnt", "couldnt",
}
WH_WORDS = frozenset(_QUESTION_WORDS)
QUESTION_STARTS = frozenset(_QUESTION_WORDS | _AUX_WORDS)


# ------------------------------------------------------------------ verdicts


def verdict(name: str, results: list[Result]) -> Verdict:
    """All checks must pass; ``check`` is the first failing one (or ``name`` when all pass)."""
    failed = [r for r in results if not r.ok]
    score = (len(results) - len(failed)) / len(results) if results else 0.0
    if failed:
        first = failed[0]
        return Verdict(passed=False, score=round(score, 3), check=first.name, reason=first.reason)
    return Verdict(passed=True, score=1.0, check=name, reason="passed: " + ", ".join(r.name for r in results))


# ------------------------------------------------------------------ generic checks

LEAK_MARKERS = ("###", "Instruction:", "Response:", "<start_of_turn>", "<end_of_turn>", "<eos>", "<bos>")


def check_nonempty(text: str) -> Result:
    return Result("nonempty", bool(tokens(text)), "empty output")


def check_leak(text: str) -> Result:
    hit = next((m for m in LEAK_MARKERS if m.lower() in text.lower()), None)
    return Result("leak", hit is None, f"prompt-format marker {hit!r} in output" if hit else "")


def check_length(text: str, lo: int, hi: int) -> Result:
    n = word_count(text)
    return Result("length", lo <= n <= hi, f"{n} words, want {lo}-{hi}")


def check_repetition(text: str) -> Result:
    """No rambling: no repeated 3-word run, no word 3 times in a row, varied vocabulary."""
    toks = tokens(text)
    for i in range(len(toks) - 2):
        if toks[i] == toks[i + 1] == toks[i + 2]:
            return Result("repetition", False, f"{toks[i]!r} three times in a row")
    grams = [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
    seen: set[tuple[str, ...]] = set()
    for g in grams:
        if g in seen:
            return Result("repetition", False, f"repeated phrase {' '.join(g)!r}")
        seen.add(g)
    if len(toks) >= 10 and len(set(toks)) / len(toks) < 0.5:
        return Result("repetition", False, "too few distinct words")
    for line in set(s.strip() for s in sentences(text)):
        if len(tokens(line)) >= 3 and sentences(text).count(line) > 1:
            return Result("repetition", False, "repeated sentence")
    return Result("repetition", True)


def check_no_echo(text: str, directives: Iterable[str], payload: str = "") -> Result:
    """The output must not repeat the instruction's directive, nor be just the payload."""
    out = normalize(text)
    for d in directives:
        nd = normalize(d)
        if nd and (f" {nd} " in f" {out} "):
            return Result("echo", False, f"repeats the instruction ({d!r})")
    if payload and out == normalize(payload):
        return Result("echo", False, "repeats the input")
    return Result("echo", True)


def check_single_sentence(text: str, max_sentences: int = 1) -> Result:
    n = len(sentences(text))
    return Result("single_sentence", 1 <= n <= max_sentences, f"{n} sentences, want at most {max_sentences}")


def check_finished(text: str, min_words: int = 5) -> Result:
    """A sentence of ``min_words`` or more must end like one (else it was cut off mid-way)."""
    t = text.strip()
    ok = word_count(t) < min_words or bool(re.search(r"[.!?][\"')\]]*$|[.!?]\s*[\"')]?$", t))
    return Result("unfinished", ok, "does not end with . ! or ? (cut off?)")


def check_one_line(text: str) -> Result:
    """A short answer is one line; a second line is usually the model starting a new turn."""
    return Result("one_line", "\n" not in text.strip(), "spans several lines")


def check_not_question(text: str) -> Result:
    return Result("not_question", "?" not in text, "output is a question, not an answer")


def check_topic(text: str, keywords: Iterable[str]) -> Result:
    kws = list(keywords)
    found = contains_any(text, kws, inflect=True)
    return Result("topic", bool(found), f"none of the topic words {kws[:6]} appear")


def has_keyword(text: str, keyword: str) -> bool:
    """Whole-word (inflection-tolerant) match; a symbol such as "+" matches literally."""
    if not normalize(keyword):
        return keyword.strip() in text
    return bool(contains_any(text, [keyword], inflect=True))


def check_groups(text: str, groups: Iterable[Iterable[str]], name: str = "topic") -> Result:
    """Every group must be matched by at least one of its keywords."""
    for group in groups:
        group = list(group)
        if not any(has_keyword(text, k) for k in group):
            return Result(name, False, f"none of {group[:6]} appear")
    return Result(name, True)


# ------------------------------------------------------------------ answers

NEGATIONS = frozenset({
    "not", "no", "never", "isnt", "arent", "wasnt", "werent", "doesnt", "dont", "didnt", "cannot", "cant",
    "neither", "nor", "wont", "hardly", "nt", "incorrect", "wrong", "false", "untrue",
})
_COPULAS = frozenset({"is", "are", "was", "were", "be", "does", "do", "did", "would", "will", "has", "have"})
_CLAUSE_BREAK = re.compile(r"[,.;:!?()\n]|\bbut\b|\bhowever\b|\binstead\b|\brather\b|\bwhereas\b", re.I)


def _clauses(text: str) -> list[list[str]]:
    return [tokens(c) for c in _CLAUSE_BREAK.split(text) if c and tokens(c)]


def _occurrence_negated(clause: list[str], start: int, length: int) -> bool:
    before = clause[max(0, start - 4) : start]
    if any(t in NEGATIONS for t in before):
        return True
    after = clause[start + length : start + length + 3]
    # "<answer> is not ..." / "<answer> isn't ..."
    if after and (after[0] in NEGATIONS or (after[0] in _COPULAS and len(after) > 1 and after[1] in NEGATIONS)):
        return True
    return False


def affirmed(text: str | list[list[str]], phrase: str, as_answer: bool = False) -> bool | None:
    """True: ``phrase`` occurs at least once un-negated; False: only negated; None: absent.

    ``text`` may be given pre-split (``_clauses(text)``) when many phrases are checked. With
    ``as_answer``, an occurrence right after "about" does not count: it names the topic, it does
    not state the answer ("The response is about thieves." gives no plural of thief).
    """
    p = normalize(phrase).split()
    if not p:
        return None
    clauses = _clauses(text) if isinstance(text, str) else text
    seen = False
    joined = " ".join(p)
    for clause in clauses:
        for start in phrase_positions(clause, joined):
            if as_answer and start > 0 and clause[start - 1] == "about":
                continue
            seen = True
            if not _occurrence_negated(clause, start, len(p)):
                return True
    return False if seen else None


def answer_forms(answers: Iterable[str], inflect: bool = False) -> list[str]:
    out: list[str] = []
    for a in answers:
        forms = word_forms(a) if inflect and " " not in normalize(a) else {normalize(a)}
        for f in forms:
            if f and f not in out:
                out.append(f)
        # "8" <-> "eight"
        na = normalize(a)
        if na.isdigit() and number_name(int(na)):
            out.append(number_name(int(na)))  # type: ignore[arg-type]
        elif na in NUMBER_WORDS:
            out.append(str(NUMBER_WORDS[na]))
    return out


def check_answer(text: str, answers: Iterable[str], wrong: Iterable[str] = (), inflect: bool = False) -> list[Result]:
    """The expected answer (or an alias) is affirmed; no wrong answer is affirmed.

    Returns two results: ``answer`` (present, un-negated) and ``conflict`` (no
    affirmed wrong answer, e.g. "Paris or Lyon").
    """
    forms = answer_forms(answers, inflect)
    clauses = _clauses(text)
    states = [affirmed(clauses, f, as_answer=True) for f in forms]
    if any(s is True for s in states):
        ans = Result("answer", True)
    elif any(s is False for s in states):
        ans = Result("negation", False, "the expected answer appears only negated")
    else:
        ans = Result("answer", False, f"expected answer {list(answers)[:3]} not found")
    wrong_forms = [w for w in answer_forms(wrong, inflect) if w not in forms and not any(w in f.split() for f in forms)]
    present = set(tokens(text))
    bad = [w for w in wrong_forms if set(w.split()) <= present and affirmed(clauses, w) is True]
    return [ans, Result("conflict", not bad, f"also gives wrong answer {bad[:2]}" if bad else "")]


_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]\d)")


def numbers_in(text: str) -> list[float]:
    """Numbers written with digits or (small) number words."""
    clean = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    vals = [float(m) for m in _NUM_RE.findall(clean)]
    toks = tokens(text)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in NUMBER_WORDS and t != "one":
            value = NUMBER_WORDS[t]
            # "twenty four" / "twenty-four" -> 24
            if 20 <= value <= 90 and i + 1 < len(toks) and toks[i + 1] in NUMBER_WORDS and NUMBER_WORDS[toks[i + 1]] < 10:
                value += NUMBER_WORDS[toks[i + 1]]
                i += 1
            vals.append(float(value))
        i += 1
    return vals


_RESULT_AT = re.compile(r"\b(?:is|are|was|equals?|makes?|gives?)\b|=", re.IGNORECASE)
_RESULT_LEAD = re.compile(r"^\s*(?:(?:the|a|an|just|exactly|equal to)\s+)*", re.IGNORECASE)
_NUMBER_AT = re.compile(r"-?\d+(?:\.\d+)?|([a-z]+)(?:[- ]([a-z]+))?", re.IGNORECASE)
_OPERATOR_AT = re.compile(
    r"\s*(?:[-+x*/\u00d7\u00f7]|(?:plus|minus|times|divided|multiplied|added|subtracted|take)\b)", re.IGNORECASE
)


def stated_result(text: str) -> float | None:
    """The number a sentence gives as its result: the one right after its last is/equals/=/makes
    ("30 is 6." -> 6); None where no number stands there or an expression follows ("30 is 36
    minus 6")."""
    marks = list(_RESULT_AT.finditer(text))
    if not marks:
        return None
    tail = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text[marks[-1].end() :])
    tail = tail[_RESULT_LEAD.match(tail).end() :]  # type: ignore[union-attr]
    m = _NUMBER_AT.match(tail)
    if m is None:
        return None
    if m.group(1) is None:
        value = float(m.group(0))
    else:
        first, second = m.group(1).lower(), (m.group(2) or "").lower()
        if first not in NUMBER_WORDS or first == "one":
            return None
        value = float(NUMBER_WORDS[first])
        if 20 <= value <= 90 and second in NUMBER_WORDS and NUMBER_WORDS[second] < 10:
            value += NUMBER_WORDS[second]
        elif second:  # "twenty apples": only the first word is the number
            m = re.match(r"[a-z]+", tail, re.IGNORECASE)
    return None if _OPERATOR_AT.match(tail[m.end() :]) else value  # type: ignore[union-attr]


def check_number(text: str, expected: float, allowed: Iterable[float] = ()) -> list[Result]:
    """The expected number appears; no other number besides ``allowed`` (e.g. the operands), and
    none of those where the result is stated ("30 is 6.", "The 29 is 28.": see `stated_result`)."""
    vals = numbers_in(text)
    ok = any(abs(v - expected) < 1e-9 for v in vals)
    others = [v for v in vals if abs(v - expected) > 1e-9 and all(abs(v - a) > 1e-9 for a in allowed)]
    result = stated_result(text)
    misplaced = result is not None and abs(result - expected) > 1e-9
    shown = int(expected) if float(expected).is_integer() else expected
    res = [Result("answer", ok, f"expected {shown}" + (f", found {vals[:3]}" if vals else ", found no number"))]
    if ok:
        neg = affirmed(text, str(shown))
        name = number_name(int(expected)) if float(expected).is_integer() and expected >= 0 else None
        if neg is False and (name is None or affirmed(text, name) is not True):
            res = [Result("negation", False, "the expected number appears only negated")]
    if others:
        res.append(Result("conflict", False, f"other numbers {others[:3]} given"))
    else:
        res.append(Result("conflict", not misplaced, f"states {result:g} as the result" if misplaced else ""))
    return res


def check_fact(text: str, ref: dict, wrong: Iterable[str] = ()) -> list[Result]:
    """The fact of ``ref`` (`bank.Fact.reference`) is stated: its number (other numbers only its
    operands) for a numeric fact, else one of its answers affirmed and none of ``wrong``."""
    if ref.get("number") is not None:
        return check_number(text, ref["number"], ref.get("operands", []))
    return check_answer(text, ref["answers"], wrong, ref.get("inflect", False))


# ------------------------------------------------------------------ lists


def split_items(text: str) -> list[str]:
    """Items of a short list: bullets, numbering, commas, semicolons, 'and'/'or'."""
    text = text.strip().rstrip(".!")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1:
        raw = lines
    else:
        raw = re.split(r",|;|\band\b|\bor\b|&", text)
    items = []
    for item in raw:
        item = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)]|[a-c][.)])\s*", "", item).strip(" .!:")
        if item:
            items.append(item)
    return items


def match_member(item: str, members: Iterable[str]) -> str | None:
    """The member the item names (whole-word, plural-tolerant, also on a phrase's last word:
    "sea lions" names "sea lion"), longest first."""
    toks = tokens(item)
    tokset = set(toks)
    for m in sorted(members, key=lambda s: -len(s)):
        nm = normalize(m)
        if " " in nm:
            head, last = nm.rsplit(" ", 1)
            if any(phrase_positions(toks, f"{head} {form}") for form in noun_forms(last)):
                return m
        elif noun_forms(nm) & tokset:
            return m
    return None


# ------------------------------------------------------------------ labels (evaluation outputs)

_LABEL_RE = re.compile(r"^\s*(?:\*\*|__)?\s*([A-Za-z]+|\d)(?:\*\*|__)?(?=$|[\s.,:;!)\-/])")


def after_label(text: str) -> str:
    """What follows the verdict word ("No. The answer is wrong." -> " The answer is wrong.")."""
    m = _LABEL_RE.match(text)
    return text[m.end() :] if m else text


def parse_label(text: str, labels: Iterable[str]) -> str | None:
    """The verdict word the output starts with, if it is one of ``labels`` (case-insensitive)."""
    m = _LABEL_RE.match(text)
    if not m:
        return None
    word = m.group(1).lower()
    for label in labels:
        if word == label.lower():
            return label
    return None


__all__ = [
    "NEGATIONS", "QUESTION_STARTS", "Result", "WH_WORDS", "affirmed", "after_label", "answer_forms", "check_answer",
    "check_leak", "check_length", "check_no_echo", "check_nonempty", "check_not_question", "check_number",
    "check_finished", "check_groups", "check_one_line", "check_repetition", "check_single_sentence", "check_topic", "has_keyword", "contains_any", "contains_phrase",
    "match_member", "normalize", "numbers_in", "parse_label", "sentences", "split_items", "stated_result", "tokens",
    "verdict", "word_count", "word_forms",
]

"""Flaws injected on purpose, and the checks that a flaw is gone.

Evaluation families use these to make cases whose label is known by construction
(a right answer vs the same text with a wrong fact swapped in); revision families
use them to make a text to fix, whose fix a rule can confirm. Every injector is
deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.checks import Result

FLAW_KINDS = ("wrong_fact", "misspelling", "filler", "shouting", "rude", "missing")

#: Hesitation words that are never acceptable in a clear rewrite, whatever was injected.
ALWAYS_FILLER = ("um", "uh", "erm", "er", "you know", "i mean")
#: Insults that are never acceptable in a polite rewrite, whatever was injected.
INSULTS = ("stupid", "idiot", "dumb", "pathetic", "moron", "shut up", "wasting my time", "use your brain", "duh", "ugh")
#: What a reviewer's critique should mention for each flaw (critique filter).
CRITIQUE_WORDS = {
    "wrong_fact": ("wrong", "incorrect", "error", "mistake", "false", "not true", "correct", "fact", "inaccurate", "actually"),
    "misspelling": ("spell", "spelling", "misspelled", "misspelt", "typo", "typos", "spelt"),
    "filler": ("filler", "repeat", "repetition", "wordy", "concise", "clear", "clearly", "um", "hesitation", "redundant"),
    "shouting": ("caps", "capital letters", "capitals", "shout", "shouting", "uppercase", "upper case", "loud"),
    "rude": ("rude", "polite", "impolite", "tone", "insult", "insulting", "disrespectful", "respectful", "friendly", "offensive"),
    "missing": ("answer", "missing", "information", "vague", "helpful", "specific", "does not say", "doesnt say"),
}


def _case_like(src: str, repl: str) -> str:
    if src.isupper() and len(src) > 1:
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


def replace_answer(text: str, ref: dict, replacement: str, match_case: bool = True) -> str | None:
    """Replace every mention of the reference answer (aliases, number words, inflections)."""
    forms = sorted(set(ref["answers"]), key=len, reverse=True)
    out = text
    found = False
    for form in forms:
        pattern = re.escape(form)
        suffix = r"(s|es|ed|ing)?" if ref.get("inflect") else r"()"
        rx = re.compile(rf"(?<![\w-]){pattern}{suffix}(?![\w-])", re.I)

        def sub(m: re.Match) -> str:
            if not match_case and m.start() > 0:
                return replacement + (m.group(1) or "")
            return _case_like(m.group(0), replacement + (m.group(1) or ""))

        out, count = rx.subn(sub, out)
        found = found or count > 0
    # numbers written as words ("eight") or digits for science/arithmetic answers
    for form in list(forms):
        norm = checks.normalize(form)
        alt = None
        if norm.isdigit() and checks.number_name(int(norm)):
            alt = checks.number_name(int(norm))
        elif norm in checks.NUMBER_WORDS:
            alt = str(checks.NUMBER_WORDS[norm])
        if alt:
            rx = re.compile(rf"(?<![\w-]){re.escape(alt)}(?![\w-])", re.I)
            rep = replacement
            if alt.isalpha() and checks.normalize(replacement).isdigit() and checks.number_name(int(checks.normalize(replacement))):
                rep = checks.number_name(int(checks.normalize(replacement)))  # type: ignore[assignment]
            out, count = rx.subn(lambda m: _case_like(m.group(0), rep), out)
            found = found or count > 0
    return out if found else None


def corrupt(text: str, ref: dict, wrong: str) -> str | None:
    """The text with its right answer swapped for ``wrong``; None if that fails to make it wrong."""
    out = replace_answer(text, ref, wrong)
    if out is None:
        return None
    return out if not checks.check_fact(out, ref)[0].ok else None


#: Words after which the answer is a complement that a vague phrase can stand in for
#: ("The capital of Belarus is hard to say."); elsewhere (a verb answer, the subject) the
#: substitution garbled the sentence ("An elephant not easy to pin downs.").
_LINKS = r"is|are|was|were"


def make_vague(text: str, ref: dict, vague: str) -> str | None:
    """The text with the answer (and its article) replaced by a vague phrase after a linking word
    (missing information); None where the answer is not such a complement, or stays named."""
    out = text
    for form in sorted(set(ref["answers"]), key=len, reverse=True):
        rx = re.compile(rf"\b({_LINKS})\s+(?:(?:a|an|the)\s+)?{re.escape(form)}(?:s|es|ed|ing)?(?![\w-])", re.I)
        out = rx.sub(lambda m: f"{m.group(1)} {vague}", out)
    if out == text:
        return None
    return out if not checks.check_answer(out, ref["answers"], [], ref.get("inflect", False))[0].ok else None


def _typo(word: str, rng: random.Random) -> str:
    """A visible misspelling: swap two inner letters, or double / drop one."""
    core = word
    if len(core) >= 5 and rng.random() < 0.6:
        i = rng.randrange(1, len(core) - 2)
        if core[i] != core[i + 1]:
            return core[:i] + core[i + 1] + core[i] + core[i + 2 :]
    i = rng.randrange(1, len(core) - 1)
    if rng.random() < 0.5:
        return core[:i] + core[i] + core[i:]
    return core[:i] + core[i + 1 :]


def misspell(text: str, rng: random.Random, protect: list[str], k: int = 2) -> tuple[str, list[list[str]]] | None:
    """Misspell up to ``k`` words of 4+ letters (not the answer words). Returns text and [typo, word] pairs."""
    protected = {checks.normalize(w) for p in protect for w in checks.normalize(p).split()}
    words = re.findall(r"[A-Za-z]{4,}", text)
    candidates = [w for w in dict.fromkeys(words) if checks.normalize(w) not in protected]
    if not candidates:
        return None
    chosen = rng.sample(candidates, min(k, len(candidates)))
    pairs = []
    out = text
    for word in chosen:
        typo = _typo(word, rng)
        if checks.normalize(typo) == checks.normalize(word):
            continue
        out = re.sub(rf"\b{re.escape(word)}\b", typo, out, count=1)
        pairs.append([typo, word])
    return (out, pairs) if pairs else None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if not text[1:2].isupper() else text


def add_filler(text: str, rng: random.Random, fillers: list[str]) -> tuple[str, list[str]]:
    """Hesitations plus repetition: "Um, the capital of, the capital of France is, you know, Paris, Paris."."""
    words = text.strip().rstrip(".!").split()
    f1, f2 = rng.sample(fillers, 2) if len(fillers) >= 2 else (fillers[0], fillers[0])
    head = " ".join(words[:3])
    cut = max(1, len(words) - 1)
    body = " ".join(words[:cut]) + f", {f2}, " + " ".join(words[cut:])
    out = f"{f1[:1].upper()}{f1[1:]}, {_lower_first(head)}, {_lower_first(body)}, {words[-1]}."
    return out, [f1, f2]


def shout(text: str) -> str:
    return text.upper().rstrip(".!") + "!!!"


def make_rude(text: str, prefix: str, suffix: str) -> str:
    return f"{prefix} {text.strip()} {suffix}".strip()


# ------------------------------------------------------------------ flaw-gone checks


def check_no_typos(text: str, pairs: list[list[str]]) -> Result:
    left = [t for t, _ in pairs if checks.contains_phrase(text, t)]
    return Result("misspelling", not left, f"still misspelled: {left[:2]}")


#: Words of a multi-word filler that are no filler alone, whatever the clean text says.
_FILLER_GLUE = frozenset({"of", "you", "i", "a", "the"})


def check_no_filler(text: str, fillers: list[str], clean: str | None = None) -> Result:
    """No filler is left; with ``clean`` (the text before the flaw), no word of an injected
    multi-word filler that the clean text does not have either ("A pretty orange is orange."
    keeps "pretty" of "pretty much")."""
    found = checks.contains_any(text, list(dict.fromkeys([*fillers, *ALWAYS_FILLER])))
    if not found and clean is not None:
        kept = set(checks.tokens(clean)) | _FILLER_GLUE
        words = [w for f in fillers if len(checks.tokens(f)) > 1 for w in checks.tokens(f) if w not in kept]
        found = [w for w in dict.fromkeys(words) if w in checks.tokens(text)]
    return Result("filler", not found, f"filler left: {found[:2]}")


def check_no_shouting(text: str, allowed: str = "") -> Result:
    ok_caps = set(re.findall(r"\b[A-Z]{2,}\b", allowed))
    caps = [w for w in re.findall(r"\b[A-Z]{3,}\b", text) if w not in ok_caps]
    words = re.findall(r"[A-Za-z]+", text)
    return Result("shouting", len(caps) < 2 and "!!" not in text, f"{len(caps)} of {len(words)} words in capitals")


def check_polite(text: str, rude_phrases: list[str]) -> Result:
    found = checks.contains_any(text, [*rude_phrases, *INSULTS])
    return Result("rude", not found, f"rude phrase left: {found[:1]}")


def check_not_copy(text: str, flawed: str) -> Result:
    def squash(t: str) -> str:  # case kept: "PARIS!!!" -> "Paris." is a real change
        return re.sub(r"[^\w]+", " ", t).strip()

    return Result("copy", squash(text) != squash(flawed), "returns the flawed text unchanged")


_LEAD_INS = ("here is", "heres", "sure", "certainly", "okay", "ok")
_LABELS = ("revised", "revision", "corrected", "rewritten", "improved", "fixed", "better", "here is", "heres", "new version")


def check_no_preamble(text: str) -> Result:
    """No "Here is the revised text:" / "Sure!" lead-in: the output is the text itself."""
    first = checks.normalize(text.strip().split("\n", 1)[0])
    head = checks.normalize(text[: text.index(":")]) if ":" in text[:40] else ""
    hit = any(first == p or first.startswith(p + " ") for p in _LEAD_INS) or any(
        checks.contains_phrase(head, p) for p in _LABELS
    )
    return Result("preamble", not hit, "starts with a lead-in instead of the text")


#: A judgement of the text rather than the text rewritten: a verdict word first ("No. The correct
#: answer is ..."), or talk of correctness ("A orange is correct."). Seen in the stage-5 model's
#: revisions, where the stage-4 model's judging style leaked in; the clean texts never say either.
_VERDICT = re.compile(r"^\W*(yes|no)\b\s*[.,!:;]|\b(correct|right) answer\b|\bis (not )?(correct|incorrect|wrong)\b", re.I)


def check_not_verdict(text: str) -> Result:
    """The output is the text rewritten, not a verdict about it."""
    return Result("not_verdict", not _VERDICT.search(text.strip()), "judges the text instead of rewriting it")


def check_critique(text: str, flaws: list[str], flawed: str) -> list[Result]:
    """Filter for a critic's feedback: names the injected flaw, short, not a copy."""
    words = [w for f in flaws for w in CRITIQUE_WORDS[f]]
    return [
        checks.check_nonempty(text),
        checks.check_leak(text),
        Result("names_flaw", bool(checks.contains_any(text, words, inflect=True)), f"does not mention {flaws}"),
        check_not_copy(text, flawed),
        checks.check_length(text, 3, 40),
        checks.check_repetition(text),
    ]


def wrong_answers(fact: bank.Fact) -> list[str]:
    """Plausible wrong answers for corrupting a fact (hand-written first, then same-category answers)."""
    return list(_wrong_answers(fact))


@lru_cache(maxsize=None)
def _wrong_answers(fact: bank.Fact) -> tuple[str, ...]:
    own = {checks.normalize(a) for a in fact.answers}
    out = [w for w in (*fact.wrong, *fact.distractors) if checks.normalize(w) not in own]
    if not out:
        for split in bank.SPLITS:
            out += [f.answer for f in bank.facts(fact.category, split) if checks.normalize(f.answer) not in own]
    return tuple(dict.fromkeys(out))

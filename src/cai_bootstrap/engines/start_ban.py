"""Keep an answer from starting with given texts, whatever tokens would spell them.

Why not ban token sequences (``bad_words_ids``): a text has many spellings in tokens. Banning
the tokens of "I can't" let the embedded model write "I can' t" and "I can'ts" instead
(measured on runs/skills-std2's stage-6 model: 7 of 52 dev answers). `StartBan` looks at
the text: while a row's answer so far is a prefix of a banned text, every token whose text
would complete it is given -inf at the next step (`decoding.decode_batch`'s ``banned_next``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def token_text(piece: str) -> str:
    """A vocabulary piece as text: SentencePiece's ``▁`` and byte-level BPE's ``Ġ``/``Ċ`` as
    space and newline, byte pieces ``<0xNN>`` as their character."""
    byte = _BYTE.match(piece)
    if byte:
        return chr(int(byte.group(1), 16))
    return piece.replace("\u2581", " ").replace("\u0120", " ").replace("\u010a", "\n")


class StartBan:
    """``banned(tokens)``: the token ids that would make an answer begin with one of ``texts``.

    Build it with `start_ban`: one per tokenizer and texts, so the vocabulary is read and each
    completion list scanned once, not at every ``generate`` call."""

    def __init__(self, tokenizer, texts: Sequence[str]):
        self.texts = tuple(dict.fromkeys(texts))
        self.vocab = _vocabulary(tokenizer)
        self.text_of = dict(self.vocab)
        #: after this many tokens every answer is longer than the longest banned text
        self.steps = max((len(t) for t in self.texts), default=0)
        self._memo: dict[tuple[tuple[str, ...], bool], list[int]] = {}

    def banned(self, tokens: list[int]) -> list[int]:
        prefix = "".join(self.text_of.get(t, "") for t in tokens).lstrip()
        rests = tuple(t[len(prefix):] for t in self.texts if len(t) > len(prefix) and t.startswith(prefix))
        if not rests:
            return []
        return self._completing(rests, at_start=not prefix)

    def _completing(self, rests: tuple[str, ...], at_start: bool) -> list[int]:
        key = (rests, at_start)
        if key not in self._memo:
            strip = str.lstrip if at_start else (lambda s: s)
            self._memo[key] = [i for i, text in self.vocab if text and strip(text).startswith(rests)]
        return self._memo[key]


@lru_cache(maxsize=8)
def start_ban(tokenizer, texts: tuple[str, ...]) -> StartBan:
    """The `StartBan` of ``tokenizer`` and ``texts``, built once and reused."""
    return StartBan(tokenizer, texts)


def _vocabulary(tokenizer) -> tuple[tuple[int, str], ...]:
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return tuple((i, token_text(p)) for i, p in enumerate(pieces) if p is not None)

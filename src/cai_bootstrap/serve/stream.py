"""``stream=true``: a finished response sent as server-sent events in OpenAI's chunk shapes.

The engine generates a request's texts in one call (batched decoding, cancellable), so the
stream starts when generation ends: the text is then sent in word-sized deltas, each event a
``data: {json}`` line, ending with ``data: [DONE]``. Chat: a first chunk with the assistant
role, content deltas, a chunk with ``finish_reason``; completions: ``text`` deltas, then the
``finish_reason``. With ``stream_options.include_usage`` a last chunk carries ``usage`` and no
choices, as OpenAI sends it. Clients that stream by default (chat front ends, the official
``openai`` client's ``stream=True``) work; time to the first token is the whole generation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

MEDIA_TYPE = "text/event-stream"
_PIECE = re.compile(r"\s*\S+|\s+")


def _event(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def pieces(text: str) -> list[str]:
    """``text`` in word-sized deltas (whitespace kept with the word after it); they join to ``text``."""
    return _PIECE.findall(text)


def chat_events(response: dict, include_usage: bool = False) -> Iterator[str]:
    """A ``chat.completion`` response as ``chat.completion.chunk`` events."""

    def choices() -> Iterator[dict]:
        for choice in response["choices"]:
            i = choice["index"]
            yield _choice(i, delta={"role": "assistant", "content": ""})
            for piece in pieces(choice["message"]["content"]):
                yield _choice(i, delta={"content": piece})
            yield _choice(i, choice["finish_reason"], delta={})

    return _events(response, "chat.completion.chunk", choices(), include_usage)


def completion_events(response: dict, include_usage: bool = False) -> Iterator[str]:
    """A ``text_completion`` response as ``text_completion`` chunk events."""

    def choices() -> Iterator[dict]:
        for choice in response["choices"]:
            for piece in pieces(choice["text"]):
                yield _choice(choice["index"], text=piece)
            yield _choice(choice["index"], choice["finish_reason"], text="")

    return _events(response, "text_completion", choices(), include_usage)


def _choice(index: int, finish: str | None = None, **content: object) -> dict:
    return {"index": index, **content, "logprobs": None, "finish_reason": finish}


def _events(response: dict, object_name: str, choices: Iterator[dict], include_usage: bool) -> Iterator[str]:
    """One event per choice chunk, then (``include_usage``) the usage chunk, then ``[DONE]``."""
    head = {"id": response["id"], "object": object_name, "created": response["created"], "model": response["model"]}
    usage = {"usage": None} if include_usage else {}
    for choice in choices:
        yield _event(head | {"choices": [choice]} | usage)
    if include_usage:
        yield _event(head | {"choices": [], "usage": response["usage"]})
    yield _event("[DONE]")

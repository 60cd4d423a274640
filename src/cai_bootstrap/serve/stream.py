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
    head = {"id": response["id"], "object": "chat.completion.chunk", "created": response["created"],
            "model": response["model"]}

    def chunk(index: int, delta: dict, finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _event(head | {"choices": [choice]} | ({"usage": None} if include_usage else {}))

    for choice in response["choices"]:
        i = choice["index"]
        yield chunk(i, {"role": "assistant", "content": ""})
        for piece in pieces(choice["message"]["content"]):
            yield chunk(i, {"content": piece})
        yield chunk(i, {}, choice["finish_reason"])
    if include_usage:
        yield _event(head | {"choices": [], "usage": response["usage"]})
    yield _event("[DONE]")


def completion_events(response: dict, include_usage: bool = False) -> Iterator[str]:
    """A ``text_completion`` response as ``text_completion`` chunk events."""
    head = {"id": response["id"], "object": "text_completion", "created": response["created"],
            "model": response["model"]}

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        return _event(head | {"choices": [choice]} | ({"usage": None} if include_usage else {}))

    for choice in response["choices"]:
        for piece in pieces(choice["text"]):
            yield chunk(choice["index"], piece)
        yield chunk(choice["index"], "", choice["finish_reason"])
    if include_usage:
        yield _event(head | {"choices": [], "usage": response["usage"]})
    yield _event("[DONE]")

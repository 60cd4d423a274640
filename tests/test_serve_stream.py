"""`serve` streams chat and completions as server-sent events (OpenAI's chunk shapes), read
with the official `openai` client; the streamed text equals the unstreamed one."""

from __future__ import annotations

import json

import httpx
import pytest

from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.serve import create_app, serve_in_thread
from cai_bootstrap.serve.stream import pieces

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def url():
    app = create_app(TransformersEngine.from_ref("tiny", batch_size=4), "tiny")
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_pieces_join_to_the_text():
    for text in ("", "one", "  two words\nand a line ", "x\n\n"):
        assert "".join(pieces(text)) == text


def test_chat_streams_with_the_openai_client(client):
    kwargs = dict(model="tiny", messages=[{"role": "user", "content": "Say hi."}], max_tokens=12, temperature=0,
                  seed=1)
    whole = client.chat.completions.create(**kwargs).choices[0]
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content and len(text) > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_completions_stream_with_the_openai_client(client):
    kwargs = dict(model="tiny", prompt=["Say hi.", "Count: 1 2"], max_tokens=8, temperature=0, seed=2)
    whole = client.completions.create(**kwargs)
    by_index: dict[int, str] = {}
    finish: dict[int, str] = {}
    for chunk in client.completions.create(stream=True, **kwargs):
        for ch in chunk.choices:
            by_index[ch.index] = by_index.get(ch.index, "") + ch.text
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert by_index == {c.index: c.text for c in whole.choices}
    assert finish == {c.index: c.finish_reason for c in whole.choices}


def test_wire_format_is_server_sent_events(url):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    # errors before a stream starts stay JSON errors
    r = httpx.post(f"{url}/v1/chat/completions", json=body | {"max_tokens": 10**9}, timeout=60)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]

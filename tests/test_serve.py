"""`serve`: the OpenAI-compatible server on the tiny model (in-process client, and one real subprocess)."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient

from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.serve import ApiError, create_app, messages_to_instruction

PROMPTS = [format_prompt(x) for x in ["Say hi.", "What is 2 + 2?", "Write a short poem about the sea, please."]]


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine.from_ref("tiny", batch_size=4)


@pytest.fixture(scope="module")
def client(engine):
    return TestClient(create_app(engine, "tiny"))


def test_models_and_health(client):
    assert client.get("/health").json() == {"status": "ok"}
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny"]


def test_completions_shape_and_same_text_as_engine(client, engine):
    req = {"model": "tiny", "prompt": PROMPTS, "max_tokens": 12, "temperature": 0.9, "top_p": 0.95,
           "n": 2, "seed": 7}
    body = client.post("/v1/completions", json=req).json()
    assert body["object"] == "text_completion" and body["model"] == "tiny"
    assert [c["index"] for c in body["choices"]] == list(range(6))
    assert all(c["finish_reason"] in ("stop", "length") for c in body["choices"])
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 6 * 12
    expected = engine.generate(PROMPTS, SamplingParams(max_new_tokens=12, temperature=0.9, top_p=0.95, n=2, seed=7),
                               progress=False)
    assert [c["text"] for c in body["choices"]] == [t for texts in expected for t in texts]
    # A single string prompt works too, and echo prepends the prompt.
    one = client.post("/v1/completions", json={"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0,
                                               "echo": True}).json()
    assert len(one["choices"]) == 1 and one["choices"][0]["text"].startswith(PROMPTS[0])


def test_extra_stop_strings_apply(client, engine):
    base = {"prompt": PROMPTS, "max_tokens": 16, "temperature": 1.0, "seed": 3}
    plain = [c["text"] for c in client.post("/v1/completions", json=base).json()["choices"]]
    # Stop at any character of the first sampled text: the output must be cut before it.
    stop = plain[0][2] if len(plain[0]) > 3 else "a"
    cut = [c["text"] for c in client.post("/v1/completions", json={**base, "stop": stop}).json()["choices"]]
    assert all(stop not in t for t in cut)
    assert cut[0] == plain[0][: plain[0].index(stop)].strip()


def test_chat_completions(client, engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    body = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 8,
                                                     "temperature": 0}).json()
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    expected = engine.generate([format_prompt("Be brief.\n\nName a colour.")], SamplingParams(max_new_tokens=8),
                               progress=False)
    assert choice["message"]["content"] == expected[0][0]


def test_messages_to_instruction():
    assert messages_to_instruction([{"role": "user", "content": "Hi"}]) == "Hi"
    text = messages_to_instruction([
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
    ])
    assert text == "Be kind.\n\nConversation so far:\nUser: What is 2+2?\nAssistant: 4\n\nCurrent request:\nAnd 3+3?"
    with pytest.raises(ApiError):
        messages_to_instruction([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    with pytest.raises(ApiError):
        messages_to_instruction([{"role": "system", "content": "x"}])


def test_errors_in_openai_shape(client):
    r = client.post("/v1/completions", json={"model": "other", "prompt": "x"})
    assert r.status_code == 404 and "tiny" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"prompt": "x", "top_p": 0})
    assert r.status_code == 400 and "top_p" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"prompt": "x", "logprobs": 1, "max_tokens": 4})
    assert r.status_code == 400
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "x"}]})
    assert r.status_code == 400


def test_echo_logprobs_match_engine(client, engine):
    options = [" yes", " no"]
    texts = [p + o for p in PROMPTS[:2] for o in options]
    body = client.post("/v1/completions", json={"prompt": texts, "max_tokens": 0, "echo": True, "logprobs": 0}).json()
    expected = engine.option_logprobs(PROMPTS[:2], [options, options])
    for k, choice in enumerate(body["choices"]):
        lp = choice["logprobs"]
        assert choice["text"] == texts[k]
        assert lp["token_logprobs"][0] is None and len(lp["tokens"]) == len(lp["text_offset"])
        cut = len(PROMPTS[k // 2])
        got = sum(v for v, off in zip(lp["token_logprobs"], lp["text_offset"]) if off >= cut)
        assert got == pytest.approx(expected[k // 2][k % 2], abs=1e-3)


def test_api_key(engine):
    guarded = TestClient(create_app(engine, "tiny", api_key="s3cret"))
    assert guarded.get("/v1/models").status_code == 401
    assert guarded.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/health").status_code == 200


@pytest.mark.slow  # a fresh interpreter importing torch + transformers: ~15 s on 2 cores
def test_run_server_subprocess_on_loopback(tiny_server_url):
    body = httpx.post(f"{tiny_server_url}/v1/completions",
                      json={"model": "tiny", "prompt": "hi", "max_tokens": 3, "temperature": 0}, timeout=30).json()
    assert len(body["choices"]) == 1


def test_loader_serves_other_model_ids(engine):
    loads = []

    def loader(ref):
        if ref == "missing":
            raise FileNotFoundError("no such model")
        loads.append(ref)
        return TransformersEngine.from_ref("tiny", batch_size=4)

    multi = TestClient(create_app(engine, "tiny", loader=loader, max_loaded=1))
    req = {"prompt": PROMPTS[:1], "max_tokens": 4, "temperature": 0}
    assert multi.post("/v1/completions", json={**req, "model": "a"}).json()["model"] == "a"
    assert multi.post("/v1/completions", json={**req, "model": "a"}).status_code == 200
    assert [m["id"] for m in multi.get("/v1/models").json()["data"]] == ["tiny", "a"]
    multi.post("/v1/completions", json={**req, "model": "b"})
    assert [m["id"] for m in multi.get("/v1/models").json()["data"]] == ["tiny", "b"]  # "a" evicted
    assert loads == ["a", "b"]
    r = multi.post("/v1/completions", json={**req, "model": "missing"})
    assert r.status_code == 404 and "no such model" in r.json()["error"]["message"]


# ------------------------------------------------------------------ one request cannot stall the server (#22)


def test_api_key_covers_docs_and_comes_from_env_or_file(engine, tmp_path, monkeypatch):
    from cai_bootstrap.serve import API_KEY_ENV, read_api_key

    guarded = TestClient(create_app(engine, "tiny", api_key="s3cret"))
    for path in ("/docs", "/openapi.json", "/redoc", "/v1/models"):
        r = guarded.get(path)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", path
        assert guarded.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
    assert guarded.get("/v1/models", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    assert guarded.get("/v1/models", headers={"Authorization": "Bearer s3crét".encode()}).status_code == 401
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert read_api_key(None, key_file) == "from-file" and read_api_key() == "from-env"
    monkeypatch.delenv(API_KEY_ENV)
    assert read_api_key() is None


def test_limits_give_json_errors(engine):
    from cai_bootstrap.serve import ServeLimits

    app = create_app(engine, "tiny", limits=ServeLimits(max_tokens=64, max_body_bytes=20_000, max_sequences=8))
    app.add_api_route("/boom", lambda: 1 / 0)  # an unexpected error in any route
    client = TestClient(app, raise_server_exceptions=False)
    for body in ({"prompt": "x", "max_tokens": 100000}, {"prompt": "x", "max_tokens": 1e12},
                 {"prompt": "x", "max_tokens": 10**30}):
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"], r.text
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 65})
    assert r.status_code == 400 and "limit of 64" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"prompt": ["x"] * 3, "n": 3, "max_tokens": 2})
    assert r.status_code == 400 and "sequences" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"prompt": "x" * 50_000, "max_tokens": 2})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    chunks = (b'{"prompt": "' + b"x" * 10_000 + b'", ' for _ in range(3))  # streamed, no content-length
    r = client.post("/v1/completions", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]
    r = client.get("/boom")
    assert r.status_code == 500 and r.json()["error"]["message"] == "internal error (ZeroDivisionError)"


def test_usage_counts_the_prompt_tokens_the_model_saw(client, engine):
    long = format_prompt("word " * 1000)  # > max_prompt_tokens (1536) bytes of the byte tokenizer
    assert len(engine.tokenizer(long).input_ids) > engine.max_prompt_tokens
    body = client.post("/v1/completions", json={"prompt": long, "max_tokens": 1, "temperature": 0}).json()
    assert body["usage"]["prompt_tokens"] == engine.max_prompt_tokens


def test_long_request_does_not_stall_the_others(engine):
    """A greedy 3,000-token request (about a minute on the tiny model) whose client gives up
    is cancelled: the request queued behind it finishes within seconds, and a request beyond
    the queue's bound gets 503 at once instead of waiting."""
    import threading

    from cai_bootstrap.serve import ServeLimits, serve_in_thread

    app = create_app(engine, "tiny", limits=ServeLimits(max_tokens=4000, max_queue=1))
    short = {"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0}
    results: dict = {}
    with serve_in_thread(app) as url:
        def long_request():
            with httpx.Client(timeout=2.0) as c:
                try:
                    c.post(f"{url}/v1/completions", json={"prompt": PROMPTS[0], "max_tokens": 3000, "temperature": 0})
                    results["long"] = "finished"
                except httpx.TimeoutException:
                    results["long"] = "gave up"

        def queued_request():
            t0 = time.monotonic()
            r = httpx.post(f"{url}/v1/completions", json=short, timeout=120)
            results["queued"] = (r.status_code, time.monotonic() - t0)

        long_t = threading.Thread(target=long_request)
        long_t.start()
        time.sleep(0.7)  # the long request holds the model
        queued_t = threading.Thread(target=queued_request)
        queued_t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        busy = httpx.post(f"{url}/v1/completions", json=short, timeout=30)
        assert busy.status_code == 503 and "busy" in busy.json()["error"]["message"]
        assert time.monotonic() - t0 < 2
        long_t.join(30)
        queued_t.join(60)
    assert results["long"] == "gave up"
    status, seconds = results["queued"]
    assert status == 200 and seconds < 20, results  # uncancelled, the long request alone takes ~80 s here

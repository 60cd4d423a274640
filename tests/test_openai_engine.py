"""`OpenAIEngine` against a real server on loopback: `serve` with the tiny model, and small fake servers.

The key check: the openai backend against `cai-bootstrap serve` gives the same
outputs as the local transformers engine, greedy and seeded sampling alike.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from cai_bootstrap.config import EngineSettings
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.factory import make_engine
from cai_bootstrap.engines.openai_engine import OpenAIEngine, OpenAIEngineError, api_root
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.serve import create_app, serve_in_thread

BATCH = 4
PROMPTS = [
    format_prompt("Say hi."),
    format_prompt("What is 2 + 2?"),
    format_prompt("Write a short poem about the sea, please, in four lines."),
    format_few_shot("Capital of France?", [("Capital of Italy?", "Rome"), ("Capital of Spain?", "Madrid")]),
    format_prompt("x"),
    format_prompt("List three fruits."),
]


@pytest.fixture(scope="module")
def local():
    return TransformersEngine.from_ref("tiny", batch_size=BATCH)


@pytest.fixture(scope="module")
def server_url():
    # A separately loaded copy of the model, as `cai-bootstrap serve --model tiny` would hold.
    served = TransformersEngine.from_ref("tiny", batch_size=BATCH)
    with serve_in_thread(create_app(served, "tiny")) as url:
        yield url


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=12),
        SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, n=3, seed=11),
        SamplingParams(max_new_tokens=10, temperature=0.7, top_k=20, repetition_penalty=1.2, n=2, seed=5,
                       stop=["e"]),
    ],
    ids=["greedy", "seeded-sampling", "top_k-penalty-stop"],
)
def test_same_outputs_as_transformers_engine(local, server_url, params):
    remote = OpenAIEngine(server_url, "tiny")  # one request per call: same batching as the local engine
    got = remote.generate(PROMPTS, params, progress=False)
    want = local.generate(PROMPTS, params, progress=False)
    assert got == want
    assert remote.generated_tokens > 0
    # Same seed again: same records.
    assert remote.generate(PROMPTS, params, progress=False) == got


def test_factory_engine_matches_for_calls_within_batch_size(local, server_url):
    """Via `make_engine`: ``engine.batch_size`` prompts per request, so a stage chunk <= batch_size matches."""
    remote = make_engine("tiny", EngineSettings(backend="openai", base_url=server_url + "/v1", batch_size=BATCH))
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=1, seed=3)
    assert remote.generate(PROMPTS[:BATCH], params, progress=False) == local.generate(PROMPTS[:BATCH], params,
                                                                                    progress=False)
    # Longer calls are split into concurrent requests: still deterministic, in prompt order.
    first = remote.generate(PROMPTS, params, progress=False)
    assert len(first) == len(PROMPTS) and remote.generate(PROMPTS, params, progress=False) == first
    greedy = SamplingParams(max_new_tokens=8)
    assert remote.generate(PROMPTS, greedy, progress=False) == local.generate(PROMPTS, greedy, progress=False)


def test_choose_by_echo_logprobs(local, server_url):
    remote = OpenAIEngine(server_url, "tiny")
    options = [[" yes", " no"], [" A", " B", " C"], [" 4", " four"]]
    got = remote.option_logprobs(PROMPTS[:3], options)
    want = local.option_logprobs(PROMPTS[:3], options)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-3)
    assert remote.choose(PROMPTS[:3], options) == local.choose(PROMPTS[:3], options)
    assert remote._echo_supported is True


def test_one_server_for_every_model_of_a_run(tmp_path):
    """`serve` with a loader answers for stage models too: the ids the pool sends are their paths."""
    import json

    from peft import LoraConfig, get_peft_model

    from cai_bootstrap.models.loading import load_base

    def install_adapter(seed: int) -> None:
        """A stage's (re)trained model: a random LoRA adapter under the same stage path."""
        base, _ = load_base("tiny")
        torch.manual_seed(seed)
        adapter = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        adapter.save_pretrained(str(tmp_path / "adapter"))

    install_adapter(1)
    stage = tmp_path / "run" / "stage-1" / "model"
    stage.mkdir(parents=True)
    (stage / "lineage.json").write_text(json.dumps({"base": "tiny", "adapters": [str(tmp_path / "adapter")]}))

    served = TransformersEngine.from_ref("tiny", batch_size=BATCH)
    app = create_app(served, "tiny", loader=lambda ref: TransformersEngine.from_ref(ref, batch_size=BATCH))
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=2, seed=4)

    def local_outputs(ref: str) -> list[list[str]]:
        return TransformersEngine.from_ref(ref, batch_size=BATCH).generate(PROMPTS, params, progress=False)

    with serve_in_thread(app) as url:
        remote = OpenAIEngine(url, str(stage))
        got = remote.generate(PROMPTS, params, progress=False)
        assert got == local_outputs(str(stage)) and got != local_outputs("tiny")
        # A retry retrains the stage under the same id: the server must not answer with the
        # first attempt's weights (it did, in a quick run through `serve`: see docs/scaling.md).
        install_adapter(2)
        again = remote.generate(PROMPTS, params, progress=False)
    assert again == local_outputs(str(stage)) and again != got


def test_unknown_model_is_a_clear_error(server_url):
    remote = OpenAIEngine(server_url, "gemma-3-270m", max_retries=3, backoff_s=0.01)
    with pytest.raises(OpenAIEngineError, match="404.*does not exist"):
        remote.generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), progress=False)


def test_api_root():
    assert api_root("http://h:1") == api_root("http://h:1/") == api_root("http://h:1/v1/") == "http://h:1/v1"
    with pytest.raises(ValueError):
        api_root("h:1")


# ---------------------------------------------------------------- fake servers: retries, timeouts, concurrency


def fake_server(fail_first: int = 0, status: int = 503, delay_s: float | list[float] = 0.0, echo: bool = False,
                retry_after: str | None = None):
    """A stand-in OpenAI server that fails the first calls, sleeps, and echoes prompts back."""
    state = {"calls": 0, "inflight": 0, "max_inflight": 0, "seeds": []}
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/v1/completions")
    def completions(body: dict):
        with lock:
            state["calls"] += 1
            call = state["calls"]
            state["inflight"] += 1
            state["max_inflight"] = max(state["max_inflight"], state["inflight"])
        try:
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            pause = delay_s[call % len(delay_s)] if isinstance(delay_s, list) else delay_s
            time.sleep(pause)
            if call <= fail_first:
                headers = {"Retry-After": retry_after} if retry_after else {}
                return JSONResponse({"error": {"message": "server overloaded"}}, status_code=status, headers=headers)
            if body.get("echo") and not echo:
                return JSONResponse({"error": {"message": "echo is not supported"}}, status_code=400)
            state["seeds"].append(body["seed"])
            n = body.get("n", 1)
            choices = [
                {"index": i * n + j, "text": f" {p.split()[-1]}-{j}\n### Instruction: junk", "finish_reason": "stop"}
                for i, p in enumerate(prompts)
                for j in range(n)
            ]
            return {"choices": choices[::-1], "usage": {"completion_tokens": 2 * len(choices)}}
        finally:
            with lock:
                state["inflight"] -= 1

    return app, state


WORDS = [f"w{i}" for i in range(9)]


def test_retries_on_503_then_succeeds():
    app, state = fake_server(fail_first=2, status=503)
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", max_retries=3, backoff_s=0.01)
        out = eng.generate(WORDS[:2], SamplingParams(n=2), progress=False)
    assert out == [["w0-0", "w0-1"], ["w1-0", "w1-1"]]  # ordered by index, stop text cut
    assert state["calls"] == 3
    assert eng.generated_tokens == 8


def test_retries_on_429_honour_retry_after():
    app, state = fake_server(fail_first=1, status=429, retry_after="0.3")
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", max_retries=2, backoff_s=0.01)
        t0 = time.monotonic()
        assert eng.generate(["a"], SamplingParams(), progress=False) == [["a-0"]]
        assert time.monotonic() - t0 >= 0.3
    assert state["calls"] == 2


def test_gives_up_after_max_retries():
    app, state = fake_server(fail_first=100, status=500)
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", max_retries=2, backoff_s=0.01)
        with pytest.raises(OpenAIEngineError, match=r"giving up after 3 attempt\(s\).*HTTP 500: server overloaded"):
            eng.generate(["a"], SamplingParams(), progress=False)
    assert state["calls"] == 3


def test_client_errors_are_not_retried():
    app, state = fake_server(fail_first=100, status=422)
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", max_retries=3, backoff_s=0.01)
        with pytest.raises(OpenAIEngineError, match="HTTP 422") as info:
            eng.generate(["a"], SamplingParams(), progress=False)
    assert info.value.status == 422 and state["calls"] == 1


def test_timeout_is_retried_then_reported():
    app, state = fake_server(delay_s=1.0)
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", timeout_s=0.2, max_retries=1, backoff_s=0.01)
        t0 = time.monotonic()
        with pytest.raises(OpenAIEngineError, match="timed out after 0.2 s"):
            eng.generate(["a"], SamplingParams(), progress=False)
        assert time.monotonic() - t0 < 0.9
    assert state["calls"] == 2


def test_connection_refused_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    eng = OpenAIEngine(f"http://127.0.0.1:{port}", "m", max_retries=1, backoff_s=0.01)
    with pytest.raises(OpenAIEngineError, match="giving up after 2 attempt.*Connect"):
        eng.generate(["a"], SamplingParams(), progress=False)


def test_concurrency_limit_and_order():
    app, state = fake_server(delay_s=[0.15, 0.05, 0.1])
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m", concurrency=3, prompts_per_request=1)
        out = eng.generate(WORDS, SamplingParams(seed=9), progress=True)
    assert out == [[f"{w}-0"] for w in WORDS]
    assert state["calls"] == len(WORDS)
    assert 2 <= state["max_inflight"] <= 3
    assert 9 in state["seeds"] and len(set(state["seeds"])) == len(WORDS)  # first request keeps the seed


def test_choose_falls_back_without_echo_support():
    app, _ = fake_server()
    with serve_in_thread(app) as url:
        eng = OpenAIEngine(url, "m")
        # The fake server answers "<last word>-0": "yes-0" starts with "yes" -> option 1.
        assert eng.choose(["is it yes"], [["no", "yes"]]) == [1]
    assert eng._echo_supported is False


@pytest.mark.slow
def test_stage_records_identical_with_openai_backend(tmp_path):
    """A whole `skills` stage at the tiny preset: the same data.jsonl through `serve` as with transformers."""
    import json

    from cai_bootstrap.config import load_run_settings
    from cai_bootstrap.pipeline.runner import create_run, execute

    flags = {"curriculum": "skills", "preset": "tiny", "model": "tiny", "stages": ["stage-1", "stage-2"]}

    def run(out, overrides):
        execute(create_run(load_run_settings(None, overrides, flags), out), progress=False)
        return {st: [json.loads(line) for line in (out / st / "data.jsonl").open()] for st in flags["stages"]}

    local = run(tmp_path / "local", [])
    batch = EngineSettings().batch_size  # the server must batch as the run's engine does
    served = TransformersEngine.from_ref("tiny", batch_size=batch)
    app = create_app(served, "tiny", loader=lambda ref: TransformersEngine.from_ref(ref, batch_size=batch))
    with serve_in_thread(app) as url:
        remote = run(tmp_path / "remote", ["engine.backend=openai", f"engine.base_url={url}/v1"])
    for stage in flags["stages"]:
        assert local[stage] and remote[stage] == local[stage]

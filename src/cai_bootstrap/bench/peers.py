"""The same few-shot workload through another inference server: llama.cpp, vLLM CPU, any peer.

A peer is an OpenAI-compatible server the user already runs (``llama-server -m model.gguf
-t 2``, ``python -m vllm.entrypoints.openai.api_server --model ...``), given to ``bench`` as
``--peer NAME=URL``. Figure ``<NAME>_fewshot`` sends it the `workload` prompts with the same
sampling (through `OpenAIEngine`, the pipeline's own ``--engine openai`` path) and compares:
``value`` = our engine's completions/s, ``naive`` = the peer's, so ``vs_naive`` >= 1 means
ours is at least as fast. Why over HTTP rather than each library's Python API: it is how a
user runs these servers beside the pipeline (and how ``--engine openai`` would use them), and
it needs neither ``llama-cpp-python`` nor vLLM's pinned transformers in this environment.

A server that ignores ``n`` (returns one choice per prompt) is sent every prompt ``n`` times.
Peers the command did not name are listed in ``skipped`` with how to start one.
"""

from __future__ import annotations

import time

import httpx

from cai_bootstrap.bench.settings import Figure
from cai_bootstrap.engines.base import SamplingParams
from cai_bootstrap.engines.openai_engine import OpenAIEngine, OpenAIEngineError, api_root

#: The peers the issue names, and how a user starts each on this CPU (docs/performance.md).
KNOWN_PEERS = {
    "llamacpp": "llama.cpp: `llama-server -m <model.gguf> -t 2 --port 8080` (a GGUF from "
                "`cai-bootstrap export --format gguf`), then `--peer llamacpp=http://127.0.0.1:8080`",
    "vllm": "vLLM CPU: `make vllm-env`, then `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server "
            "--model <hf dir> --dtype bfloat16 --no-enable-chunked-prefill --port 8001` and "
            "`--peer vllm=http://127.0.0.1:8001`",
}


def parse_peers(values: list[str]) -> dict[str, str]:
    """``["llamacpp=http://h:8080", ...]`` -> ``{"llamacpp": "http://h:8080/v1"}``; errors name the bad value."""
    peers: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"--peer {value!r}: expected NAME=URL, e.g. llamacpp=http://127.0.0.1:8080")
        peers[name.strip()] = api_root(url)
    return peers


def served_model(base_url: str, timeout_s: float = 10.0) -> str:
    """The first model id the server lists at ``/models`` (vLLM checks it; llama.cpp ignores it)."""
    try:
        resp = httpx.get(f"{api_root(base_url)}/models", timeout=timeout_s)
        resp.raise_for_status()
        models = resp.json().get("data") or []
    except (httpx.HTTPError, ValueError) as exc:
        raise OpenAIEngineError(f"peer {base_url}: cannot list its models ({exc})") from exc
    if not models:
        raise OpenAIEngineError(f"peer {base_url}: /models lists no model")
    return str(models[0]["id"])


def _peer_generate(engine: OpenAIEngine, prompts: list[str], params: SamplingParams) -> tuple[list[list[str]], bool]:
    """Samples per prompt, and whether ``n`` had to be expanded into repeated prompts."""
    try:
        return engine.generate(prompts, params, progress=False), False
    except OpenAIEngineError as exc:
        if "choices" not in str(exc) or params.n == 1:
            raise
    one = params.model_copy(update={"n": 1})
    flat = engine.generate([p for p in prompts for _ in range(params.n)], one, progress=False)
    return [[row[0] for row in flat[i * params.n : (i + 1) * params.n]] for i in range(len(prompts))], True


def bench_peer(name: str, base_url: str, prompts: list[str], params: SamplingParams, ours_per_s: float,
               concurrency: int = 8) -> Figure:
    """Time ``prompts`` x ``params.n`` completions on the peer (after a two-prompt warm-up)."""
    engine = OpenAIEngine(base_url, served_model(base_url), concurrency=concurrency, timeout_s=600.0)
    _peer_generate(engine, prompts[:2], params.model_copy(update={"n": 1, "max_new_tokens": 2}))
    t0 = time.perf_counter()
    samples, expanded = _peer_generate(engine, prompts, params)
    seconds = time.perf_counter() - t0
    completions = len(prompts) * params.n
    nonempty = sum(bool(s.strip()) for row in samples for s in row)
    return Figure(
        id=f"{name}_fewshot", unit="completions/s", value=ours_per_s, naive=completions / seconds,
        name=f"stage-1 few-shot prompts: our engine vs {name} ({base_url})",
        info={"peer_seconds": seconds, "peer_nonempty_samples": float(nonempty), "n_expanded": float(expanded)},
    )

"""The ``openai`` backend: any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, `serve`).

Prompts are already formatted plain text (`cai_bootstrap.prompt_format`), so only the
legacy ``/v1/completions`` endpoint is used, never chat templates. Each request sends
``max_tokens, temperature, top_p, n, stop, seed`` (``stop`` = our `STOP_SEQUENCES`
plus the caller's extra stops); ``top_k`` and ``repetition_penalty`` are sent only when
they differ from "off", because OpenAI's own API rejects them (vLLM and `serve` accept them).

Batching and seeds (why results can equal the transformers engine's exactly):

* One ``generate`` call is split into requests of ``prompts_per_request`` prompts, in
  order (None: the whole call in one request). Requests run concurrently, at most
  ``concurrency`` at a time; results come back in prompt order.
* The first request carries the caller's ``seed``; request ``c > 0`` carries
  ``batch_seed(seed, c)``. A `serve` server runs each request's prompts through
  `TransformersEngine.generate` with the request's seed, so a call that fits in one
  request is sampled exactly as a local `TransformersEngine` with the same
  ``batch_size`` would sample it (same length sort, same internal batches, same
  per-batch seeds). The factory uses ``engine.batch_size`` as ``prompts_per_request``,
  and stage builders generate in chunks of at most that many prompts by default.
  Other servers (vLLM) seed each request their own way: results are reproducible
  against the same server and settings, but not equal to the transformers engine.

Failures: connection errors, timeouts, HTTP 429 and 5xx are retried ``max_retries``
times with exponential backoff (``backoff_s * 2**attempt``, capped, at least the
server's ``Retry-After``); other 4xx errors fail at once. After the last attempt an
`OpenAIEngineError` names the URL, the number of attempts and the last error.

Resume: the engine is stateless; record-level resume is the stage builders' job
(`StageContext.chunks`), exactly as for the other backends.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import httpx

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.engines.transformers_engine import batch_seed, make_progress
from cai_bootstrap.prompt_format import STOP_SEQUENCES, clean_response

log = logging.getLogger(__name__)


class OpenAIEngineError(RuntimeError):
    """A request to the OpenAI-compatible server failed (after retries, where retryable)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def api_root(base_url: str) -> str:
    """``http://h:p``, ``http://h:p/`` and ``http://h:p/v1`` all become ``http://h:p/v1``."""
    root = base_url.strip().rstrip("/")
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
    return root if root.endswith("/v1") else root + "/v1"


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            return str(err.get("message", err))
        return str(err)[:300]
    return str(body)[:300]


class OpenAIEngine(Engine):
    """Generate through an OpenAI-compatible ``/v1/completions`` endpoint."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        *,
        prompts_per_request: int | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout_s > 0")
        if prompts_per_request is not None and prompts_per_request < 1:
            raise ValueError("prompts_per_request must be >= 1 (or None: one request per call)")
        self.base_url = api_root(base_url)
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.prompts_per_request = prompts_per_request
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.generated_tokens = 0
        self._echo_supported: bool | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One pooled client, shared by the worker threads (httpx.Client is thread-safe).
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    # ------------------------------------------------------------ HTTP

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.max_backoff_s))
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        return delay

    def _post(self, path: str, payload: dict) -> dict:
        """POST with retries; returns the decoded JSON body."""
        url = self.base_url + path
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                resp = self._client.post(path, json=payload)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc or 'connection failed'}"
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError as exc:
                        raise OpenAIEngineError(f"{url}: response is not JSON: {resp.text[:200]!r}") from exc
                last = f"HTTP {resp.status_code}: {_error_text(resp)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise OpenAIEngineError(f"{url}: {last}", status=resp.status_code)
                retry_after = resp.headers.get("retry-after")
            if attempt < self.max_retries:
                delay = self._delay(attempt, retry_after)
                log.warning("%s: %s; retry %d/%d in %.2g s", url, last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise OpenAIEngineError(
            f"{url}: giving up after {self.max_retries + 1} attempt(s); last error: {last}. "
            "Is the server running and reachable (engine.base_url), and is engine.timeout_s long enough?"
        )

    def _run_requests(self, payloads: list[dict], progress: bool, desc: str, sizes: list[int]) -> list[dict]:
        """POST every payload to /completions (at most ``concurrency`` at once); bodies in order."""
        bodies: list[dict | None] = [None] * len(payloads)
        with make_progress(disable=not progress) as bar, ThreadPoolExecutor(self.concurrency) as pool:
            task = bar.add_task(desc, total=sum(sizes), rate="")
            t0, finished = time.time(), 0
            futures = {pool.submit(self._post, "/completions", p): i for i, p in enumerate(payloads)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.exception() is not None:
                        pool.shutdown(wait=False, cancel_futures=True)  # requests in flight still finish
                        raise fut.exception()
                    i = futures[fut]
                    bodies[i] = fut.result()
                    usage = bodies[i].get("usage") or {}
                    self.generated_tokens += int(usage.get("completion_tokens") or 0)
                    finished += sizes[i]
                    rate = f"{finished / max(time.time() - t0, 1e-6):.1f} prompts/s"
                    bar.update(task, advance=sizes[i], rate=rate)
        return bodies  # type: ignore[return-value]

    # ------------------------------------------------------------ generation

    def _payload(self, prompts: list[str], params: SamplingParams, seed: int) -> dict:
        payload = {
            "model": self.model,
            "prompt": prompts,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "stop": list(dict.fromkeys([*STOP_SEQUENCES, *params.stop])),
            "seed": seed,
        }
        if params.top_k > 0:
            payload["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            payload["repetition_penalty"] = params.repetition_penalty
        return payload

    def _chunks(self, prompts: list[str]) -> list[list[str]]:
        size = self.prompts_per_request or len(prompts)
        return [prompts[s : s + size] for s in range(0, len(prompts), size)]

    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool = True, desc: str = "generate"
    ) -> list[list[str]]:
        if not prompts:
            return []
        chunks = self._chunks(prompts)
        payloads = [
            self._payload(chunk, params, params.seed if c == 0 else batch_seed(params.seed, c))
            for c, chunk in enumerate(chunks)
        ]
        bodies = self._run_requests(payloads, progress, desc, [len(c) for c in chunks])
        results: list[list[str]] = []
        for chunk, body in zip(chunks, bodies):
            choices = sorted(body.get("choices") or [], key=lambda ch: ch.get("index", 0))
            if len(choices) != len(chunk) * params.n:
                raise OpenAIEngineError(
                    f"{self.base_url}/completions: expected {len(chunk) * params.n} choices "
                    f"({len(chunk)} prompts x n={params.n}), got {len(choices)}"
                )
            for i in range(len(chunk)):
                group = choices[i * params.n : (i + 1) * params.n]
                results.append([clean_response(ch.get("text") or "", tuple(params.stop)) for ch in group])
        return results

    # ------------------------------------------------------------ judging

    def option_logprobs(self, prompts: list[str], options: list[list[str]]) -> list[list[float]]:
        """Sum log-probability of each option after its prompt, via ``echo`` + ``logprobs``.

        Sends ``prompt + option`` with ``max_tokens=0, echo=true, logprobs=0`` and sums
        the log-probabilities of the tokens that start at or end after the prompt's end
        (a token straddling the boundary counts as the option's). Servers tokenize the
        joined text, so a tokenizer that merges across the boundary can score slightly
        differently from `TransformersEngine.option_logprobs`, which tokenizes the two
        parts separately. Raises `OpenAIEngineError` if the server does not support it.
        """
        pairs = [(pi, oi) for pi, opts in enumerate(options) for oi in range(len(opts))]
        texts = [prompts[pi] + options[pi][oi] for pi, oi in pairs]
        size = self.prompts_per_request or len(texts)
        payloads = [
            {"model": self.model, "prompt": texts[s : s + size], "max_tokens": 0, "echo": True,
             "logprobs": 0, "temperature": 0.0}
            for s in range(0, len(texts), size)
        ]
        bodies = self._run_requests(payloads, False, "score", [len(p["prompt"]) for p in payloads])
        choices = [ch for body in bodies for ch in sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))]
        if len(choices) != len(texts):
            raise OpenAIEngineError(f"echo scoring: expected {len(texts)} choices, got {len(choices)}")
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        for (pi, oi), text, choice in zip(pairs, texts, choices):
            lp = choice.get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not offsets or values is None or len(offsets) != len(values):
                raise OpenAIEngineError("server returned no prompt logprobs for echo=true")
            cut = len(prompts[pi])
            ends = list(offsets[1:]) + [len(choice.get("text") or text)]
            scores[pi][oi] = sum(
                v for v, start, end in zip(values, offsets, ends) if v is not None and (start >= cut or end > cut)
            )
        return scores

    def choose(self, prompts: list[str], options: list[list[str]]) -> list[int]:
        """Pick by option log-probability where the server supports echo+logprobs, else the base rule."""
        if self._echo_supported is not False:
            try:
                scores = self.option_logprobs(prompts, options)
            except OpenAIEngineError as exc:
                if exc.status is None and "logprobs" not in str(exc):
                    raise  # a real outage, not a missing feature
                log.warning("%s: echo+logprobs unsupported (%s); judging by greedy generation", self.base_url, exc)
                self._echo_supported = False
            else:
                self._echo_supported = True
                return [max(range(len(s)), key=s.__getitem__) for s in scores]
        return super().choose(prompts, options)

    def close(self) -> None:
        self._client.close()

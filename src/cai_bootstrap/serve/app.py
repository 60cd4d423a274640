"""An OpenAI-compatible server for any registry or stage model: ``cai-bootstrap serve``.

Endpoints (the subset clients and the `openai` backend use):

* ``GET  /v1/models``: the served model(s): the default one (its id is the name given to
  `create_app`), plus any loaded on request when the server was given a ``loader``.
* ``POST /v1/completions``: ``prompt`` (string or list of strings), ``max_tokens`` (16),
  ``temperature`` (1.0; 0 = greedy), ``top_p``, ``n``, ``stop``, ``seed``, plus the
  vLLM-style extras ``top_k`` and ``repetition_penalty``. ``echo`` with ``max_tokens=0``
  and ``logprobs`` returns the prompt's token log-probabilities (used by
  `OpenAIEngine.choose`); other ``logprobs`` requests are refused (400).
* ``POST /v1/chat/completions``: ``messages`` become one prompt in the project's format
  (see `messages_to_instruction`); the reply is in OpenAI chat shape.
* ``stream=true`` on either: server-sent events in OpenAI's chunk shapes (`serve.stream`), sent
  once the texts are generated; ``stream_options.include_usage`` adds the usage chunk.
* ``GET  /health``.

How a request is run: all prompts of one request go through
`TransformersEngine.generate` in one call with the request's ``seed`` (random when
absent, as in OpenAI's API), so the server samples exactly what a local engine with
the same ``batch_size`` samples for the same prompts and seed. Our `STOP_SEQUENCES`
always apply (every model here speaks the ``### Instruction`` format); texts come back
cleaned (cut at the first stop string, whitespace stripped). ``finish_reason`` is
"length" when the cleaned text has at least ``max_tokens`` tokens, else "stop", and
``usage.completion_tokens`` counts the generated non-padding tokens, stop text included:
both are close approximations, since the engine returns cleaned text only.

The models are used by one request at a time (a lock); requests queue, at most
``ServeLimits.max_queue`` of them behind the running one (more get 503). One request is
bounded: ``max_tokens`` up to ``ServeLimits.max_tokens``, prompts x ``n`` up to
``max_sequences``, a body of ``max_body_bytes`` (413 beyond), prompts cut from the left to the
engine's ``max_prompt_tokens`` (``usage.prompt_tokens`` counts what the model saw). A client
that disconnects cancels its generation before the next decoding step, and so does shutdown.
Every error is a JSON body in OpenAI's shape, unexpected ones included (500). The server binds
to 127.0.0.1 unless told otherwise and has no authentication unless ``api_key`` is set; with
it, every path but ``/health`` (``/docs`` and ``/openapi.json`` too) needs the bearer token,
compared in constant time. See docs/security.md for what this promises and what it does not.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cai_bootstrap.engines.base import (
    DEFAULT_BATCH_SIZE,
    GenerationCancelled,
    SamplingParams,
)
from cai_bootstrap.engines.factory import make_engine
from cai_bootstrap.engines.settings import EngineSettings
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import model_fingerprint
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.serve.limits import (
    LOOPBACK,
    ApiKeyAuth,
    BodyLimit,
    ServeLimits,
    read_api_key,
)
from cai_bootstrap.serve.schema import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    _Request,
    error_response,
    extra_stops,
    messages_to_instruction,
)
from cai_bootstrap.serve.stream import MEDIA_TYPE, chat_events, completion_events

log = logging.getLogger(__name__)


def create_app(
    engine: TransformersEngine,
    model_name: str,
    *,
    api_key: str | None = None,
    loader: Callable[[str], TransformersEngine] | None = None,
    max_loaded: int = 2,
    limits: ServeLimits | None = None,
) -> FastAPI:
    """The FastAPI app serving ``engine`` under the model id ``model_name``.

    With ``loader``, a request for another model id loads that model reference
    (``loader(model_id)``: a registry name, a run stage, a path) and keeps at most
    ``max_loaded`` such models besides the default one (least recently used goes).
    That lets one server answer for every model of a run (``engine.backend=openai``
    sends each role's model reference as its id). Without it other ids get 404.
    """
    limits = limits or ServeLimits()
    app = FastAPI(title="cai-bootstrap", description=f"OpenAI-compatible server for {model_name}")
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    lock = threading.Lock()  # one request uses the models at a time
    waiting = [0]  # requests admitted and not finished (the running one included)
    engines: OrderedDict[str, TransformersEngine] = OrderedDict([(model_name, engine)])
    fingerprints: dict[str, str | None] = {}  # of models loaded on request (see model_fingerprint)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        msgs = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return error_response(400, "; ".join(msgs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("request failed")
        return error_response(500, f"internal error ({type(exc).__name__})", "server_error")

    if api_key:
        app.add_middleware(ApiKeyAuth, api_key=api_key)

    def check_size(n_prompts: int, req: _Request, max_tokens: int) -> None:
        if max_tokens > limits.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}",
                           param="max_tokens")
        if n_prompts * req.n > limits.max_sequences:
            raise ApiError(400, f"{n_prompts} prompts x n={req.n} is over this server's limit of "
                           f"{limits.max_sequences} sequences per request", param="n")

    async def admitted(request: Request, work: Callable[[threading.Event], dict]) -> dict:
        """Run ``work(cancel)`` in a worker thread once the models are free; 503 when the queue
        is full; ``cancel`` is set when the client disconnects or the server shuts down."""
        if waiting[0] > limits.max_queue:
            raise ApiError(503, f"server busy: {waiting[0]} requests running or queued; retry later",
                           "server_error")
        waiting[0] += 1
        cancel = threading.Event()
        task = asyncio.ensure_future(anyio.to_thread.run_sync(work, cancel))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    return task.result()
                if not cancel.is_set() and await request.is_disconnected():
                    log.info("client went away: generation cancelled")
                    cancel.set()
        except asyncio.CancelledError:  # shutdown: stop the worker at its next decoding step
            cancel.set()
            raise
        finally:
            waiting[0] -= 1

    @contextmanager
    def holding_models(cancel: threading.Event) -> Iterator[None]:
        with lock:
            if cancel.is_set():
                raise GenerationCancelled("client went away while queued")
            yield

    def resolve(req: _Request) -> tuple[str, TransformersEngine]:
        """The engine for the request's model id (call with the lock held)."""
        name = req.model or model_name
        if name in engines and (name == model_name or fingerprints.get(name) == model_fingerprint(name)):
            engines.move_to_end(name)
            return name, engines[name]
        if name in engines:  # a stage model retrained since it was loaded: load it again
            log.info("model %s changed on disk: reloading", name)
            engines.pop(name)
        if loader is None:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {model_name!r}",
                           "not_found_error", "model")
        try:
            loaded = loader(name)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            raise ApiError(404, f"the model {name!r} could not be loaded: {exc}", "not_found_error", "model") from exc
        engines[name] = loaded
        fingerprints[name] = model_fingerprint(name)
        extra = [k for k in engines if k != model_name]
        while len(extra) > max_loaded:
            engines.pop(extra.pop(0))
        log.info("loaded model %s (%d in memory)", name, len(engines))
        return name, loaded

    def n_tokens(eng: TransformersEngine, text: str, special: bool) -> int:
        return len(eng.tokenizer(text, add_special_tokens=special).input_ids)

    def prompt_tokens_of(eng: TransformersEngine, text: str) -> int:
        return len(eng.prompt_ids(text))  # what the model sees (long prompts are cut from the left)

    def run(eng: TransformersEngine, prompts: list[str], req: _Request, max_tokens: int,
            cancel: threading.Event) -> tuple[list[list[str]], int]:
        params = SamplingParams(
            max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=max(req.top_k, 0),
            n=req.n, stop=extra_stops(req.stop), seed=secrets.randbits(31) if req.seed is None else req.seed,
            repetition_penalty=req.repetition_penalty,
        )
        before = eng.generated_tokens
        outs = eng.generate(prompts, params, progress=False, cancel=cancel)
        return outs, eng.generated_tokens - before

    def finish(eng: TransformersEngine, text: str, max_tokens: int) -> str:
        return "length" if n_tokens(eng, text, False) >= max_tokens else "stop"

    @torch.inference_mode()
    def prompt_logprobs(eng: TransformersEngine, text: str) -> dict:
        enc = eng.tokenizer(text, return_offsets_mapping=True)
        ids = enc.input_ids
        if len(ids) > eng.max_prompt_tokens:
            raise ApiError(400, f"echo with logprobs: the prompt has {len(ids)} tokens, over this model's "
                           f"{eng.max_prompt_tokens}", param="prompt")
        logits = eng.model(input_ids=torch.tensor([ids], device=eng.model.device)).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, torch.tensor(ids[1:], device=logits.device)[:, None])
        return {
            "tokens": eng.tokenizer.convert_ids_to_tokens(ids),
            "token_logprobs": [None] + [round(v, 6) for v in logp[:, 0].tolist()],
            "top_logprobs": None,
            "text_offset": [start for start, _ in enc.offset_mapping],
        }

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "cai-bootstrap"} for name in list(engines)]}

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> dict | StreamingResponse:
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise ApiError(400, "prompt must not be empty", param="prompt")
        if req.max_tokens == 0 and not req.echo:
            raise ApiError(400, "max_tokens=0 needs echo=true", param="max_tokens")
        if req.max_tokens > 0 and req.logprobs is not None:
            raise ApiError(400, "logprobs are only supported with echo=true and max_tokens=0", param="logprobs")
        check_size(len(prompts), req, req.max_tokens)

        def work(cancel: threading.Event) -> dict:
            with holding_models(cancel):
                name, eng = resolve(req)
                prompt_tokens = sum(prompt_tokens_of(eng, p) for p in prompts)
                if req.max_tokens == 0:
                    choices = [
                        {"index": i, "text": p, "finish_reason": "length",
                         "logprobs": prompt_logprobs(eng, p) if req.logprobs is not None else None}
                        for i, p in enumerate(prompts)
                    ]
                    completion_tokens = 0
                else:
                    outs, completion_tokens = run(eng, prompts, req, req.max_tokens, cancel)
                    choices = [
                        {"index": i * req.n + j, "text": (prompts[i] if req.echo else "") + text, "logprobs": None,
                         "finish_reason": finish(eng, text, req.max_tokens)}
                        for i, texts in enumerate(outs)
                        for j, text in enumerate(texts)
                    ]
            return response_body("cmpl", "text_completion", name, choices, prompt_tokens, completion_tokens)

        response = await admitted(request, work)
        if req.stream:
            return StreamingResponse(completion_events(response, req.include_usage), media_type=MEDIA_TYPE)
        return response

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest, request: Request) -> dict | StreamingResponse:
        prompt = format_prompt(messages_to_instruction(req.messages))
        max_tokens = req.max_completion_tokens or req.max_tokens or min(256, limits.max_tokens)
        check_size(1, req, max_tokens)

        def work(cancel: threading.Event) -> dict:
            with holding_models(cancel):
                name, eng = resolve(req)
                (texts,), completion_tokens = run(eng, [prompt], req, max_tokens, cancel)
                prompt_tokens = prompt_tokens_of(eng, prompt)
                choices = [
                    {"index": j, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": finish(eng, text, max_tokens)}
                    for j, text in enumerate(texts)
                ]
            return response_body("chatcmpl", "chat.completion", name, choices, prompt_tokens, completion_tokens)

        response = await admitted(request, work)
        if req.stream:
            return StreamingResponse(chat_events(response, req.include_usage), media_type=MEDIA_TYPE)
        return response

    return app


def response_body(id_prefix: str, object_name: str, model: str, choices: list[dict], prompt_tokens: int,
                  completion_tokens: int) -> dict:
    """An OpenAI completion / chat completion response around ``choices``."""
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}", "object": object_name, "created": int(time.time()),
        "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 30.0
                    ) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL (``http://host:port``).

    ``port=0`` picks a free port. The server is shut down when the block exits.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="cai-serve")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"server on {host}:{port} did not start within {startup_timeout_s:g} s")
        time.sleep(0.02)
    bound_port = sock.getsockname()[1]
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_server(
    model_ref: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    dtype: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    api_key: str | None = None,
    model_name: str | None = None,
    any_model: bool = False,
    log_level: str = "info",
    limits: ServeLimits | None = None,
) -> None:
    """Load ``model_ref`` (registry name, stage ``runs/x:stage-3``, path, HF id) and serve it (blocks).

    The model id clients must send is ``model_name`` (default: ``model_ref``).
    ``batch_size`` is the engine's; keep it equal to the client run's
    ``engine.batch_size`` for results identical to the local transformers engine.
    ``any_model``: also load other model references on request (see `create_app`),
    so a whole run can use one server; it reads any model path the client names, so
    keep such a server on loopback. ``api_key`` None: the ``CAI_BOOTSTRAP_API_KEY`` variable's,
    if set (`read_api_key`). On SIGTERM, running generations are cancelled within a few seconds.
    """
    import uvicorn

    api_key = read_api_key(api_key)

    if host not in LOOPBACK:
        log.warning("serving on %s: reachable from other machines%s", host,
                    "" if api_key else " and WITHOUT authentication (set an API key)")
    def load(ref: str):  # as a run loads it: a constitutional stage's model keeps its refusal calibration
        return make_engine(ref, EngineSettings(dtype=dtype or "auto", batch_size=batch_size))

    engine = load(model_ref)
    loader = load if any_model else None
    app = create_app(engine, model_name or model_ref, api_key=api_key, loader=loader, limits=limits)
    log.info("serving %s at http://%s:%d/v1", model_name or model_ref, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3)

"""An OpenAI-compatible server for any registry or stage model: ``cai-bootstrap serve``.

Endpoints (the subset clients and the `openai` backend use):

* ``GET  /v1/models``: the served model(s): the default one (its id is the name given to
  `create_app`), plus any loaded on request when the server was given a ``loader``.
* ``POST /v1/completions``: ``prompt`` (string or list of strings), ``max_tokens`` (16),
  ``temperature`` (1.0; 0 = greedy), ``top_p``, ``n``, ``stop``, ``seed``, plus the
  vLLM-style extras ``top_k`` and ``repetition_penalty``. ``echo`` with ``max_tokens=0``
  and ``logprobs`` returns the prompt's token log-probabilities (used by
  `OpenAIEngine.choose`); other ``logprobs`` requests and ``stream`` are refused (400).
* ``POST /v1/chat/completions``: ``messages`` become one prompt in the project's format
  (see `messages_to_instruction`); the reply is in OpenAI chat shape.
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

The models are used by one request at a time (a lock); requests queue. The server binds
to 127.0.0.1 unless told otherwise and has no authentication unless ``api_key`` is set.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE, SamplingParams
from cai_bootstrap.engines.transformers_engine import TransformersEngine
from cai_bootstrap.models.loading import model_fingerprint
from cai_bootstrap.prompt_format import STOP_SEQUENCES, format_prompt

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def _error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class _Request(BaseModel):
    # OpenAI clients send fields we do not use (user, logit_bias, ...): accept and ignore.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1, description="vLLM extension; 0 or -1: off")
    repetition_penalty: float = Field(1.0, gt=0.0, description="vLLM extension")
    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False


class CompletionRequest(_Request):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def messages_to_instruction(messages: list[ChatMessage] | list[dict]) -> str:
    """Fold a chat into one instruction of the project's prompt format.

    The last user message is the instruction. System/developer messages come first
    as plain paragraphs. Earlier user/assistant turns are written before it under
    "Conversation so far:" as ``User: ...`` / ``Assistant: ...`` lines, then
    "Current request:" and the last user message; with no earlier turns the
    instruction is the system text (if any) and the user message alone. Messages
    after the last user message are not allowed (the model answers the user).
    """
    msgs = [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in messages]
    last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=None)
    if last_user is None:
        raise ApiError(400, "messages must contain a user message", param="messages")
    if last_user != len(msgs) - 1:
        raise ApiError(400, "the last message must be the user's (assistant prefill is not supported)",
                       param="messages")
    system = [m.text().strip() for m in msgs[:last_user] if m.role in ("system", "developer") and m.text().strip()]
    turns = [m for m in msgs[:last_user] if m.role in ("user", "assistant", "tool")]
    parts = list(system)
    current = msgs[last_user].text().strip()
    if turns:
        names = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
        history = "\n".join(f"{names[m.role]}: {m.text().strip()}" for m in turns)
        parts.append(f"Conversation so far:\n{history}")
        parts.append(f"Current request:\n{current}")
    else:
        parts.append(current)
    return "\n\n".join(parts)


def _stops(stop: str | list[str] | None) -> list[str]:
    items = [stop] if isinstance(stop, str) else list(stop or [])
    return [s for s in dict.fromkeys(items) if s and s not in STOP_SEQUENCES]


def create_app(
    engine: TransformersEngine,
    model_name: str,
    *,
    api_key: str | None = None,
    loader: Callable[[str], TransformersEngine] | None = None,
    max_loaded: int = 2,
) -> FastAPI:
    """The FastAPI app serving ``engine`` under the model id ``model_name``.

    With ``loader``, a request for another model id loads that model reference
    (``loader(model_id)``: a registry name, a run stage, a path) and keeps at most
    ``max_loaded`` such models besides the default one (least recently used goes).
    That lets one server answer for every model of a run (``engine.backend=openai``
    sends each role's model reference as its id). Without it other ids get 404.
    """
    app = FastAPI(title="cai-bootstrap", description=f"OpenAI-compatible server for {model_name}")
    lock = threading.Lock()  # one request uses the models at a time
    engines: OrderedDict[str, TransformersEngine] = OrderedDict([(model_name, engine)])
    fingerprints: dict[str, str | None] = {}  # of models loaded on request (see model_fingerprint)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return _error_response(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        msgs = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return _error_response(400, "; ".join(msgs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "error"
        return _error_response(exc.status_code, str(exc.detail), kind)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return _error_response(401, "invalid or missing API key", "authentication_error")
        return await call_next(request)

    def resolve(req: _Request) -> tuple[str, TransformersEngine]:
        """The engine for the request's model id (call with the lock held)."""
        if req.stream:
            raise ApiError(400, "stream=true is not supported by this server", param="stream")
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

    def run(eng: TransformersEngine, prompts: list[str], req: _Request, max_tokens: int) -> tuple[list[list[str]], int]:
        params = SamplingParams(
            max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=max(req.top_k, 0),
            n=req.n, stop=_stops(req.stop), seed=secrets.randbits(31) if req.seed is None else req.seed,
            repetition_penalty=req.repetition_penalty,
        )
        before = eng.generated_tokens
        outs = eng.generate(prompts, params, progress=False)
        return outs, eng.generated_tokens - before

    def finish(eng: TransformersEngine, text: str, max_tokens: int) -> str:
        return "length" if n_tokens(eng, text, False) >= max_tokens else "stop"

    @torch.inference_mode()
    def prompt_logprobs(eng: TransformersEngine, text: str) -> dict:
        enc = eng.tokenizer(text, return_offsets_mapping=True)
        ids = enc.input_ids
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

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict:
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise ApiError(400, "prompt must not be empty", param="prompt")
        if req.max_tokens == 0 and not req.echo:
            raise ApiError(400, "max_tokens=0 needs echo=true", param="max_tokens")
        if req.max_tokens > 0 and req.logprobs is not None:
            raise ApiError(400, "logprobs are only supported with echo=true and max_tokens=0", param="logprobs")
        with lock:
            name, eng = resolve(req)
            prompt_tokens = sum(n_tokens(eng, p, True) for p in prompts)
            if req.max_tokens == 0:
                choices = [
                    {"index": i, "text": p, "finish_reason": "length",
                     "logprobs": prompt_logprobs(eng, p) if req.logprobs is not None else None}
                    for i, p in enumerate(prompts)
                ]
                completion_tokens = 0
            else:
                outs, completion_tokens = run(eng, prompts, req, req.max_tokens)
                choices = [
                    {"index": i * req.n + j, "text": (prompts[i] if req.echo else "") + text, "logprobs": None,
                     "finish_reason": finish(eng, text, req.max_tokens)}
                    for i, texts in enumerate(outs)
                    for j, text in enumerate(texts)
                ]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest) -> dict:
        prompt = format_prompt(messages_to_instruction(req.messages))
        max_tokens = req.max_completion_tokens or req.max_tokens or 256
        with lock:
            name, eng = resolve(req)
            (texts,), completion_tokens = run(eng, [prompt], req, max_tokens)
            prompt_tokens = n_tokens(eng, prompt, True)
            choices = [
                {"index": j, "message": {"role": "assistant", "content": text}, "logprobs": None,
                 "finish_reason": finish(eng, text, max_tokens)}
                for j, text in enumerate(texts)
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    return app


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
) -> None:
    """Load ``model_ref`` (registry name, stage ``runs/x:stage-3``, path, HF id) and serve it (blocks).

    The model id clients must send is ``model_name`` (default: ``model_ref``).
    ``batch_size`` is the engine's; keep it equal to the client run's
    ``engine.batch_size`` for results identical to the local transformers engine.
    ``any_model``: also load other model references on request (see `create_app`),
    so a whole run can use one server; it reads any model path the client names, so
    keep such a server on loopback.
    """
    import uvicorn

    if host not in LOOPBACK:
        log.warning("serving on %s: reachable from other machines%s", host,
                    "" if api_key else " and WITHOUT authentication (set an API key)")
    engine = TransformersEngine.from_ref(model_ref, dtype=dtype, batch_size=batch_size)
    loader = (lambda ref: TransformersEngine.from_ref(ref, dtype=dtype, batch_size=batch_size)) if any_model else None
    app = create_app(engine, model_name or model_ref, api_key=api_key, loader=loader)
    log.info("serving %s at http://%s:%d/v1", model_name or model_ref, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

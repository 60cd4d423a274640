"""What one request may ask of the server, the request-body limit, and where the API key comes from."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from cai_bootstrap.errors import ConfigError
from cai_bootstrap.serve.schema import error_response

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Environment variable read for the server's API key (a command line is visible in ``ps``).
API_KEY_ENV = "CAI_BOOTSTRAP_API_KEY"


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server (beyond them: 400, 413 or 503, never a stall)."""

    max_tokens: int = 2048
    #: prompts x n of one request
    max_sequences: int = 256
    max_body_bytes: int = 2_000_000
    #: requests waiting behind the running one; the next gets 503
    max_queue: int = 16


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI passes HTTPException from the body reader through
                raise HTTPException(413, _too_large_text(self.limit))
            return message

        await self.app(scope, limited, send)


class ApiKeyAuth:
    """ASGI middleware: every path but ``/health`` (``/docs`` and ``/openapi.json`` included) needs
    ``Authorization: Bearer <api_key>``, compared in constant time (`hmac.compare_digest`).
    Plain ASGI, not ``@app.middleware``: Starlette's `BaseHTTPMiddleware` hides a client's
    disconnect from the route, which the server needs to cancel a generation."""

    def __init__(self, app, api_key: str):
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") != "/health":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await error_response(401, "invalid or missing API key", "authentication_error")(
                    scope, receive, send)
        return await self.app(scope, receive, send)


def _too_large_text(limit: int) -> str:
    return f"request body over this server's limit of {limit} bytes"


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, _too_large_text(limit))


def read_api_key(api_key: str | None = None, api_key_file: str | Path | None = None) -> str | None:
    """The server's key: ``api_key`` if given, else the first line of ``api_key_file``, else the
    ``CAI_BOOTSTRAP_API_KEY`` environment variable, else None (no authentication)."""
    if api_key:
        return api_key
    if api_key_file is not None:
        try:
            key = Path(api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--api-key-file {api_key_file}: cannot read it ({exc})") from None
        if not key:
            raise ConfigError(f"--api-key-file {api_key_file}: the file is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None

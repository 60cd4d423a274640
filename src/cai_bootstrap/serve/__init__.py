"""The OpenAI-compatible server (``cai-bootstrap serve``): `app` builds and runs it, `schema` holds
the request shapes, `limits` what one request may ask and where the API key comes from."""

from cai_bootstrap.serve.app import create_app, run_server, serve_in_thread
from cai_bootstrap.serve.limits import API_KEY_ENV, LOOPBACK, ServeLimits, read_api_key
from cai_bootstrap.serve.schema import ApiError, ChatMessage, ChatRequest, CompletionRequest, messages_to_instruction

__all__ = [
    "API_KEY_ENV", "LOOPBACK", "ApiError", "ChatMessage", "ChatRequest", "CompletionRequest", "ServeLimits",
    "create_app", "messages_to_instruction", "read_api_key", "run_server", "serve_in_thread",
]

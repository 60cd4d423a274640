"""The server's request and error shapes (OpenAI's), and chat messages folded into one prompt."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.prompt_format import STOP_SEQUENCES


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


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
    stream_options: StreamOptions | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Request):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0, le=2**31)
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
    max_tokens: int | None = Field(None, ge=1, le=2**31)
    max_completion_tokens: int | None = Field(None, ge=1, le=2**31)


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


def extra_stops(stop: str | list[str] | None) -> list[str]:
    items = [stop] if isinstance(stop, str) else list(stop or [])
    return [s for s in dict.fromkeys(items) if s and s not in STOP_SEQUENCES]

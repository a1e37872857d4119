"""The OpenAI wire format of `reasonscale serve`: request bodies, the limits a request must respect, and responses.

Fields the server does not implement (`logprobs`, `echo`, `best_of`, penalties, tools...) are refused with 400 when
set to anything but their neutral value, rather than silently ignored; other unknown fields (`user`, `metadata`...)
are ignored, as OpenAI clients send them freely.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonscale.types import Completion, SamplingParams

_SEED_SPACE = 1 << 63

# Fields this server does not implement, and the values that leave them unused; any other value is refused.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "tools": (None, []),
    "functions": (None, []),
    "response_format": (None, {"type": "text"}),
}


def _neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    """Whether `value` is one of the neutral values (a number is not a boolean: logprobs=0 asks for logprobs)."""
    return any(value == n and isinstance(value, bool) == isinstance(n, bool) for n in neutral)


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for. Beyond them it gets 400 (413 for the body) before any generation.

    `max_model_len` bounds prompt + completion tokens (None: the model's context, `max_position_embeddings`);
    `max_choices` bounds prompts x n; `slice_rows` is how many rows of one request run per round of the fair
    batcher (None: the engine's `max_batch_size`).
    """

    max_model_len: int | None = None
    max_body_bytes: int = 1 << 20
    max_choices: int = 1024
    slice_rows: int | None = None


class SamplingFields(BaseModel):
    """Sampling fields shared by both generation endpoints."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    n: int = Field(1, ge=1, le=256)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> SamplingFields:
        for key, value in (self.model_extra or {}).items():
            if key in UNSUPPORTED and not _neutral(value, UNSUPPORTED[key]):
                raise ValueError(f"'{key}' is not supported by reasonscale serve; leave it unset")
        return self

    def sampling(self, max_tokens: int) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=max_tokens, stop=tuple(s for s in stops if s)
        )

    def choice_seeds(self) -> list[int]:
        """Noise stream of each choice of one prompt: seed + j (a fresh random base when no seed is given)."""
        base = secrets.randbelow(_SEED_SPACE) if self.seed is None else self.seed
        return [(base + j) % _SEED_SPACE for j in range(self.n)]


class CompletionRequest(SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    max_tokens: int | None = Field(16, ge=1)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: str
    content: str | list[TextPart]

    def text(self) -> dict[str, str]:
        """The message with its content as one string; text parts are joined by newlines, as vLLM does."""
        content = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)
        return {"role": self.role, "content": content}


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def context_error(limit: int, prompt_tokens: int, max_tokens: int | None) -> str | None:
    """Why a prompt of `prompt_tokens` tokens and a completion of `max_tokens` (None: the rest) cannot run, or None."""
    asked = prompt_tokens + (max_tokens or 1)
    if asked <= limit:
        return None
    return (
        f"This model's maximum context length is {limit} tokens. However, you requested {asked} tokens "
        f"({prompt_tokens} in the prompt, {max_tokens or 1} in the completion). "
        "Please reduce the length of the prompt or max_tokens."
    )


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response(kind: str, id_prefix: str, model: str, choices: list[dict], usage_: dict[str, int]) -> dict[str, Any]:
    """The envelope every OpenAI response shares."""
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_,
    }


def completions_body(model: str, made: list[Completion], n: int) -> dict[str, Any]:
    """A /v1/completions response; prompt tokens count once per prompt, as OpenAI does."""
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "stop_reason": c.stop, "logprobs": None}
        for i, c in enumerate(made)
    ]
    tokens = usage(sum(c.prompt_tokens for c in made[::n]), sum(c.completion_tokens for c in made))
    return response("text_completion", "cmpl", model, choices, tokens)


def chat_body(model: str, made: list[Completion]) -> dict[str, Any]:
    """A /v1/chat/completions response for the choices of one chat."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
            "stop_reason": c.stop,
            "logprobs": None,
        }
        for i, c in enumerate(made)
    ]
    tokens = usage(made[0].prompt_tokens, sum(c.completion_tokens for c in made))
    return response("chat.completion", "chatcmpl", model, choices, tokens)

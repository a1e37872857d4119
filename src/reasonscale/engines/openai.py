"""Client engine for any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, `reasonscale serve`).

Every sample is its own request (n=1, seed = `sample_seed(seed, prompt, index)`), so each one is reproducible and
cacheable alone. Requests run concurrently on a private event loop, at most `concurrency` at a time; transient
failures (429, 5xx, timeouts, refused or reset connections) are retried with exponential backoff, and a request that
keeps failing raises `ServerError` once its retries are spent. The API key is read from an environment variable and
lives only in the request headers.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from reasonscale.config import ModelConfig
from reasonscale.engines.base import Engine, SampleRequest, cut_at_stop, sample_seed
from reasonscale.types import Completion, SamplingParams

# Keys under which servers report the stop string that ended a choice: vLLM and reasonscale, SGLang, llama.cpp.
STOP_FIELDS = ("stop_reason", "matched_stop", "stopping_word")


class ServerError(RuntimeError):
    """The server cannot be used: unreachable, rejects the key, model or request, or keeps failing."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: try `max_retries` more times, waiting base * 2**attempt (capped) between."""

    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (from 0); a server's Retry-After wins when it is given."""
        if retry_after:
            try:
                return min(self.max_delay, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        return min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)


def is_retryable(status: int) -> bool:
    """Statuses worth retrying: rate limits, timeouts and server-side failures."""
    return status in (408, 409, 425, 429) or status >= 500


def error_message(response: httpx.Response) -> str:
    """The server's own error text (OpenAI `error.message`, FastAPI `detail`), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])
    return str(body)[:300]


def to_completion(data: dict[str, Any], api: str, stops: Sequence[str]) -> Completion:
    """One Completion from a response with one choice; the text is cut at a stop string if the server left it in."""
    choice = data["choices"][0]
    text = (choice.get("message") or {}).get("content") if api == "chat" else choice.get("text")
    text, stop = cut_at_stop(text or "", stops)
    if stop is None:
        reported = [choice.get(key) for key in STOP_FIELDS]
        stop = next((s for s in reported if isinstance(s, str) and s in stops), None)
    usage = data.get("usage") or {}
    return Completion(
        text=text,
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        stop=stop,
    )


class OpenAIEngine(Engine):
    """Samples from a model behind an OpenAI-compatible HTTP API.

    `base_url` is the API root (usually ending in /v1); `model` is the name the server serves. Construction checks
    the server once (GET /models), so a wrong URL, key or model name fails at once with a message naming it.
    Whether the server caches prompt prefixes is unknown from here, so FLOP counts charge every prompt token
    (`caches_prefixes` False: an upper bound).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        api: Literal["completions", "chat"] = "completions",
        concurrency: int = 16,
        request_timeout: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        tokenizer_path: str | None = None,
        revision: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.endpoint = f"{self.base_url}/{'chat/completions' if api == 'chat' else 'completions'}"
        self.retry = retry
        self.tokenizer_path = tokenizer_path
        self._tokenizer = None
        self._headers = {"Authorization": f"Bearer {read_api_key(api_key_env)}"} if api_key_env else {}
        self._api_key_env = api_key_env
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-engine", daemon=True)
        self._thread.start()
        self._client, self._slots = self._run(self._open(concurrency, request_timeout))
        try:
            card = self._run(self._model_card())
        except ServerError:
            self.close()
            raise
        self.model = card["id"]  # the served name, also when `model` matched the card's root (its path)
        # A server's weights cannot be read from here: its identity is the served name plus the version string the
        # user gives (model.revision); keeping that string true when the served model changes is the user's part.
        self.model_id = f"openai-{api}:{self.model}" + (f"@{revision}" if revision else "")
        self.num_parameters = int(card.get("num_parameters") or 0)
        self.preferred_batch = 4 * concurrency  # keeps every connection busy between commits

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> OpenAIEngine:
        if not cfg.base_url:
            raise ServerError("engine 'openai' needs model.base_url, e.g. http://127.0.0.1:8000/v1")
        return cls(
            cfg.base_url,
            cfg.served_model_name or cfg.path,
            api_key_env=cfg.api_key_env,
            api=cfg.api,
            concurrency=cfg.concurrency,
            request_timeout=cfg.request_timeout,
            retry=RetryPolicy(max_retries=cfg.max_retries),
            tokenizer_path=cfg.path,
            revision=cfg.revision,
        )

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        return self._run(self._complete_all(requests, params))

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat prompt, rendered locally with the model's tokenizer (for the completions API)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path or self.model)
            except (OSError, ValueError) as error:
                raise ServerError(
                    f"rendering a chat for '{self.model}' needs its tokenizer: set model.path to the model's local "
                    f"directory or Hugging Face id, or use model.api: chat ({error})"
                ) from None
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the engine's loop and wait for it (works even when the caller has its own loop)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _open(self, concurrency: int, timeout: float) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), limits=limits)
        return client, asyncio.Semaphore(concurrency)

    async def _model_card(self) -> dict[str, Any]:
        """Check URL, key and model once, without retries; return the entry whose id or root (path) is the model."""
        url = f"{self.base_url}/models"
        try:
            response = await self._client.get(url, headers=self._headers)
        except httpx.TransportError as error:
            raise ServerError(
                f"cannot reach an OpenAI-compatible server at {self.base_url} ({type(error).__name__}: {error}); "
                "is it running, and is model.base_url right?"
            ) from None
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code)
        if response.status_code == 404:
            raise ServerError(f"{url} not found: model.base_url should be the API root, usually ending in /v1")
        if response.status_code != 200:
            raise ServerError(f"{url} answered HTTP {response.status_code}: {error_message(response)}")
        cards = response.json().get("data", [])
        for card in cards:
            if self.model in (card.get("id"), card.get("root")):
                return card
        raise ServerError(
            f"{self.base_url} does not serve model '{self.model}'; it serves {sorted(str(c.get('id')) for c in cards)}."
            " Set model.served_model_name to one of them."
        )

    def _auth_error(self, status: int) -> ServerError:
        if self._api_key_env:
            return ServerError(f"{self.base_url} rejected the key in ${self._api_key_env} (HTTP {status})")
        return ServerError(f"{self.base_url} wants an API key (HTTP {status}): set model.api_key_env")

    async def _complete_all(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        tasks = [asyncio.ensure_future(self._complete_one(r, params)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def _complete_one(self, request: SampleRequest, params: SamplingParams) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            "seed": sample_seed(params.seed, request.prompt, request.index),
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        async with self._slots:
            data = await self._post(self.endpoint, body)
        return to_completion(data, self.api, params.stop)

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on transient failures; other failures raise at once."""
        failure = ""
        for attempt in range(self.retry.max_retries + 1):
            retry_after = None
            try:
                response = await self._client.post(url, json=body, headers=self._headers)
            except httpx.TransportError as error:  # timeouts, refused and reset connections
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code in (401, 403):
                    raise self._auth_error(response.status_code)
                if not is_retryable(response.status_code):
                    raise ServerError(f"{url} answered HTTP {response.status_code}: {error_message(response)}")
                failure = f"HTTP {response.status_code}: {error_message(response)}"
                retry_after = response.headers.get("retry-after")
            if attempt < self.retry.max_retries:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        raise ServerError(
            f"{url} failed {self.retry.max_retries + 1} times (last: {failure}); with a store, finished samples "
            "are kept and a re-run resumes from them"
        )


def read_api_key(variable: str) -> str:
    """The API key from environment variable `variable`; an unset or empty variable is an error naming it."""
    key = os.environ.get(variable, "")
    if not key:
        raise ServerError(f"model.api_key_env names ${variable}, but that environment variable is not set")
    return key

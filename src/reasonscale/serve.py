"""`reasonscale serve`: an OpenAI-compatible HTTP server over the in-process hf engine.

Endpoints: GET /v1/models, GET /v1/models/{id}, POST /v1/completions and POST /v1/chat/completions. Requests honour
`temperature` (0..2), `top_p`, `max_tokens`, `stop`, `n` and `seed`; choice j of a request with seed s is sampled
from the hf engine's noise stream s + j, so a client that sends one request per sample with seed
`sample_seed(seed, prompt, index)` gets exactly the samples of the in-process engine. Each choice reports
`stop_reason` (the stop string that ended it, as vLLM does) and the response reports token usage.

Limits (`ServeLimits`): prompt + max_tokens must fit `max_model_len` (default: the model's context), else 400 with
OpenAI's context-length message; without max_tokens a chat gets the rest of the context, as vLLM does. A body over
`max_body_bytes` gets 413. Concurrent requests are batched fairly (see `reasonscale.batcher`): a large request runs a
slice per round, so the requests behind it are served between its slices. Client errors are 4xx, never 5xx.

It binds to 127.0.0.1 unless `allow_remote` is set, and an optional bearer token guards every endpoint (compared as
bytes in constant time). For tests, `REASONSCALE_SERVE_FAULT_RATE` (0..1) makes that fraction of generation requests
fail with 429/500/503.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jinja2 import TemplateError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from reasonscale.batcher import Batcher, GenerationError
from reasonscale.engines.hf import HFEngine
from reasonscale.serve_api import (
    ChatRequest,
    CompletionRequest,
    SamplingFields,
    ServeLimits,
    chat_body,
    completions_body,
    context_error,
    error_response,
)
from reasonscale.types import Completion

FAULT_RATE_ENV = "REASONSCALE_SERVE_FAULT_RATE"
log = logging.getLogger(__name__)


class ServeError(ValueError):
    """A server setting that is refused (e.g. a public address without --allow-remote)."""


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before the app sees any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error_response(413, f"request body over {self.max_bytes} bytes (--max-body-bytes)")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def model_context(engine: HFEngine, max_model_len: int | None) -> int:
    """The tokens (prompt + completion) a request may use: `max_model_len`, at most the model's context."""
    if engine.context_length is None and max_model_len is None:
        raise ServeError("cannot tell this model's context length from its config: pass --max-model-len")
    if engine.context_length is not None and max_model_len is not None and max_model_len > engine.context_length:
        raise ServeError(f"--max-model-len {max_model_len} exceeds the model's context ({engine.context_length})")
    return max_model_len or engine.context_length  # type: ignore[return-value]


def create_app(
    engine: HFEngine,
    model_name: str | None = None,
    token: str | None = None,
    fault_rate: float | None = None,
    root: str | None = None,
    limits: ServeLimits = ServeLimits(),
) -> FastAPI:
    """The FastAPI app serving `engine` under `model_name` (default: its model_id); `token` guards every route.

    `root` (the model's path, as vLLM reports it) is accepted as a second name for the model.
    """
    name = model_name or engine.model_id
    names = {name, root or name}
    context = model_context(engine, limits.max_model_len)
    batcher = Batcher(engine, limits.slice_rows or engine.max_batch_size)
    engine.token_ids([""])  # settles the tokenizer's padding state, so that concurrent calls only read it
    faults = float(os.environ.get(FAULT_RATE_ENV, "0")) if fault_rate is None else fault_rate
    chaos = random.Random()
    expected = f"Bearer {token}".encode() if token else b""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="reasonscale", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        given = request.headers.get("authorization", "").encode("latin-1")  # the header's own bytes
        if token and not secrets.compare_digest(given, expected):
            return error_response(401, "missing or wrong bearer token", "authentication_error")
        if faults and request.method == "POST" and chaos.random() < faults:
            status = chaos.choice([429, 500, 503])
            return error_response(status, f"injected fault ({FAULT_RATE_ENV}={faults})", "server_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        return error_response(400, problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    def refusal(body: SamplingFields, rows: int) -> JSONResponse | None:
        if body.model and body.model not in names:
            return error_response(404, f"model '{body.model}' is not served here; this server serves '{name}'")
        if body.stream:
            return error_response(400, "streaming is not supported by reasonscale serve")
        if rows > limits.max_choices:
            return error_response(400, f"{rows} choices (prompts x n) asked; at most {limits.max_choices} per request")
        return None

    async def generate(
        body: SamplingFields, prompts: list[str], max_tokens: int | None
    ) -> list[Completion] | JSONResponse:
        """The n choices of each prompt, choice k * n + j from noise stream j; 400 if one does not fit the context.

        Prompts are tokenized in a thread, so that a long one does not hold up the requests behind it.
        """
        longest = max(map(len, await asyncio.to_thread(engine.token_ids, prompts)))
        if (problem := context_error(context, longest, max_tokens)) is not None:
            return error_response(400, problem)
        params = body.sampling(max_tokens or context - longest)  # no max_tokens: the rest, as vLLM does
        seeds = [s for _ in prompts for s in body.choice_seeds()]
        try:
            return await batcher.submit([p for p in prompts for _ in range(body.n)], seeds, params)
        except GenerationError as error:
            return error_response(500, f"generation failed: {error}", "server_error")

    def card() -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "owned_by": "reasonscale",
            "root": root or name,
            "max_model_len": context,
            "num_parameters": engine.num_parameters,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id not in names:
            return error_response(404, f"model '{model_id}' is not served here; this server serves '{name}'")
        return card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        prompts = body.prompts()
        if (refused := refusal(body, len(prompts) * body.n)) is not None:
            return refused
        made = await generate(body, prompts, body.max_tokens)
        return made if isinstance(made, JSONResponse) else completions_body(name, made, body.n)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if (refused := refusal(body, body.n)) is not None:
            return refused
        try:
            prompt = engine.render_chat([m.text() for m in body.messages])
        except (ValueError, TemplateError) as error:  # no chat template, or one that refuses these messages
            return error_response(400, f"cannot render this chat: {error}; use /v1/completions")
        made = await generate(body, [prompt], body.max_completion_tokens or body.max_tokens)
        return made if isinstance(made, JSONResponse) else chat_body(name, made)

    return app


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless `allow_remote` says so explicitly."""
    if host == "localhost" or allow_remote:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServeError(
            f"refusing to listen on {host}: other machines could reach the model there. "
            "Pass --allow-remote to do it anyway, and guard it with --token-env."
        )


def serve(
    model_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_remote: bool = False,
    model_name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_batch_size: int = 64,
    log_level: str = "info",
    max_model_len: int | None = None,
    max_body_bytes: int = ServeLimits.max_body_bytes,
) -> None:
    """Load the model at `model_path` with the hf engine and serve it until interrupted (blocking).

    Clients name the model `model_name` (default: its fingerprinted id, e.g. `model@1a2b...`) or `model_path`.
    """
    check_host(host, allow_remote)
    if allow_remote and not token:
        log.warning("serving on %s without a token: anyone who can reach this port can use the model", host)
    engine = HFEngine(model_path, device=device, dtype=dtype, max_batch_size=max_batch_size)
    limits = ServeLimits(max_model_len=max_model_len, max_body_bytes=max_body_bytes)
    app = create_app(engine, model_name, token, root=model_path, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """Serves an app from a daemon thread, for notebooks and tests: `with BackgroundServer(app) as server: server.url`.

    Port 0 picks a free port. Entering waits until the socket listens; leaving shuts the server down.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False):
        check_host(host, allow_remote)
        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="reasonscale-serve", daemon=True)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The API root to give a client, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> Self:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the server on {self.host} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""`reasonscale serve`: an OpenAI-compatible HTTP server over the in-process hf engine.

Endpoints: GET /v1/models, POST /v1/completions and POST /v1/chat/completions. Requests honour `temperature`,
`top_p`, `max_tokens`, `stop`, `n` and `seed`; choice j of a request with seed s is sampled from the hf engine's noise
stream s + j, so a client that sends one request per sample with seed `sample_seed(seed, prompt, index)` gets exactly
the samples of the in-process engine. Each choice reports `stop_reason` (the stop string that ended it, as vLLM
does) and the response reports token usage. Concurrent requests with the same sampling settings run as one batch.

It binds to 127.0.0.1 unless `allow_remote` is set, and an optional bearer token guards every endpoint. For tests,
`REASONSCALE_SERVE_FAULT_RATE` (0..1) makes that fraction of generation requests fail with 429/500/503.
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
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reasonscale.engines.hf import HFEngine
from reasonscale.types import Completion, SamplingParams

FAULT_RATE_ENV = "REASONSCALE_SERVE_FAULT_RATE"
_SEED_SPACE = 1 << 63
log = logging.getLogger(__name__)


class SamplingFields(BaseModel):
    """Sampling fields shared by both generation endpoints; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    n: int = Field(1, ge=1, le=256)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

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
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1)


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class ServeError(ValueError):
    """A server setting that is refused (e.g. a public address without --allow-remote)."""


class GenerationError(RuntimeError):
    """Generation failed for a batch; every request in it gets this error."""


@dataclass
class Job:
    """Prompts waiting for one batch, and the future their completions go to."""

    prompts: list[str]
    seeds: list[int]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Runs generation jobs on the engine one batch at a time, merging the queued jobs that share sampling settings.

    Clients that keep requests in flight answer each finished batch with as many new requests, so a batch waits
    (at most `max_wait` seconds) for that burst on top of the jobs that queued up while the last batch ran, and
    then for as long as further jobs keep arriving less than `gap` seconds apart.
    """

    def __init__(self, engine: HFEngine, max_wait: float = 0.05, gap: float = 0.002):
        self.engine = engine
        self.max_wait = max_wait
        self.gap = gap
        self.last_size = 1
        self.queue: asyncio.Queue[Job] = asyncio.Queue()

    async def submit(self, prompts: list[str], seeds: list[int], params: SamplingParams) -> list[Completion]:
        job = Job(prompts, seeds, params, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        """Forever: collect a batch of jobs, group them by sampling settings, generate each group in a thread."""
        while True:
            groups: dict[SamplingParams, list[Job]] = {}
            for job in await self._collect():
                groups.setdefault(job.params, []).append(job)
            for params, group in groups.items():
                await self._run_group(params, group)

    async def _collect(self) -> list[Job]:
        """The next batch: the queued jobs plus the burst the last batch's answers bring, or what came in time."""
        target = self.queue.qsize() + self.last_size
        jobs = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while (remaining := deadline - loop.time()) > 0:
            while not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            wait = min(remaining, self.gap) if len(jobs) >= target else remaining
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), wait))
            except TimeoutError:
                break
        self.last_size = len(jobs)
        return jobs

    async def _run_group(self, params: SamplingParams, group: list[Job]) -> None:
        prompts = [p for job in group for p in job.prompts]
        seeds = [s for job in group for s in job.seeds]
        try:
            made = await asyncio.to_thread(self.engine.complete_seeded, prompts, seeds, params)
        except Exception as error:  # noqa: BLE001 - whatever failed, it fails these requests, not the server
            failure = GenerationError(f"{type(error).__name__}: {error}")
            for job in group:
                if not job.future.done():
                    job.future.set_exception(failure)
            return
        start = 0
        for job in group:
            if not job.future.done():  # the client may have gone away
                job.future.set_result(made[start : start + len(job.prompts)])
            start += len(job.prompts)


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


def create_app(
    engine: HFEngine,
    model_name: str | None = None,
    token: str | None = None,
    fault_rate: float | None = None,
    root: str | None = None,
) -> FastAPI:
    """The FastAPI app serving `engine` under `model_name` (default: its model_id); `token` guards every route.

    `root` (the model's path, as vLLM reports it) is accepted as a second name for the model.
    """
    name = model_name or engine.model_id
    names = {name, root or name}
    batcher = Batcher(engine)
    faults = float(os.environ.get(FAULT_RATE_ENV, "0")) if fault_rate is None else fault_rate
    chaos = random.Random()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="reasonscale", lifespan=lifespan)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token and not secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            return error_response(401, "missing or wrong bearer token", "authentication_error")
        if faults and request.method == "POST" and chaos.random() < faults:
            status = chaos.choice([429, 500, 503])
            return error_response(status, f"injected fault ({FAULT_RATE_ENV}={faults})", "server_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        return error_response(400, problems)

    def refusal(body: SamplingFields) -> JSONResponse | None:
        if body.model and body.model not in names:
            return error_response(404, f"model '{body.model}' is not served here; this server serves '{name}'")
        if body.stream:
            return error_response(400, "streaming is not supported by reasonscale serve")
        return None

    async def generate(prompts: list[str], seeds: list[int], params: SamplingParams) -> list[Completion] | JSONResponse:
        try:
            return await batcher.submit(prompts, seeds, params)
        except GenerationError as error:
            return error_response(500, f"generation failed: {error}", "server_error")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": name, "object": "model", "owned_by": "reasonscale", "root": root or name}
        return {"object": "list", "data": [{**card, "num_parameters": engine.num_parameters}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        if (refused := refusal(body)) is not None:
            return refused
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        seeds = [s for _ in prompts for s in body.choice_seeds()]  # choice k * n + j: prompt k, noise stream j
        made = await generate([p for p in prompts for _ in range(body.n)], seeds, body.sampling(body.max_tokens))
        if isinstance(made, JSONResponse):
            return made
        return completions_body(name, made, body.n)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if (refused := refusal(body)) is not None:
            return refused
        try:
            prompt = engine.render_chat([m.model_dump() for m in body.messages])
        except ValueError as error:  # no chat template
            return error_response(400, f"cannot render this chat: {error}; use /v1/completions")
        max_tokens = body.max_completion_tokens or body.max_tokens or 512
        made = await generate([prompt] * body.n, body.choice_seeds(), body.sampling(max_tokens))
        if isinstance(made, JSONResponse):
            return made
        return chat_body(name, made)

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
) -> None:
    """Load the model at `model_path` with the hf engine and serve it until interrupted (blocking).

    Clients name the model `model_name` (default: its fingerprinted id, e.g. `model@1a2b...`) or `model_path`.
    """
    check_host(host, allow_remote)
    if allow_remote and not token:
        log.warning("serving on %s without a token: anyone who can reach this port can use the model", host)
    engine = HFEngine(model_path, device=device, dtype=dtype, max_batch_size=max_batch_size)
    uvicorn.run(create_app(engine, model_name, token, root=model_path), host=host, port=port, log_level=log_level)


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

"""The OpenAI-compatible client engine against `reasonscale serve` on loopback: equality with the in-process engine,
clear errors, retries through injected faults, and a server killed mid-run."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import astuple, replace
from pathlib import Path

import httpx
import pytest

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.openai import OpenAIEngine, RetryPolicy, ServerError
from reasonscale.serve import BackgroundServer, create_app
from reasonscale.store import Store
from reasonscale.types import Completion, SamplingParams

PROMPTS = [f"Problem {k}: {k}+{2 * k}=" for k in range(6)]
SAMPLED = SamplingParams(n=4, temperature=0.8, max_tokens=12, seed=3, stop=("\n", "9"))
FAST_RETRY = RetryPolicy(max_retries=10, base_delay=0.01, max_delay=0.05)


def plain(rows: list[list[Completion]]) -> list[list[tuple]]:
    """Completions without the `cached` flag, for comparing fresh and stored results."""
    return [[astuple(replace(c, cached=False)) for c in row] for row in rows]


class CountingEngine(Engine):
    def __init__(self, inner: Engine):
        self.inner, self.model_id, self.seen = inner, inner.model_id, []

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        self.seen.extend(requests)
        return self.inner.complete(requests, params)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`reasonscale.serve.serve` in a child process that can be killed (SIGKILL) and started again on its port."""

    CODE = (
        "import sys; from reasonscale.serve import serve; "
        "serve(sys.argv[1], port=int(sys.argv[2]), model_name='tiny', device='cpu', log_level='warning')"
    )

    def __init__(self, model_dir: Path, log: Path):
        self.model_dir, self.log, self.port = model_dir, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> ServerProcess:
        with self.log.open("a") as log:
            args = [sys.executable, "-c", self.CODE, str(self.model_dir), str(self.port)]
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_greedy_and_sampled_outputs_equal_the_in_process_engine(server, engine):
    client = OpenAIEngine(server.url, "tiny", concurrency=4)
    greedy = SamplingParams(n=2, max_tokens=12, stop=("\n", "9"))
    assert client.generate(PROMPTS, greedy) == engine.generate(PROMPTS, greedy)
    assert client.generate(PROMPTS, SAMPLED) == engine.generate(PROMPTS, SAMPLED)  # stops and token counts too
    assert client.num_parameters == engine.num_parameters
    client.close()


def test_chat_api_sends_the_prompt_as_a_user_turn(server, engine):
    client = OpenAIEngine(server.url, "tiny", api="chat")
    made = client.generate(["hi"], SamplingParams(max_tokens=8))
    assert made == engine.generate(
        [engine.render_chat([{"role": "user", "content": "hi"}])], SamplingParams(max_tokens=8)
    )
    assert client.model_id == "openai-chat:tiny"
    client.close()


def test_build_engine_reads_the_config_and_renders_chats_locally(server, tiny_model_dir):
    cfg = ModelConfig(path=str(tiny_model_dir), engine="openai", base_url=server.url, served_model_name="tiny")
    client = build_engine(cfg)
    assert isinstance(client, OpenAIEngine) and client.model_id == "openai-completions:tiny"
    assert client.render_chat([{"role": "user", "content": "hi"}]) == "user: hi\nassistant:"
    client.close()
    with pytest.raises(ServerError, match="needs model.base_url"):
        build_engine(ModelConfig(path="x", engine="openai"))


def test_a_client_may_name_the_model_by_its_path(engine, tiny_model_dir):
    with BackgroundServer(create_app(engine, root=str(tiny_model_dir))) as running:
        client = build_engine(ModelConfig(path=str(tiny_model_dir), engine="openai", base_url=running.url))
        assert client.model == engine.model_id and client.model_id == f"openai-completions:{engine.model_id}"
        assert client.generate(["x"], SamplingParams(max_tokens=6)) == engine.generate(
            ["x"], SamplingParams(max_tokens=6)
        )
        client.close()


def test_an_unreachable_server_fails_at_once_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with pytest.raises(ServerError, match=f"cannot reach an OpenAI-compatible server at {url}"):
        OpenAIEngine(url, "tiny")
    assert time.monotonic() - start < 5


def test_a_wrong_url_path_or_model_name_is_named(server):
    with pytest.raises(ServerError, match="should be the API root"):
        OpenAIEngine(server.url.removesuffix("/v1"), "tiny")
    with pytest.raises(ServerError, match=r"does not serve model 'gpt-9'; it serves \['tiny'\]"):
        OpenAIEngine(server.url, "gpt-9")


def test_the_api_key_comes_from_the_environment_and_is_never_shown(engine, monkeypatch):
    with BackgroundServer(create_app(engine, "tiny", token="right-key")) as running:
        with pytest.raises(ServerError, match="wants an API key .* set model.api_key_env"):
            OpenAIEngine(running.url, "tiny")
        with pytest.raises(ServerError, match=r"RS_TEST_KEY.*not set"):
            OpenAIEngine(running.url, "tiny", api_key_env="RS_TEST_KEY")
        monkeypatch.setenv("RS_TEST_KEY", "wrong-key-123")
        with pytest.raises(ServerError, match=r"rejected the key in \$RS_TEST_KEY") as error:
            OpenAIEngine(running.url, "tiny", api_key_env="RS_TEST_KEY")
        assert "wrong-key-123" not in str(error.value)
        monkeypatch.setenv("RS_TEST_KEY", "right-key")
        client = OpenAIEngine(running.url, "tiny", api_key_env="RS_TEST_KEY")
        assert client.generate(["x"], SamplingParams(max_tokens=4))[0][0].completion_tokens > 0
        client.close()


def test_a_rejected_request_fails_without_retrying(server):
    client = OpenAIEngine(server.url, "tiny", retry=RetryPolicy(max_retries=5, base_delay=10))
    start = time.monotonic()
    with pytest.raises(ServerError, match="HTTP 400"):
        client.generate(["x"], SamplingParams(max_tokens=0))
    assert time.monotonic() - start < 5
    client.close()


def test_a_server_failing_a_fifth_of_requests_gives_identical_results(engine):
    with BackgroundServer(create_app(engine, "tiny", fault_rate=0.2)) as flaky:
        client = OpenAIEngine(flaky.url, "tiny", concurrency=4, retry=FAST_RETRY)
        assert client.generate(PROMPTS, SAMPLED) == engine.generate(PROMPTS, SAMPLED)
        client.close()


@pytest.mark.slow
def test_a_killed_server_fails_the_run_and_a_rerun_recomputes_nothing_stored(tmp_path, tiny_model_dir, engine):
    reference = plain(engine.generate(PROMPTS, SAMPLED))
    server = ServerProcess(tiny_model_dir, tmp_path / "server.log").start()
    try:
        store = Store(tmp_path / "run.db")
        client = OpenAIEngine(server.url, "tiny", concurrency=2, retry=RetryPolicy(2, 0.05, 0.1))
        killing = CachedEngine(client, store, chunk_size=8, on_generated=lambda k: server.kill())
        with pytest.raises(ServerError, match="failed 3 times"):
            killing.generate(PROMPTS, SAMPLED)
        assert store.count_generations() == 8  # the first chunk was committed before the kill
        server.start()
        counting = CountingEngine(client)
        resumed = CachedEngine(counting, store, chunk_size=8)
        assert plain(resumed.generate(PROMPTS, SAMPLED)) == reference
        first_chunk = {SampleRequest(p, i) for p in PROMPTS[:2] for i in range(SAMPLED.n)}
        assert resumed.hits == 8 and len(counting.seen) == 16 and first_chunk.isdisjoint(counting.seen)
        client.close()
    finally:
        server.kill()


@pytest.mark.slow
def test_the_client_rides_out_a_server_restart(tmp_path, tiny_model_dir, engine):
    reference = plain(engine.generate(PROMPTS, SAMPLED))
    server = ServerProcess(tiny_model_dir, tmp_path / "server.log").start()
    restarts: list[threading.Thread] = []

    def outage(_: int) -> None:
        if not restarts:  # once, after the first committed chunk: kill now, start again a second later
            server.kill()
            restarts.append(threading.Timer(1.0, server.start))
            restarts[0].start()

    try:
        client = OpenAIEngine(server.url, "tiny", concurrency=2, retry=RetryPolicy(20, 0.2, 2.0))
        cached = CachedEngine(client, Store(tmp_path / "run.db"), chunk_size=8, on_generated=outage)
        assert plain(cached.generate(PROMPTS, SAMPLED)) == reference
        assert restarts and cached.misses == len(PROMPTS) * SAMPLED.n
        restarts[0].join()
        client.close()
    finally:
        server.kill()

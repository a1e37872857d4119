"""The `openai` engine against a real vLLM OpenAI-compatible server (the CPU build, started on 127.0.0.1 by the
tests): greedy output equal to the hf engine's, seeded samples that do not depend on concurrency, step-wise beam
search, and a server restart in the middle of a cached search that the run rides out and a rerun resumes from."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from reasonscale.engines.base import Engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.hf import HFEngine
from reasonscale.engines.openai import OpenAIEngine, RetryPolicy
from reasonscale.search.beam import beam_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.store import Store
from reasonscale.types import SamplingParams
from reasonscale.verifiers.oracle import OracleVerifier
from vllm_support import CPU_ENV, lab_problems, lab_prompts, needs_vllm, vllm_lab_model

pytestmark = needs_vllm
PROMPTS = lab_prompts(levels=[2, 4], per_level=3) + ["x"]


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` in a child process, killable and restartable on its port."""

    def __init__(self, model_dir: Path, log: Path):
        self.model_dir, self.log = model_dir, log
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> VLLMServer:
        args = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
            "--served-model-name", "lab", "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
            "--enforce-eager", "--enable-prefix-caching", "--no-enable-chunked-prefill",
            "--uvicorn-log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, **CPU_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}  # the server runs its engine apart
        with self.log.open("a") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"the vLLM server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its engine processes (its own process group), as a crash would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def lab_model(tmp_path_factory) -> Path:
    return vllm_lab_model(tmp_path_factory.mktemp("vllm-lab"))


@pytest.fixture(scope="module")
def server(lab_model, tmp_path_factory):
    running = VLLMServer(lab_model, tmp_path_factory.mktemp("server") / "vllm.log").start()
    yield running
    running.kill()


@pytest.fixture(scope="module")
def hf_engine(lab_model) -> HFEngine:
    return HFEngine(str(lab_model), device="cpu", dtype="float32")


class Counting(Engine):
    """Counts the requests that reach the wrapped engine."""

    def __init__(self, inner: Engine):
        self.inner, self.model_id, self.num_parameters, self.seen = inner, inner.model_id, inner.num_parameters, 0

    def complete(self, requests, params):
        self.seen += len(requests)
        return self.inner.complete(requests, params)


def beam(engine: Engine, temperature: float):
    task, problems, prompts = lab_problems()
    params = SamplingParams(temperature=temperature, max_tokens=120, stop=task.solution_stop, seed=1)
    search = StepSearch(task, engine, OracleVerifier(), problems, prompts, params, step_max_tokens=24)
    return beam_search(search, 4, beam_width=2, max_rounds=6)


def comparable(results):
    """Results without cache-hit counts (a cached run has them by design) and FLOPs (a server reports no size)."""
    return [(r.candidates, r.chosen, replace(r.usage, cache_hits=0, flops=0.0)) for r in results]


def test_greedy_completions_equal_the_hf_engine(server, hf_engine):
    client = OpenAIEngine(server.url, "lab", concurrency=4)
    for stop in [(), ("\n",), ("=1", "b=")]:
        params = SamplingParams(n=2, max_tokens=40, stop=stop)
        assert client.generate(PROMPTS, params) == hf_engine.generate(PROMPTS, params)  # stops and token counts too
    client.close()


def test_seeded_samples_do_not_depend_on_concurrency(server):
    params = SamplingParams(n=4, temperature=1.0, max_tokens=30, seed=5, stop=("\n",))
    one, many = OpenAIEngine(server.url, "lab", concurrency=1), OpenAIEngine(server.url, "lab", concurrency=16)
    made = many.generate(PROMPTS, params)
    assert made == one.generate(PROMPTS, params)
    assert all(len({c.text for c in row}) > 1 for row in made)
    one.close(), many.close()


def test_beam_search_through_the_server(server, hf_engine):
    client = OpenAIEngine(server.url, "lab", concurrency=8)
    assert comparable(beam(client, temperature=0.0)) == comparable(beam(hf_engine, temperature=0.0))
    sampled = beam(client, temperature=0.8)
    assert comparable(beam(client, temperature=0.8)) == comparable(sampled)
    assert max(len(c.steps) for r in sampled for c in r.candidates) >= 3
    client.close()


def test_a_server_restart_mid_search_is_ridden_out_and_a_rerun_resumes(tmp_path, server):
    client = OpenAIEngine(server.url, "lab", concurrency=4, retry=RetryPolicy(max_retries=40, base_delay=0.5))
    reference = comparable(beam(client, temperature=0.8))
    restarts: list[threading.Thread] = []

    def outage(_: int) -> None:
        if not restarts:  # once, after the first committed chunk: kill the server, start it again at once
            server.kill()
            restarts.append(threading.Thread(target=server.start))
            restarts[0].start()

    store = Store(tmp_path / "run.db")
    cached = CachedEngine(client, store, chunk_size=8, on_generated=outage)
    assert comparable(beam(cached, temperature=0.8)) == reference
    restarts[0].join()
    assert restarts and server.process.poll() is None and cached.misses > 8
    counting = Counting(client)
    rerun = CachedEngine(counting, store)
    assert comparable(beam(rerun, temperature=0.8)) == reference
    assert counting.seen == 0 and rerun.hits == cached.misses
    client.close()

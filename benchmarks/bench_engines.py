"""Client-over-loopback throughput vs in-process, at client concurrency 1, 4 and 16.

A `reasonscale serve` child process serves a small random Llama on 127.0.0.1; the openai engine samples a job
through it (one request per sample), and the hf engine samples the same job in this process. The server batches
concurrent requests, so its throughput grows with the client's concurrency. Reported per concurrency c:
  vs batch c:   client / in-process engine limited to batches of c (the cost of HTTP, JSON and batching)
  vs batch 64:  client / in-process engine at its default batch size (what a user gives up by serving)
Outputs are checked to be identical to the in-process ones. Server and in-process engine get the same number of
torch threads (`--threads`, default 1), so on a 2-core machine the client's own work runs on the other core.

    python benchmarks/bench_engines.py [--prompts 16 --n 4 --max-tokens 32 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import torch
from bench_hf_engine import build_model, prompts_for

from reasonscale.engines.hf import HFEngine
from reasonscale.engines.openai import OpenAIEngine
from reasonscale.types import SamplingParams

SERVE = (
    "import sys; from reasonscale.serve import serve; "
    "serve(sys.argv[1], port=int(sys.argv[2]), device='cpu', model_name='bench', log_level='warning')"
)


def start_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(model_dir), str(port)], env=env)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def best_rate(run: Callable[[], object], samples: int, repeats: int) -> float:
    """Samples per second, best of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return samples / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of this process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = prompts_for(args.prompts)
    params = SamplingParams(n=args.n, temperature=0.8, max_tokens=args.max_tokens, seed=0)
    samples = args.prompts * args.n
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp), hidden=256, layers=4)
        process, url = start_server(model_dir, args.threads)
        try:
            local = HFEngine(str(model_dir), device="cpu", max_batch_size=64)
            expected = local.generate(prompts, params)
            full_batch = best_rate(partial(local.generate, prompts, params), samples, args.repeats)
            print(f"{samples} samples of {args.max_tokens} tokens; in-process at batch 64: {full_batch:.1f} samples/s")
            print(" c | client samples/s | in-process batch c | vs batch c | vs batch 64")
            for concurrency in (1, 4, 16):
                client = OpenAIEngine(url, "bench", concurrency=concurrency)
                assert client.generate(prompts, params) == expected, "client and in-process outputs differ"
                rate = best_rate(partial(client.generate, prompts, params), samples, args.repeats)
                client.close()
                local.max_batch_size = concurrency
                batch_c = best_rate(partial(local.generate, prompts, params), samples, args.repeats)
                ratios = f"{rate / batch_c:10.2f} | {rate / full_batch:11.2f}"
                print(f"{concurrency:2d} | {rate:16.1f} | {batch_c:18.1f} | {ratios}")
        finally:
            process.kill()


if __name__ == "__main__":
    main()

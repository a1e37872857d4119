"""Beam search wall time vs plain sampling of the same number of generated tokens, on the hf engine.

Each beam-search round re-sends every beam's prompt plus its steps so far, and its batch holds steps of many
lengths. The engine finds those prefixes' keys and values in its prefix cache (the previous round ran them), so
only new tokens are encoded, and rows leave the batch as their steps end, so short steps do not ride along with
the longest. This prints both wall times, the tokens each generated, the prompt tokens billed (every request's
whole prompt) and those encoded, and the ratio of beam time to plain time scaled to the beam's generated tokens.
Target: ratio <= 1.3. The oracle verifier keeps verifier cost out of it. After a warm-up, runs alternate and the
fastest of each counts, to damp noise from other processes; each starts from an empty prefix cache.

    python benchmarks/bench_beam.py [--model DIR] [--level 4 --problems 16 --n 16 --repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from reasonscale.config import LabTaskConfig, TaskConfig
from reasonscale.engines.hf import HFEngine
from reasonscale.search.beam import beam_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.tasks.lab import LabTask
from reasonscale.types import SamplingParams
from reasonscale.verifiers.oracle import OracleVerifier


class Run(NamedTuple):
    seconds: float
    generated: int
    prompt_tokens: int  # billed: every request's whole prompt
    encoded: int  # prompt tokens run through the model: each distinct prompt once, from where the cache ends


def timed(engine: HFEngine, work: Callable[[], tuple[int, int]]) -> Run:
    """Time `work` (which returns generated and prompt tokens) from an empty prefix cache."""
    engine.prefix_cache.clear()
    gc.collect()  # so that no full collection of earlier garbage lands in this run
    encoded = engine.encoded_tokens
    start = time.perf_counter()
    generated, prompt_tokens = work()
    return Run(time.perf_counter() - start, generated, prompt_tokens, engine.encoded_tokens - encoded)


def beam(engine: HFEngine, task: LabTask, problems, prompts, params, n: int) -> tuple[int, int]:
    """One beam search (M=4): completion and prompt tokens."""
    search = StepSearch(task, engine, OracleVerifier(), problems, prompts, params, step_max_tokens=40)
    results = beam_search(search, n, beam_width=4, max_rounds=10)
    return sum(r.usage.completion_tokens for r in results), sum(r.usage.prompt_tokens for r in results)


def plain(engine: HFEngine, prompts: list[str], params: SamplingParams, n: int) -> tuple[int, int]:
    """n full samples per prompt in one call: completion and prompt tokens."""
    outputs = engine.generate(prompts, replace(params, n=n, seed=1))
    flat = [c for cs in outputs for c in cs]
    return sum(c.completion_tokens for c in flat), sum(c.prompt_tokens for c in flat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="policy directory (default: the trained 'weak' lab preset)")
    parser.add_argument("--level", type=int, default=4)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256, help="engine max batch size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model is None:
        from reasonscale.lab.train import train_preset

        args.model = str(train_preset("weak"))
    engine = HFEngine(args.model, device="cpu", max_batch_size=args.batch)
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[args.level], per_level=args.problems)))
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(temperature=0.8, max_tokens=160, stop=task.solution_stop)
    runs = {
        "beam search": lambda: beam(engine, task, problems, prompts, params, args.n),
        "plain sampling": lambda: plain(engine, prompts, params, args.n),
    }
    for work in runs.values():  # warm-up: the first runs in a process are slower
        timed(engine, work)
    beams, plains = [], []
    for _ in range(args.repeats):
        beams.append(timed(engine, runs["beam search"]))
        plains.append(timed(engine, runs["plain sampling"]))
    print("runs (s):", " ".join(f"beam {b.seconds:.2f} / plain {p.seconds:.2f}" for b, p in zip(beams, plains)))
    best_beam, best_plain = min(beams), min(plains)
    for name, run in (("beam search", best_beam), ("plain sampling", best_plain)):
        print(
            f"{name:<15}: {run.seconds:6.2f} s for {run.generated} generated tokens; "
            f"prompt tokens: {run.prompt_tokens} billed, {run.encoded} encoded"
        )
    scaled = best_plain.seconds * best_beam.generated / best_plain.generated
    print(f"plain sampling scaled to the beam's generated tokens: {scaled:.2f} s")
    print(f"ratio beam / plain at equal generated tokens: {best_beam.seconds / scaled:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()

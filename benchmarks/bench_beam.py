"""Beam search wall time vs plain sampling of the same number of generated tokens, on the hf engine.

Beam search re-sends each beam's whole prefix every round (the hf engine has no prefix cache across calls), so
it pays prefill again per step and waits on the slowest step of each batch. This prints both wall times, the
tokens each generated, and the ratio of beam time to plain time scaled to the beam's token count.
Target: ratio <= 1.3. The oracle verifier keeps verifier cost out of the comparison.

    python benchmarks/bench_beam.py [--model DIR] [--level 4 --problems 16 --n 16 --repeats 2]
"""

from __future__ import annotations

import argparse
import time

from reasonscale.config import LabTaskConfig, TaskConfig
from reasonscale.engines.hf import HFEngine
from reasonscale.search.beam import beam_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.tasks.lab import LabTask
from reasonscale.types import SamplingParams
from reasonscale.verifiers.oracle import OracleVerifier


def timed_beam(engine: HFEngine, task: LabTask, problems, prompts, params, n: int) -> tuple[float, int, int]:
    """Seconds, completion tokens and prompt tokens (re-encoded prefixes) of one beam search (M=4)."""
    search = StepSearch(task, engine, OracleVerifier(), problems, prompts, params, step_max_tokens=40)
    start = time.perf_counter()
    results = beam_search(search, n, beam_width=4, max_rounds=10)
    seconds = time.perf_counter() - start
    return seconds, sum(r.usage.completion_tokens for r in results), sum(r.usage.prompt_tokens for r in results)


def timed_plain(engine: HFEngine, prompts: list[str], params: SamplingParams, n: int) -> tuple[float, int, int]:
    """Seconds, completion tokens and prompt tokens of n full samples per prompt in one call."""
    start = time.perf_counter()
    outputs = engine.generate(prompts, SamplingParams(**{**params.__dict__, "n": n, "seed": 1}))
    seconds = time.perf_counter() - start
    flat = [c for cs in outputs for c in cs]
    return seconds, sum(c.completion_tokens for c in flat), sum(c.prompt_tokens for c in flat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="policy directory (default: the trained 'weak' lab preset)")
    parser.add_argument("--level", type=int, default=4)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256, help="engine max batch size")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.model is None:
        from reasonscale.lab.train import train_preset

        args.model = str(train_preset("weak"))
    engine = HFEngine(args.model, device="cpu", max_batch_size=args.batch)
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[args.level], per_level=args.problems)))
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(temperature=0.8, max_tokens=160, stop=task.solution_stop)
    beams, plains = [], []
    for _ in range(args.repeats):  # alternate, and keep the best of each, to damp noise from other processes
        beams.append(timed_beam(engine, task, problems, prompts, params, args.n))
        plains.append(timed_plain(engine, prompts, params, args.n))
    print("runs (s):", " ".join(f"beam {b[0]:.2f} / plain {p[0]:.2f}" for b, p in zip(beams, plains)))
    beam, plain = min(beams), min(plains)
    scaled = plain[0] * beam[1] / plain[1]
    print(f"beam search   : {beam[0]:7.2f} s for {beam[1]} generated tokens, {beam[2]} prompt tokens encoded")
    print(f"plain sampling: {plain[0]:7.2f} s for {plain[1]} generated tokens, {plain[2]} prompt tokens encoded")
    print(f"plain sampling scaled to the beam's generated tokens: {scaled:.2f} s")
    print(f"ratio beam / plain at equal generated tokens: {beam[0] / scaled:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()

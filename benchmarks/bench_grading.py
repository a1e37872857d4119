"""Grading throughput: MATH-500 answers through the Math-Verify worker pool, and GSM8K exact-number grading.

python benchmarks/bench_grading.py [--data ../shared/data] [--workers N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reasonscale.grading import MathVerifyPool, NumericChecker
from reasonscale.grading.extract import last_boxed
from reasonscale.tasks.gsm8k import final_answer
from reasonscale.tasks.io import read_jsonl


def rate(label: str, pairs: Sequence[tuple[str, str]], grade: Callable[[Sequence[tuple[str, str]]], list]) -> None:
    start = time.perf_counter()
    results = grade(pairs)
    seconds = time.perf_counter() - start
    equal = sum(bool(getattr(r, "equal", r)) for r in results)
    print(f"{label:<48} {len(pairs):>6} items  {seconds:7.2f} s  {len(pairs) / seconds:9.0f} items/s  ({equal} equal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    math_rows = list(read_jsonl(args.data / "math500" / "test.jsonl"))
    gold = [(r["answer"], r["answer"]) for r in math_rows]
    solved = [(r["answer"], last_boxed(r["solution"]) or "") for r in math_rows]
    with MathVerifyPool(workers=args.workers) as pool:
        print(f"Math-Verify pool: {pool.workers} workers")
        rate("MATH-500 gold vs gold, cold (worker start-up)", gold, pool.verify)
        rate("MATH-500 gold vs gold, warm", gold, pool.verify)
        rate("MATH-500 gold vs solution's boxed answer", solved, pool.verify)

    gsm_rows = list(read_jsonl(args.data / "gsm8k" / "test.jsonl"))
    checker = NumericChecker()
    answers = [(final_answer(r["answer"], "gsm8k"), r["answer"]) for r in gsm_rows]
    rate("GSM8K gold vs gold (numeric, x20)", [(a, a) for a, _ in answers] * 20, checker.equivalent)
    rate(
        "GSM8K extract + grade reference solutions (x20)",
        answers * 20,
        lambda pairs: checker.equivalent([(a, checker.extract(s) or "") for a, s in pairs]),
    )


if __name__ == "__main__":
    main()

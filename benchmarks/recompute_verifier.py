"""The recompute verifier on a finished lab search run's sample pool, against the oracle and the run's PRM.

    PYTHONPATH=src python benchmarks/recompute_verifier.py [--run runs/lab-search-default] [--problems 200]
        [--verifier-model family-4] [--variants 1]

Reads (never writes) the run's eval/results.jsonl: each problem's pooled samples with their oracle step scores and
graded correctness. Scores every sample with `recompute` (the policy as verifier model, or `--verifier-model`: a
model directory or a lab preset, trained first if it is not cached) in each form and prints:
step ROC AUC against the oracle's first-error labels (pooled), within-problem AUC of the final score (mean over
problems with both right and wrong samples), and best-of-16 / weighted best-of-16 against majority@16 over each
problem's first 16 samples, with standard errors. The run's PRM is measured the same way for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from reasonscale.config import TaskConfig
from reasonscale.verifiers.metrics import roc_auc
from reasonscale.tasks import build_task
from reasonscale.verifiers import aggregate, build_verifier

AGGREGATES = ("min", "prod", "last")
VARIANTS = [  # the default first, then one change at a time
    {},
    {"form": "ratio"},
    {"numbers": "last"},
    {"numbers": "last", "form": "ratio"},
    {"score_end": False},
]


def load_run(run: Path, limit: int | None) -> tuple[list[dict], dict, str]:
    """The run's records (the first `limit`), its task config and its policy path."""
    lines = (run / "eval" / "results.jsonl").read_text().splitlines()
    config = json.loads((run / "eval" / "summary.json").read_text())["config"]
    return [json.loads(line) for line in lines[:limit]], config["task"], config["model"]["path"]


def score_pool(records: list[dict], task_cfg: dict, policy: str, options: dict) -> tuple[list, float]:
    """Recompute step scores of every candidate (identical texts of a problem scored once) and the seconds taken."""
    task = build_task(TaskConfig(**task_cfg))
    problems = {p.id: p for p in task.load()}
    verifier = build_verifier("recompute", task, policy, {**options, "batch_size": 256})
    start, out = time.time(), []
    for record in records:
        texts = sorted({c["text"] for c in record["candidates"]})
        steps = [task.split_steps(t) for t in texts]
        scored = dict(zip(texts, verifier.score([problems[record["id"]]] * len(texts), steps)))
        out.append([scored[c["text"]] for c in record["candidates"]])
    return out, time.time() - start


def step_auc(records: list[dict], scores: list[list[list[float]]]) -> float | None:
    """Pooled step ROC AUC against the oracle, each solution up to and including its first wrong step."""
    xs, ys = [], []
    for record, per_candidate in zip(records, scores):
        for c, predicted in zip(record["candidates"], per_candidate):
            truth = c["step_scores"]["oracle"]
            keep = truth.index(0.0) + 1 if 0.0 in truth else len(truth)
            xs += predicted[:keep]
            ys += [int(v) for v in truth[:keep]]
    return roc_auc(xs, ys)


def within_problem_auc(records: list[dict], finals: list[list[float]]) -> tuple[float, int]:
    """Mean over problems with both right and wrong samples of the AUC of final scores vs correctness, and how many."""
    aucs = [roc_auc(f, [c["correct"] for c in r["candidates"]]) for r, f in zip(records, finals)]
    aucs = [a for a in aucs if a is not None]
    return sum(aucs) / max(1, len(aucs)), len(aucs)


def select(candidates: Sequence[dict], weights: Sequence[float], weighted: bool) -> bool:
    """Whether the chosen answer is right: the best-scored sample, or the answer with the largest summed weight
    (ties: the earliest sample's)."""
    if not weighted:
        best = max(range(len(candidates)), key=lambda i: (weights[i], -i))
        return bool(candidates[best]["correct"])
    total: dict[str | None, float] = {}
    for c, w in zip(candidates, weights):
        if c["answer"] is not None:
            total[c["answer"]] = total.get(c["answer"], 0.0) + w
    if not total:
        return False
    answer = max(total, key=total.get)  # dict order is first occurrence, so ties go to the earliest sample
    return any(c["correct"] for c in candidates if c["answer"] == answer)


def hits(records: list[dict], finals: list[list[float]] | None, n: int, weighted: bool) -> list[int]:
    """Per problem, whether selection over its first `n` samples is right (majority: no finals)."""
    out = []
    for i, r in enumerate(records):
        weights = [1.0] * n if finals is None else finals[i][:n]
        out.append(int(select(r["candidates"][:n], weights, weighted or finals is None)))
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error."""
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def report(name: str, records: list[dict], scores: list[list[list[float]]], n: int) -> None:
    """Print a verifier's step AUC and, per aggregation, its within-problem AUC and selection accuracy; the last
    figure is weighted best-of-n minus majority, paired per problem (its standard error is the paired one)."""
    print(f"{name}: step AUC (first error) {step_auc(records, scores):.3f}")
    majority = hits(records, None, n, weighted=True)
    for how in AGGREGATES:
        finals = [[aggregate(s, how) for s in per] for per in scores]
        auc, count = within_problem_auc(records, finals)
        best = mean_se(hits(records, finals, n, weighted=False))
        weighted = hits(records, finals, n, weighted=True)
        gain = mean_se([w - m for w, m in zip(weighted, majority)])
        print(
            f"  {how:4s}: within-problem AUC {auc:.3f} ({count} problems); best-of-{n} {best[0]:.3f} ± {best[1]:.3f}; "
            f"weighted best-of-{n} {mean_se(weighted)[0]:.3f} ± {mean_se(weighted)[1]:.3f} "
            f"(vs majority {gain[0]:+.3f} ± {gain[1]:.3f})"
        )


def verifier_model(name: str) -> str:
    """A lab preset's directory (trained now if it is not cached), or `name` itself."""
    from reasonscale.lab.model import PRESETS
    from reasonscale.lab.train import train_preset

    return str(train_preset(name)) if name in PRESETS else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/lab-search-default")
    parser.add_argument("--problems", type=int, default=None, help="only the first N problems (default: all)")
    parser.add_argument("--n", type=int, default=16, help="samples per problem for selection")
    parser.add_argument("--verifier-model", default=None, help="model directory or lab preset (default: the policy)")
    parser.add_argument("--variants", type=int, default=len(VARIANTS), help="only the first K recompute variants")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records, task_cfg, policy = load_run(Path(args.run), args.problems)
    model = verifier_model(args.verifier_model) if args.verifier_model else policy
    samples = sum(len(r["candidates"]) for r in records)
    print(f"{len(records)} problems, {samples} samples; policy {policy}; verifier model {model}")
    majority, majority_se = mean_se(hits(records, None, args.n, weighted=True))
    print(f"majority@{args.n} {majority:.3f} ± {majority_se:.3f}")
    oracle = [[c["step_scores"]["oracle"] for c in r["candidates"]] for r in records]
    report("oracle", records, oracle, args.n)
    prm = next((k for k in records[0]["candidates"][0]["step_scores"] if k.startswith("prm")), None)
    if prm:
        report(f"run PRM ({prm})", records, [[c["step_scores"][prm] for c in r["candidates"]] for r in records], args.n)
    for options in VARIANTS[: args.variants]:
        scores, seconds = score_pool(records, task_cfg, model, options)
        report(f"recompute {json.dumps(options)} ({seconds:.0f} s)", records, scores, args.n)


if __name__ == "__main__":
    main()

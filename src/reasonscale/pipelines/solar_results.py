"""The figures of `reasonscale lab solar` read off its evaluation runs: each method's accuracy and generated tokens
at each budget (the curve), the matched chain counts, the chains' length per segment, the reward models' metrics
over trainings, and the issue's targets."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from reasonscale.data.tag import SEGMENTS

Point = dict[str, Any]


def _records(out: Path, run: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Every evaluation record of the runs `eval-<run>-s<seed>`, each with its `seed`."""
    rows = []
    for seed in seeds:
        lines = (out / f"eval-{run}-s{seed}" / "results.jsonl").read_text().splitlines()
        rows += [{**json.loads(line), "seed": seed} for line in lines]
    return rows


def matched_chains(topological: Point, chains: Point, n: int) -> int:
    """The number of chains whose generated tokens per question are closest to the topological method's, from the
    measured tokens of n chains (a chain's tokens do not depend on how many are drawn)."""
    return max(1, round(topological["generated_tokens"] / (chains["generated_tokens"] / n)))


def compare(
    out: Path, methods: dict[str, tuple[str, str, int]], segments: dict[str, str], seeds: list[int]
) -> dict[str, Point]:
    """Per method (run, strategy, budget n): accuracy overall (mean over seeds, each seed's, and their spread),
    per level and per segment (over every seed's records), and generated tokens per question."""
    table = {}
    for method, (run, strategy, n) in methods.items():
        picked = [(r, o) for r in _records(out, run, seeds) for o in r["outcomes"]
                  if o["strategy"] == strategy and o["budget"] == n]  # fmt: skip
        if not picked:
            raise ValueError(f"{method}: no '{strategy}' outcome at N = {n} in the runs eval-{run}-s*")
        by_seed, by_level, by_segment = defaultdict(list), defaultdict(list), defaultdict(list)
        for r, o in picked:
            by_seed[str(r["seed"])].append(o["correct"])
            by_level[str(r["level"])].append(o["correct"])
            by_segment[segments.get(r["id"], "unknown")].append(o["correct"])
        per_seed = {k: mean(v) for k, v in by_seed.items()}
        table[method] = {
            "n": n,
            "accuracy": mean(per_seed.values()),
            "accuracy_by_seed": per_seed,
            "seed_spread": max(per_seed.values()) - min(per_seed.values()),
            "accuracy_by_level": {k: mean(v) for k, v in sorted(by_level.items())},
            "accuracy_by_segment": {k: mean(by_segment[k]) for k in SEGMENTS if by_segment[k]},
            "generated_tokens": mean(o["generated_tokens"] for _, o in picked),
        }
    return table


def curve(
    out: Path,
    arms: dict[str, tuple[str, str, list[int]]],
    budgets: list[int],
    segments: dict[str, str],
    seeds: list[int],
) -> dict[str, list[Point]]:
    """Per method (run, strategy, its N at each budget): one `compare` point per budget, with the `budget`."""
    table: dict[str, list[Point]] = {method: [] for method in arms}
    for i, budget in enumerate(budgets):
        points = compare(out, {m: (run, s, ns[i]) for m, (run, s, ns) in arms.items()}, segments, seeds)
        for method, point in points.items():
            table[method].append({"budget": budget, **point})
    return table


def lengths(out: Path, segments: dict[str, str], seeds: list[int]) -> dict[str, dict[str, float]]:
    """Mean generated tokens of one chain (cot@1) per segment, base vs tuned, over every seed."""
    table: dict[str, dict[str, float]] = {}
    for policy in ("base", "tuned"):
        groups = defaultdict(list)
        for r in _records(out, policy, seeds):
            for o in r["outcomes"]:
                if o["strategy"] == "cot" and o["budget"] == 1:
                    groups[segments.get(r["id"], "unknown")].append(o["generated_tokens"])
        table[policy] = {k: mean(groups[k]) for k in SEGMENTS if groups[k]}
    return table


def reward_summary(by_training: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The reward models' held-out metrics (per training, per model) summed up: each metric's mean and spread
    (best minus worst; 0 with one training), and each training's."""
    metrics, spread = {}, {}
    for name, first in next(iter(by_training.values())).items():
        values = {k: [t[name][k] for t in by_training.values()] for k in first}
        metrics[name] = {k: mean(v) for k, v in values.items()}
        spread[name] = {k: max(v) - min(v) for k, v in values.items()}
    return {"metrics": metrics, "spread": spread, "by_training": by_training}


def targets(methods: dict[str, Point], metrics: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The issue's targets, each held or not: a method beats the base by more than the noise (the larger seed
    spread of the two), hybrid at least as good as either alone, the M-TRM at least as good as the single-task
    models; and, with the matched arms, the same beats at matched generated tokens."""

    def beats(method: str, base: str) -> bool:
        a, b = methods[method], methods[base]
        return a["accuracy"] - b["accuracy"] > max(a["seed_spread"], b["seed_spread"])

    out = {f"{m} beats base": beats(m, "base") for m in ("tuning", "rewarding", "hybrid")}
    out["hybrid >= tuning and rewarding"] = methods["hybrid"]["accuracy"] >= max(
        methods["tuning"]["accuracy"], methods["rewarding"]["accuracy"]
    )
    m_trm = metrics["m-trm"]
    for name, other in metrics.items():
        for key in ("selection_accuracy", "within_auc", "spearman"):
            if name != "m-trm" and key in other and key in m_trm:
                out[f"m-trm {key} >= {name}"] = m_trm[key] >= other[key]
    if "base-matched" in methods:
        out |= {f"{m} beats {base}": beats(m, base) for m, base in (
            ("rewarding", "base-matched"), ("hybrid", "tuning-matched"), ("rewarding", "chains-oracle"),
            ("hybrid", "tuned-chains-oracle"), ("rewarding", "best-topology"),
            ("hybrid", "tuned-best-topology"))}  # fmt: skip
    return out

"""Summaries of a run's per-problem records: accuracy and compute per strategy and budget, per level.

Outcomes are grouped by their strategy's name and settings (never by parsing a label): one series per strategy,
one point per budget N, each with its accuracy, its generation budget (the compute N stands for) and the mean
compute per problem it really spent (generations, tokens, FLOPs).

Every accuracy has its standard error over problems (`mean_se`): the problems are the sample, each contributing
its outcome (0 or 1; a fraction for pass@k, or for the mean over seeds of `mean_over_seeds`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from reasonscale import atomic
from reasonscale.report import write_report

COST_FIELDS = (
    "generations",
    "prompt_tokens",
    "generated_tokens",
    "tokens",
    "verifier_calls",
    "verifier_tokens",
    "policy_flops",
    "verifier_flops",
    "flops",
)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean of per-problem values and its standard error sqrt(var / n), var the plug-in variance (dividing by
    n): sqrt(p (1 - p) / n) for 0/1 outcomes. (0.0, 0.0) for no values."""
    n = len(values)
    if not n:
        return 0.0, 0.0
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n / n)


def series(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per strategy (name and settings), in the order first seen: its label, name, settings and one
    point per budget with accuracy overall and per level and the mean cost per problem."""
    grouped: dict[str, dict[str, Any]] = {}
    for record in records:
        for outcome in record["outcomes"]:
            key = json.dumps([outcome["strategy"], outcome["settings"]], sort_keys=True)
            entry = grouped.setdefault(
                key,
                {"label": outcome["label"], "strategy": outcome["strategy"], "settings": outcome["settings"], "at": {}},
            )
            point = entry["at"].setdefault(
                outcome["budget"], {"outcomes": [], "levels": defaultdict(list), "bins": defaultdict(list)}
            )
            point["outcomes"].append(outcome)
            if record.get("level") is not None:
                point["levels"][str(record["level"])].append(float(outcome["correct"]))
            for kind, b in (record.get("bins") or {}).items():
                if b is not None:
                    point["bins"][kind, str(b)].append(float(outcome["correct"]))
    out = []
    for entry in grouped.values():
        points = [_point(budget, p) for budget, p in sorted(entry.pop("at").items())]
        out.append({**entry, "points": points})
    return out


def _point(budget: int, point: dict[str, Any]) -> dict[str, Any]:
    """Accuracy overall, per level and per bin, each with its standard error (`accuracy_se...`), and cost."""
    outcomes = point["outcomes"]
    accuracy, se = mean_se([float(o["correct"]) for o in outcomes])
    levels = sorted(point["levels"].items())
    return {
        "budget": budget,
        "generation_budget": outcomes[0]["generation_budget"],
        "accuracy": accuracy,
        "accuracy_se": se,
        "accuracy_by_level": {lvl: _mean(v) for lvl, v in levels},
        "accuracy_se_by_level": {lvl: mean_se(v)[1] for lvl, v in levels},
        "accuracy_by_bin": _by_bin(point["bins"], 0),
        "accuracy_se_by_bin": _by_bin(point["bins"], 1),
        "cost": {f: _mean([float(o.get(f, 0)) for o in outcomes]) for f in COST_FIELDS},
    }


def _by_bin(bins: dict[tuple[str, str], list[float]], part: int) -> dict[str, dict[str, float]]:
    """Accuracy (`part` 0) or its standard error (1) per difficulty bin, per kind of bin (oracle, predicted)."""
    out: dict[str, dict[str, float]] = {}
    for (kind, b), values in sorted(bins.items(), key=lambda item: (item[0][0], int(item[0][1]))):
        out.setdefault(kind, {})[b] = mean_se(values)[part]
    return out


def summarize(records: list[dict[str, Any]], cfg: BaseModel, usage: dict[str, int]) -> dict[str, Any]:
    """The run's summary.json content. `accuracy`, `accuracy_by_level`, their standard errors `accuracy_se` and
    `accuracy_se_by_level`, and `cost_per_problem` are flat views of `strategies` keyed `label@N` for reading
    (never parsed back)."""
    levels = sorted({str(r["level"]) for r in records if r.get("level") is not None})
    curves = series(records)
    policy = getattr(cfg, "policy", None)
    if policy:
        from reasonscale.scaling.policy import policy_series

        curves.append(policy_series(records, [c.model_dump() for c in policy]))
    points = [(f"{s['label']}@{p['budget']}", p) for s in curves for p in s["points"]]
    totals = {f: sum(r["usage"][f] for r in records) for f in COST_FIELDS}
    return {
        "config": cfg.model_dump(),
        "problems": len(records),
        "problems_by_level": {lvl: sum(str(r.get("level")) == lvl for r in records) for lvl in levels},
        "problems_by_bin": _bin_counts(records),
        "strategies": curves,
        "accuracy": {name: p["accuracy"] for name, p in points},
        "accuracy_se": {name: p["accuracy_se"] for name, p in points if "accuracy_se" in p},
        "accuracy_by_level": _by_level(points, levels, "accuracy_by_level"),
        "accuracy_se_by_level": _by_level(points, levels, "accuracy_se_by_level"),
        "cost_per_problem": {name: p["cost"] for name, p in points},
        "usage": {**usage, **totals},
    }


def _by_level(points: list[tuple[str, dict[str, Any]]], levels: list[str], key: str) -> dict[str, dict[str, float]]:
    return {lvl: {n: p[key][lvl] for n, p in points if lvl in p.get(key, {})} for lvl in levels}


def mean_over_seeds(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per problem from the records of several runs that differ only in their sampling seed: each
    outcome's correctness and cost are its means over the seeds (so a problem's accuracy may be a fraction), the
    problem's usage is the sum over the seeds (what was spent) and its candidates are every seed's pool in turn."""
    first, *others = [{r["id"]: r for r in run} for run in runs]
    if any(set(other) != set(first) for other in others):
        raise ValueError("runs to average over seeds must hold the same problems")
    merged = []
    for pid, record in first.items():
        copies = [record, *(other[pid] for other in others)]
        outcomes = []
        for i, outcome in enumerate(record["outcomes"]):
            same = [c["outcomes"][i] for c in copies]
            if any((o["label"], o["budget"]) != (outcome["label"], outcome["budget"]) for o in same):
                raise ValueError(f"problem {pid}: the runs to average over seeds hold different strategies")
            fields = ("correct", *COST_FIELDS)
            outcomes.append({**outcome, **{f: _mean([float(o.get(f, 0)) for o in same]) for f in fields}})
        usage = {f: sum(c["usage"][f] for c in copies) for f in record["usage"]}
        candidates = [c for copy in copies for c in copy.get("candidates") or []]
        merged.append({**record, "outcomes": outcomes, "usage": usage, "candidates": candidates})
    return merged


def _bin_counts(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        for kind, b in (record.get("bins") or {}).items():
            if b is not None:
                counts.setdefault(kind, {}).setdefault(str(b), 0)
                counts[kind][str(b)] += 1
    return {kind: dict(sorted(c.items(), key=lambda item: int(item[0]))) for kind, c in counts.items()}


def write_outputs(out_dir: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """results.jsonl (one line per problem), summary.json and the report."""
    atomic.write_text(out_dir / "results.jsonl", "".join(json.dumps(record) + "\n" for record in records))
    atomic.write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    write_report(out_dir, summary)

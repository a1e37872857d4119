"""Summaries of a run's per-problem records: accuracy per strategy and budget, per level, and compute used."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from reasonscale.report import write_report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def accuracy_table(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean correctness of every `strategy@budget` over the records (pass@k rows hold expected values)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for label, outcome in record["strategies"].items():
            scores[label].append(float(outcome["correct"]))
    return {label: _mean(values) for label, values in scores.items()}


def cost_table(records: list[dict[str, Any]], num_parameters: int = 0) -> dict[str, dict[str, float]]:
    """Mean samples, tokens (prompt + generated, as billed), generated tokens and verifier tokens per problem for
    every `strategy@budget`."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for label, outcome in record["strategies"].items():
            for field in ("samples", "tokens", "generated_tokens", "verifier_tokens"):
                table[label][field].append(float(outcome.get(field, 0)))
    return {label: {f: _mean(v) for f, v in fields.items()} for label, fields in table.items()}


def summarize(records: list[dict[str, Any]], cfg: BaseModel, usage: dict[str, int]) -> dict[str, Any]:
    """The run's summary.json content."""
    by_level: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record.get("level") is not None:
            by_level[str(record["level"])].append(record)
    candidates = [c for r in records for c in [*r["candidates"], *([r["greedy"]] if "greedy" in r else [])]]
    totals = {
        **usage,
        "samples": len(candidates),
        "prompt_tokens": sum(c["prompt_tokens"] for c in candidates),
        "completion_tokens": sum(c["completion_tokens"] for c in candidates),
    }
    return {
        "config": cfg.model_dump(),
        "problems": len(records),
        "accuracy": accuracy_table(records),
        "accuracy_by_level": {lvl: accuracy_table(rs) for lvl, rs in sorted(by_level.items())},
        "problems_by_level": {lvl: len(rs) for lvl, rs in sorted(by_level.items())},
        "cost_per_problem": cost_table(records),
        "usage": totals,
    }


def write_outputs(out_dir: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """results.jsonl (one line per problem), summary.json and the report."""
    with (out_dir / "results.jsonl").open("w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(out_dir, summary)

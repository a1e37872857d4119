"""Topological tuning data (SOLAR): from a TAG export to prompt/completion records for SFT.

Stages, each a pure function over annotated rows (`reasonscale.data.tag`), each reported by its input and output
size: questions sampled evenly across the easy / medium / hard segments (`balanced_sample`), responses with hard
label 1 (`hard_filter`), each response serialized into one forward text in the task's step format and repeats of a
question's text dropped (`serialize_rows`), and low-scoring responses rejected by a reward model (`reward_filter`:
below a threshold, or all but the top k per question), topologies mixed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from reasonscale.config import Section
from reasonscale.data.tag import SEGMENTS
from reasonscale.tasks.base import Task
from reasonscale.types import Problem

Row = dict[str, Any]


class TuningFilters(Section):
    """How the tuning set is drawn from a TAG export."""

    per_segment: int | None = Field(
        None, ge=1, description="questions sampled per segment (default: as many as the smallest non-empty segment)"
    )
    segments: list[str] = Field(default_factory=lambda: list(SEGMENTS), description="segments sampled from")
    min_reward: float | None = Field(None, ge=0, le=1, description="reject responses the TRM scores below this")
    top_k: int | None = Field(None, ge=1, description="keep only the k best-rewarded responses per question")
    seed: int = 0


def balanced_sample(rows: Sequence[Row], segments: Sequence[str], per_segment: int | None, seed: int) -> list[Row]:
    """The rows of `per_segment` questions drawn (seeded) from each segment; by default as many per segment as the
    smallest non-empty one has, so no segment outweighs another. A segment with fewer questions gives all it has."""
    unknown = sorted(set(segments) - set(SEGMENTS))
    if unknown:
        raise ValueError(f"segments: unknown segment {', '.join(unknown)} (use {', '.join(SEGMENTS)})")
    by_segment: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["segment"] in segments and row["id"] not in by_segment[row["segment"]]:
            by_segment[row["segment"]].append(row["id"])
    sizes = [len(ids) for ids in by_segment.values() if ids]
    count = per_segment or (min(sizes) if sizes else 0)
    rng = random.Random(seed)
    chosen = {q for s in segments for q in rng.sample(by_segment[s], min(count, len(by_segment[s])))}
    return [row for row in rows if row["id"] in chosen]


def hard_filter(rows: Sequence[Row]) -> list[Row]:
    """The responses graded right (hard label 1)."""
    return [row for row in rows if row["hard_label"] == 1]


def serialize(task: Task, text: str) -> str:
    """A topology's conclusion as one forward solution in the task's step format: its steps in order, each once
    (a merged GoT prefix may repeat one), up to and including the first step that gives an answer."""
    steps: list[str] = []
    for step in task.split_steps(text):
        if step in steps:
            continue
        steps.append(step)
        if task.extract_answer(step) is not None:
            break
    return task.join_steps(steps)


def serialize_rows(task: Task, rows: Sequence[Row]) -> list[Row]:
    """Each row with its `completion` (the serialized text); a question's repeated completions are kept once, the
    first (so equal texts from two topologies, or two responses, do not weigh twice)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        completion = serialize(task, row["text"] or "")
        if completion and (row["id"], completion) not in seen:
            seen.add((row["id"], completion))
            out.append({**row, "completion": completion})
    return out


def reward_filter(
    rows: Sequence[Row], rewards: Sequence[float], min_reward: float | None, top_k: int | None
) -> list[Row]:
    """Rejection sampling by a reward model: drop rows rewarded below `min_reward`, then keep the `top_k` best
    rewarded per question (ties: the earlier row), whatever their topology. Rows keep their `reward`."""
    scored = [{**row, "reward": float(r)} for row, r in zip(rows, rewards, strict=True)]
    if min_reward is not None:
        scored = [row for row in scored if row["reward"] >= min_reward]
    if top_k is None:
        return scored
    by_question: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(scored):
        by_question[row["id"]].append(i)
    keep = {i for idx in by_question.values() for i in sorted(idx, key=lambda i: -scored[i]["reward"])[:top_k]}
    return [row for i, row in enumerate(scored) if i in keep]


def problem_of(row: Row) -> Problem:
    return Problem(id=row["id"], question=row["question"], answer=str(row["reference"]), level=row.get("level"))


def tuning_set(
    task: Task,
    rows: Sequence[Row],
    filters: TuningFilters,
    reward: Callable[[list[Row]], list[float]] | None = None,
) -> tuple[list[Row], list[dict[str, Any]]]:
    """The SFT records (`prompt` as the task writes it, `completion`, and where each came from) and the report of
    every stage's input and output size. `reward(rows)` scores serialized rows (needed by min_reward or top_k)."""
    report: list[dict[str, Any]] = []

    def stage(name: str, before: Sequence[Row], after: list[Row]) -> list[Row]:
        report.append({"stage": name, "in": len(before), "out": len(after),
                       "questions_out": len({r["id"] for r in after})})  # fmt: skip
        return after

    kept = stage("balanced", rows, balanced_sample(rows, filters.segments, filters.per_segment, filters.seed))
    kept = stage("hard_label", kept, hard_filter(kept))
    kept = stage("serialize_unique", kept, serialize_rows(task, kept))
    if filters.min_reward is not None or filters.top_k is not None:
        if reward is None:
            raise ValueError("filters.min_reward / filters.top_k need a reward model (trm)")
        kept = stage("reward", kept, reward_filter(kept, reward(kept), filters.min_reward, filters.top_k))
    records = [
        {"prompt": task.format_prompt(problem_of(r)), "completion": r["completion"], "id": r["id"],
         "topology": r["variant"], "segment": r["segment"]}
        for r in kept
    ]  # fmt: skip
    return records, report

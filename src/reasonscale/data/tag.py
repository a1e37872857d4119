"""TAG, topological annotation generation (SOLAR): label every response and every question x topology, rank the
topologies per question, segment questions by difficulty, and export the annotated data set.

A row is one response: `id`, `question`, `level`, `reference`, `topology` (the strategy's name), `variant` (its
label, which tells apart configured depth / children / neighbours variants), `settings` (JSON), `response` (its
index), `text`, `answer`, `hard_label` (0/1, graded) and `usage` (its compute). `annotate` adds `topo_label` (the
fraction of the question x variant's responses that are right, SOLAR eq. 2) and `segment`.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from pydantic import Field, model_validator

from reasonscale.config import Section
from reasonscale.summary import mean_se

SEGMENTS = ("easy", "medium", "hard")


class SegmentConfig(Section):
    """A question is hard when every topology's topo label is below `hard_below` (SOLAR's example: 0.3), easy when
    every one is at least `easy_from`, medium otherwise."""

    hard_below: float = Field(0.3, ge=0, le=1)
    easy_from: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentConfig:
        if self.easy_from < self.hard_below:
            raise ValueError(f"easy_from ({self.easy_from}) is below hard_below ({self.hard_below})")
        return self


def topo_labels(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per question id, per variant: the fraction of its responses that are right (SOLAR eq. 2)."""
    labels: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        labels[row["id"]][row["variant"]].append(row["hard_label"])
    return {q: {v: mean(hard) for v, hard in by.items()} for q, by in labels.items()}


def winners(scores: dict[str, float]) -> list[str]:
    """The variants with the best topo label on one question (all of them on a tie)."""
    best = max(scores.values())
    return [v for v, s in scores.items() if s == best]


def win_rates(labels: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per variant, the probability that it is the best on a question; a tie of k variants gives each 1/k."""
    wins: dict[str, float] = defaultdict(float)
    variants = list(dict.fromkeys(v for scores in labels.values() for v in scores))
    for scores in labels.values():
        top = winners(scores)
        for v in top:
            wins[v] += 1 / len(top)
    return {v: wins[v] / len(labels) for v in variants}


def segment(scores: dict[str, float], cfg: SegmentConfig) -> str:
    if max(scores.values()) < cfg.hard_below:
        return "hard"
    return "easy" if min(scores.values()) >= cfg.easy_from else "medium"


def annotate(rows: Sequence[dict[str, Any]], cfg: SegmentConfig) -> list[dict[str, Any]]:
    """The rows with their question x variant's `topo_label` and their question's `segment`."""
    labels = topo_labels(rows)
    segments = {q: segment(scores, cfg) for q, scores in labels.items()}
    return [{**row, "topo_label": labels[row["id"]][row["variant"]], "segment": segments[row["id"]]} for row in rows]


def summarize_tag(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: accuracy overall, per level and per segment, mean compute per response and win rate; the
    segments per level; and the headroom of picking the best topology per question over the best single one."""
    labels = topo_labels(rows)
    questions = {r["id"]: r for r in rows}
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    rates = win_rates(labels)
    per_variant = {}
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        per_variant[v] = {
            "topology": mine[0]["topology"],
            "settings": json.loads(mine[0]["settings"]),
            "accuracy": mean(r["hard_label"] for r in mine),
            "accuracy_se": mean_se([scores[v] for scores in labels.values() if v in scores])[1],
            "accuracy_by_level": _by(mine, "level"),
            "accuracy_by_segment": _by(mine, "segment"),
            "win_rate": rates[v],
            "sole_wins": sum(winners(s) == [v] for s in labels.values()),
            "generated_tokens": mean(r["usage"]["generated_tokens"] for r in mine),
            "flops": mean(r["usage"]["flops"] for r in mine),
        }
    oracle = mean(max(s.values()) for s in labels.values())
    best = max(variants, key=lambda v: per_variant[v]["accuracy"])
    for v in variants:  # paired over questions: the same questions answered by both
        gaps = [scores[v] - scores[best] for scores in labels.values() if v in scores and best in scores]
        per_variant[v] |= dict(zip(("vs_best", "vs_best_se"), mean_se(gaps)))
    by_level: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEGMENTS, 0))
    for q in questions.values():
        by_level[str(q["level"])][q["segment"]] += 1
    return {
        "questions": len(labels),
        "responses_per_question_variant": max(len([r for r in rows if r["id"] == q]) for q in labels) // len(variants),
        "variants": per_variant,
        "segments": {s: sum(q["segment"] == s for q in questions.values()) for s in SEGMENTS},
        "segments_by_level": dict(by_level),
        "best_single": {"variant": best, "accuracy": per_variant[best]["accuracy"]},
        "oracle_topology_accuracy": oracle,
        "headroom": oracle - per_variant[best]["accuracy"],
        "headroom_se": mean_se([max(s.values()) - s.get(best, 0.0) for s in labels.values()])[1],
    }



def _by(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    groups: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        groups[str(r[key])].append(r["hard_label"])
    return {k: mean(v) for k, v in sorted(groups.items())}


def write_jsonl(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    from reasonscale import atomic

    atomic.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def to_dataset(rows: Sequence[dict[str, Any]]):
    """The annotated rows as a Hugging Face `datasets.Dataset` (one row per response)."""
    from datasets import Dataset

    return Dataset.from_list([dict(r) for r in rows])


def save_dataset(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Save the data set with `save_to_disk`, replacing an older one only once the new one is written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    to_dataset(rows).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)

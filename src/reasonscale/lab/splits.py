"""Train / val / test splits of lab problems, kept disjoint, as task problems or JSONL.

Each split draws from its own key space ("test/...", "val/...", "train/..."), and overlap is ruled out by text
as well: val and test are fixed pools of POOL_SIZE distinct problems per level (val excludes test), and every
train problem whose text is in either pool is skipped. A config seed picks a subset of a pool, so any seed's
evaluation problems stay out of training.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from pathlib import Path

from reasonscale.lab.generator import LEVELS, generate
from reasonscale.lab.graph import Graph
from reasonscale.types import Problem

POOL_SIZE = 500
EVAL_SPLITS = ("test", "val")


@cache
def eval_pool(split: str, level: int) -> tuple[Graph, ...]:
    """The fixed pool of distinct evaluation problems of one split and level."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split '{split}': use {' or '.join(EVAL_SPLITS)}")
    taken = {g.question for g in eval_pool("test", level)} if split == "val" else set()
    pool: list[Graph] = []
    index = 0
    while len(pool) < POOL_SIZE:
        graph = generate(level, f"{split}/{index}")
        index += 1
        if graph.question not in taken:
            taken.add(graph.question)
            pool.append(graph)
    return tuple(pool)


@lru_cache(maxsize=1)
def held_out_questions() -> frozenset[str]:
    """The text of every val and test problem: training never sees them."""
    return frozenset(g.question for split in EVAL_SPLITS for level in LEVELS for g in eval_pool(split, level))


def train_problem(level: int, key: str) -> Graph | None:
    """The training problem `key` names, or None when it coincides with an evaluation problem."""
    graph = generate(level, f"train/{key}")
    return None if graph.question in held_out_questions() else graph


def split_graphs(split: str, level: int, count: int, seed: int = 0) -> list[Graph]:
    """`count` problems of one split and level; for val and test, a seeded subset of the pool (nested in count)."""
    if split == "train":
        graphs = (train_problem(level, f"{seed}/{i}") for i in itertools.count())
        return list(itertools.islice((g for g in graphs if g is not None), count))
    if count > POOL_SIZE:
        raise ValueError(f"at most {POOL_SIZE} {split} problems per level, not {count}")
    order = random.Random(f"pick/{seed}").sample(range(POOL_SIZE), POOL_SIZE)
    pool = eval_pool(split, level)
    return [pool[i] for i in order[:count]]


def to_problem(graph: Graph, split: str, level: int) -> Problem:
    """A task problem, its id named by its text; `meta` holds the graph and the canonical solution."""
    digest = hashlib.sha256(graph.question.encode()).hexdigest()[:10]
    return Problem(
        id=f"lab-{split}-L{level}-{digest}",
        question=graph.question,
        answer=str(graph.answer),
        level=level,
        meta={"graph": graph.to_dict(), "solution": graph.solution},
    )


def load_problems(split: str, levels: list[int], per_level: int, seed: int = 0) -> list[Problem]:
    """`per_level` problems of each level, level by level."""
    return [
        to_problem(graph, split, level) for level in levels for graph in split_graphs(split, level, per_level, seed)
    ]


def export_jsonl(problems: list[Problem], path: str | Path) -> Path:
    """Write problems as JSONL rows of id, question, answer, level, solution and graph."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for p in problems:
            row = {"id": p.id, "question": p.question, "answer": p.answer, "level": p.level, **p.meta}
            fh.write(json.dumps(row) + "\n")
    return path


class TrainStream:
    """An endless, resumable stream of training batches, each of one level drawn by weight.

    Batch i is always the same (so a run that resumes at `position` continues the exact stream), and one level
    per batch keeps padding low.
    """

    def __init__(self, level_weights: Mapping[int, float], batch_size: int, seed: int = 0, position: int = 0):
        self.levels = sorted(level_weights)
        self.weights = [level_weights[level] for level in self.levels]
        self.batch_size = batch_size
        self.seed = seed
        self.position = position

    def __iter__(self) -> Iterator[list[Graph]]:
        return self

    def __next__(self) -> list[Graph]:
        index = self.position
        self.position += 1
        level = random.Random(f"mix/{self.seed}/{index}").choices(self.levels, self.weights)[0]
        keys = (f"{self.seed}/b{index}/{j}" for j in itertools.count())
        graphs = (train_problem(level, key) for key in keys)
        return list(itertools.islice((g for g in graphs if g is not None), self.batch_size))

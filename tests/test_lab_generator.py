"""Lab problem generation: determinism, level knobs, text round trips and disjoint splits."""

from __future__ import annotations

import json
import re

import pytest

from reasonscale.config import LabTaskConfig, TaskConfig
from reasonscale.lab import splits
from reasonscale.lab.generator import LEVELS, generate
from reasonscale.lab.graph import Graph
from reasonscale.lab.splits import (
    POOL_SIZE,
    TrainStream,
    eval_pool,
    export_jsonl,
    load_problems,
    split_graphs,
    train_problem,
)
from reasonscale.tasks.lab import LabTask


def take(stream: TrainStream, count: int = 5) -> list[list[Graph]]:
    return [next(stream) for _ in range(count)]


def test_generation_is_deterministic_by_key():
    for level in LEVELS:
        assert generate(level, "k/1") == generate(level, "k/1")
        assert generate(level, "k/1") != generate(level, "k/2")
    assert load_problems("test", [1, 3], 5, seed=2) == load_problems("test", [1, 3], 5, seed=2)


def test_train_stream_is_deterministic_and_resumable():
    first = take(TrainStream({1: 1.0, 5: 2.0}, 4, seed=3), 10)
    assert first == take(TrainStream({1: 1.0, 5: 2.0}, 4, seed=3), 10)
    assert first != take(TrainStream({1: 1.0, 5: 2.0}, 4, seed=4), 10)
    assert take(TrainStream({1: 1.0, 5: 2.0}, 4, seed=3, position=6), 4) == first[6:]
    for batch in first:
        assert len(batch) == 4 and len({len(g.solution_steps) for g in batch}) == 1
    assert {len(batch[0].solution_steps) for batch in first} == {3, 7}


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_levels_follow_their_knobs(level):
    spec = LEVELS[level]
    for i in range(50):
        graph = generate(level, f"knobs/{i}")
        needed = [n for n in graph.nodes if n.name in graph.needed]
        assert len(needed) == spec.ops and len(graph.solution_steps) == spec.ops + 1
        assert len(graph.nodes) - len(needed) == spec.distractors
        numbers = [int(x) for x in re.findall(r"\d+", graph.question + graph.solution)]
        assert all(0 <= x <= spec.max_value for x in numbers)
        inputs = [len(n.inputs) for n in needed]
        assert (inputs.count(0), inputs.count(2)) == (spec.branches, spec.branches - 1)
        assert [n.name for n in graph.nodes] == list("abcdefghijklmnopqrstuvwxyz"[: len(graph.nodes)])
        assert graph.solution_steps[-1] == f"answer={graph.answer}"


def test_text_and_dict_round_trips():
    for level in LEVELS:
        graph = generate(level, "round-trip")
        assert Graph.from_question(graph.question) == graph
        assert Graph.from_dict(json.loads(json.dumps(graph.to_dict()))) == graph
    with pytest.raises(ValueError):
        Graph.from_question("a=1+1, b=c+2. Find b.")
    with pytest.raises(ValueError):
        Graph.from_question("a=1-1, b=5//a. Find b.")
    with pytest.raises(ValueError):
        Graph.from_question("a=7, b=a+2. Find b.")


def test_splits_are_disjoint():
    test = {g.question for level in LEVELS for g in eval_pool("test", level)}
    val = {g.question for level in LEVELS for g in eval_pool("val", level)}
    assert len(test) == len(val) == POOL_SIZE * len(LEVELS)
    assert not test & val
    stream = TrainStream({level: 1.0 for level in LEVELS}, 100)
    train = {g.question for _ in range(20) for g in next(stream)}
    assert not train & (test | val)


def test_train_skips_held_out_problems(monkeypatch):
    clash = generate(2, "train/0/7").question
    monkeypatch.setattr(splits, "held_out_questions", lambda: frozenset({clash}))
    assert train_problem(2, "0/7") is None
    assert train_problem(2, "0/8") is not None
    assert clash not in {g.question for g in split_graphs("train", 2, 20)}


def test_seeded_subsets_are_nested_and_from_the_pool():
    pool = {g.question for g in eval_pool("test", 3)}
    small, large = split_graphs("test", 3, 10, seed=1), split_graphs("test", 3, 30, seed=1)
    assert large[:10] == small
    assert {g.question for g in large} <= pool
    assert split_graphs("test", 3, 10, seed=2) != small
    with pytest.raises(ValueError):
        split_graphs("test", 3, POOL_SIZE + 1)


def test_export_jsonl(tmp_path):
    problems = load_problems("val", [1, 4], 3)
    rows = [json.loads(line) for line in export_jsonl(problems, tmp_path / "lab.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in problems]
    for row in rows:
        graph = Graph.from_dict(row["graph"])
        assert (row["question"], row["answer"], row["solution"]) == (graph.question, str(graph.answer), graph.solution)
        assert row["level"] in (1, 4)


def test_lab_task_interface():
    task = LabTask(TaskConfig(name="lab", limit=7, lab=LabTaskConfig(levels=[1, 2], per_level=5)))
    problems = task.load()
    assert len(problems) == 7 and [p.level for p in problems] == [1] * 5 + [2] * 2
    problem = problems[0]
    solution = problem.meta["solution"]
    assert task.format_prompt(problem) == problem.question + "\n"
    assert task.split_steps(solution + "\n") == solution.split("\n")
    assert task.extract_answer(solution) == problem.answer
    assert task.extract_answer("b=1+2=3\nThe answer is 03.") == "3"
    assert task.extract_answer("no answer") is None
    assert task.equivalent([("12", "12"), ("12", "012"), ("12", "13"), ("12", "x"), ("1", "9" * 5000)]) == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert task.grade([problem, problem], [problem.answer, None]) == [True, False]
    assert task.oracle(problem, task.split_steps(solution)).final_correct
    few = LabTask(TaskConfig(name="lab", few_shot=2, lab=LabTaskConfig(levels=[3])))
    prompt = few.format_prompt(problem)
    assert prompt.endswith("\n\n" + problem.question + "\n") and prompt.count("answer=") == 2

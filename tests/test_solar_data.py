"""SOLAR tuning data: balanced sampling, each filter and its reported sizes, and the serialization round trip."""

from __future__ import annotations

import pytest

from reasonscale.config import LabTaskConfig, TaskConfig
from reasonscale.data.solar import (
    TuningFilters,
    balanced_sample,
    hard_filter,
    reward_filter,
    serialize,
    serialize_rows,
    tuning_set,
)
from reasonscale.data.tag import SegmentConfig, annotate
from reasonscale.lab.generator import generate
from reasonscale.tasks.lab import LabTask

TASK = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[1, 5], per_level=1)))


def wrong(solution: str) -> str:
    lines = solution.split("\n")
    return "\n".join([lines[0] + "1", *lines[1:-1], "answer=0"])


def hand_made_annotation() -> list[dict]:
    """Six questions: q1, q2 easy, q3, q4 medium, q5, q6 hard; two topologies x two responses each."""
    hard = {  # question -> topology -> hard labels of its responses
        "q1": {"cot": [1, 1], "got": [1, 1]},
        "q2": {"cot": [1, 1], "got": [1, 1]},
        "q3": {"cot": [1, 0], "got": [0, 0]},
        "q4": {"cot": [0, 0], "got": [1, 1]},
        "q5": {"cot": [0, 0], "got": [0, 0]},
        "q6": {"cot": [0, 0], "got": [0, 0]},
    }
    rows = []
    for q, by in hard.items():
        graph = generate(5, q)
        for t, labels in by.items():
            for i, h in enumerate(labels):
                text = graph.solution if h else wrong(graph.solution)
                if t == "got" and h:  # a GoT merge: a repeated step and a blank line before the answer
                    steps = graph.solution_steps
                    text = "\n".join([steps[0], *steps[:-1], "", steps[-1], "extra"])
                rows.append({
                    "id": q, "question": graph.question, "level": 5, "reference": str(graph.answer),
                    "topology": t, "variant": t, "settings": "{}", "response": i, "text": text,
                    "answer": None, "hard_label": h, "usage": {},
                })  # fmt: skip
    return annotate(rows, SegmentConfig(hard_below=0.3, easy_from=0.7))


def test_segments_of_the_hand_made_annotation():
    assert {r["id"]: r["segment"] for r in hand_made_annotation()} == {
        "q1": "easy", "q2": "easy", "q3": "medium", "q4": "medium", "q5": "hard", "q6": "hard",
    }  # fmt: skip


def test_balanced_sample_takes_as_many_questions_from_each_segment():
    rows = hand_made_annotation()
    one = balanced_sample(rows, ["easy", "medium", "hard"], 1, seed=0)
    segments = {r["id"]: r["segment"] for r in one}
    assert sorted(segments.values()) == ["easy", "hard", "medium"] and len(one) == 3 * 4
    everything = balanced_sample(rows, ["easy", "medium", "hard"], None, 0)
    assert {r["id"] for r in everything} == {f"q{i}" for i in range(1, 7)}
    picks = {frozenset(r["id"] for r in balanced_sample(rows, ["easy"], 1, seed)) for seed in range(20)}
    assert picks == {frozenset({"q1"}), frozenset({"q2"})}  # seeded draws, both possible
    assert {r["segment"] for r in balanced_sample(rows, ["medium"], 5, 0)} == {"medium"}
    with pytest.raises(ValueError, match="segments: unknown segment tough"):
        balanced_sample(rows, ["tough"], 1, 0)


def test_hard_filter_keeps_only_right_responses():
    rows = hand_made_annotation()
    kept = hard_filter(rows)
    assert len(kept) == 11 and all(r["hard_label"] == 1 for r in kept)
    assert {r["id"] for r in kept} == {"q1", "q2", "q3", "q4"}


def test_serialization_round_trips_into_steps_the_task_grades():
    graph = generate(5, "q1")
    steps = graph.solution_steps
    merged = "\n".join([steps[0], *steps[:-1], "", steps[-1], "trailing text"])
    text = serialize(TASK, merged)
    assert text == graph.solution
    parsed = TASK.split_steps(text)  # what the tuned model writes reads back as the same steps
    assert parsed == steps and TASK.join_steps(parsed) == text
    assert TASK.oracle(problem(graph), parsed).final_correct
    assert TASK.grade([problem(graph)], [TASK.extract_answer(text)]) == [True]


def problem(graph):
    from reasonscale.types import Problem

    return Problem("p", graph.question, str(graph.answer), 5)


def test_serialize_rows_drops_a_questions_repeated_texts():
    rows = hard_filter(hand_made_annotation())
    out = serialize_rows(TASK, rows)
    assert len(out) == 4  # q1, q2: their cot and merged got texts serialize alike; q3, q4: one each
    assert {r["id"] for r in out} == {"q1", "q2", "q3", "q4"}
    assert all(TASK.extract_answer(r["completion"]) == r["reference"] for r in out)


def test_reward_filter_by_threshold_and_top_k_mixes_topologies():
    rows = [{"id": q, "variant": t} for q in ("a", "b") for t in ("cot", "tot", "got")]
    rewards = [0.9, 0.2, 0.5, 0.1, 0.8, 0.7]
    assert [(r["id"], r["variant"]) for r in reward_filter(rows, rewards, 0.5, None)] == [
        ("a", "cot"), ("a", "got"), ("b", "tot"), ("b", "got")]  # fmt: skip
    top = reward_filter(rows, rewards, None, 1)
    assert [(r["id"], r["variant"], r["reward"]) for r in top] == [("a", "cot", 0.9), ("b", "tot", 0.8)]
    assert len(reward_filter(rows, rewards, 0.85, 2)) == 1
    with pytest.raises(ValueError):
        reward_filter(rows, rewards[:2], None, None)


def test_tuning_set_reports_every_stage():
    rows = hand_made_annotation()
    records, report = tuning_set(TASK, rows, TuningFilters(per_segment=2, min_reward=0.8, top_k=1), reward=lambda rs: [
        1.0 if r["topology"] == "got" else 0.5 for r in rs])  # fmt: skip
    assert [(s["stage"], s["in"], s["out"]) for s in report] == [
        ("balanced", 24, 24), ("hard_label", 24, 11), ("serialize_unique", 11, 4), ("reward", 4, 1)]  # fmt: skip
    assert [(r["id"], r["topology"], r["segment"]) for r in records] == [("q4", "got", "medium")]
    assert all(r["prompt"] == TASK.format_prompt(problem(generate(5, r["id"]))) for r in records)
    with pytest.raises(ValueError, match="reward model"):
        tuning_set(TASK, rows, TuningFilters(min_reward=0.5))

"""Weak-to-strong data stages on hand-made answers: consistency by grader equivalence, demonstrations, confidence
with ties, the tau and 0.8 rules, pairs per question, strong-only pairs, label accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reasonscale.config import TaskConfig
from reasonscale.data.weak_to_strong import (
    PairSettings,
    answers_agree,
    confidence_filter,
    consistent,
    demonstrations,
    describe,
    icl_prompt,
    preference_pairs,
    vote,
)
from reasonscale.tasks.base import Task
from reasonscale.tasks.jsonl import JsonlTask
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem


class Toy(Task):
    """Answers after `ANS:`; the grader (one direction only) knows that 1/2 is 0.5, so strings differ but agree."""

    name = "toy"

    def load(self) -> list[Problem]:
        return []

    def format_prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def extract_answer(self, solution: str) -> str | None:
        return solution.split("ANS:")[1].strip() if "ANS:" in solution else None

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return [a == b or (a, b) == ("0.5", "1/2") for a, b in pairs]


def gen(id_: str, answer: str | None, question: str | None = None) -> dict:
    text = f"work for {id_}" + (f" ANS: {answer}" if answer is not None else "")
    return {"id": id_, "question": question or f"q{id_}", "response": text}


def test_consistency_uses_grader_equivalence_not_strings() -> None:
    task = Toy()
    weak = [gen("1", "1/2"), gen("2", "3"), gen("3", "7"), gen("4", None), gen("5", "2")]
    icl = [gen("1", "0.5"), gen("2", " 3 "), gen("3", "8"), gen("4", None)]  # 5 has no ICL answer at all
    assert consistent(task, weak, icl) == {"1", "2"}
    assert answers_agree(task, [("0.5", "1/2"), ("1/2", "0.5"), (None, None), ("a", "b")]) == [True, True, False, False]


def test_consistency_with_real_graders() -> None:
    numeric = JsonlTask(TaskConfig(name="jsonl", grader="numeric"))
    weak = [{"id": "a", "question": "x", "response": "so 1,000 in all. The answer is 1,000."},
            {"id": "b", "question": "y", "response": "The answer is 3.0."}]
    icl = [{"id": "a", "question": "x", "response": "The answer is 1000."},
           {"id": "b", "question": "y", "response": "The answer is 3.01."}]
    assert consistent(numeric, weak, icl) == {"a"}
    lab = LabTask(TaskConfig(name="lab"))
    assert answers_agree(lab, [("007", "7"), ("7", "8")]) == [True, False]
    math = JsonlTask(TaskConfig(name="jsonl", grader="math"))  # Math-Verify, in worker processes
    pairs = [("\\frac{1}{2}", "0.5"), ("\\dfrac{5}{9}", "\\frac 59"), ("(1,2]", "(1,2)"), (None, "1")]
    assert answers_agree(math, pairs) == [True, True, False, False]


def test_demonstrations_never_include_the_question() -> None:
    pool = [gen(str(i), str(i)) for i in range(6)] + [gen("dup", "9", question="q3")]  # same text, other id
    for pid in map(str, range(6)):
        for seed in range(5):
            demos = demonstrations(pool, pid, f"q{pid}", 4, seed)
            assert len(demos) == 4 and len({d["id"] for d in demos}) == 4
            assert all(d["id"] != pid and d["question"] != f"q{pid}" for d in demos)
    assert demonstrations(pool, "1", "q1", 4, 0) == demonstrations(pool, "1", "q1", 4, 0)  # seeded
    with pytest.raises(ValueError, match="only 6"):
        demonstrations(pool, "1", "q1", 7, 0)


def test_icl_prompt_puts_demonstrations_before_the_question() -> None:
    lab = LabTask(TaskConfig(name="lab"))
    demos = [{"id": "d", "question": "a = 1. b = a + 2. What is b?", "response": "b = 1 + 2 = 3\nAnswer: 3"}]
    problem = Problem("p", "a = 2. What is a?", "2")
    assert icl_prompt(lab, problem, demos) == demos[0]["question"] + "\n" + demos[0]["response"] + "\n\n" + \
        lab.format_prompt(problem)
    jsonl = JsonlTask(TaskConfig(name="jsonl", grader="numeric"))
    text = icl_prompt(jsonl, Problem("p", "Two plus two?", "4"), [{"id": "d", "question": "One?", "response": "1."}])
    assert text.index("Question: One?\nAnswer: 1.") < text.index("Question: Two plus two?\nAnswer:")
    assert jsonl.examples == []  # the task itself is unchanged


def test_confidence_is_the_majority_share_and_ties_go_to_the_first() -> None:
    task = Toy()
    v = vote(task, ["1/2", "0.5", "3", None, "0.5"])  # 1/2 and 0.5 are one answer: 3 of 5 samples
    assert v.confidence == pytest.approx(0.6) and v.groups[0] == v.groups[1] == v.groups[4] == v.majority
    tie = vote(task, ["4", "5", "5", "4"])
    assert tie.confidence == 0.5 and tie.groups[0] == tie.majority  # "4" came first
    assert vote(task, [None, None]).majority is None and vote(task, [None, None]).confidence == 0.0


def samples(*answers: str | None) -> list[str]:
    return [f"strong {i}" + (f" ANS: {a}" if a is not None else "") for i, a in enumerate(answers)]


def test_weak_agrees_with_majority_chosen_against_a_non_majority_sample() -> None:
    task, weak = Toy(), gen("q", "1/2")
    strong = samples("0.5", "0.5", "0.5", "2", None)  # confidence 0.6: exactly tau
    pairs = preference_pairs(task, weak, strong, "P", PairSettings())
    assert len(pairs) == 1 and pairs[0]["chosen"] == weak["response"]
    assert pairs[0]["rejected"] in (strong[3], strong[4]) and pairs[0]["prompt"] == "P"
    assert pairs[0]["confidence"] == pytest.approx(0.6)
    # up to 3 pairs: only two non-majority samples exist, each used once
    three = preference_pairs(task, weak, strong, "P", PairSettings(pairs_per_question=3))
    assert sorted(p["rejected"] for p in three) == sorted([strong[3], strong[4]])
    # unanimous: no non-majority sample, no pair
    assert preference_pairs(task, weak, samples("0.5", "0.5"), "P", PairSettings()) == []


def test_below_tau_no_pair() -> None:
    task, weak = Toy(), gen("q", "1")
    strong = samples("1", "1", "1", "2", "3", "4", "5", "6", "7", "8")  # 0.3 < 0.6
    assert preference_pairs(task, weak, strong, "P", PairSettings()) == []
    assert preference_pairs(task, weak, strong, "P", PairSettings(tau=0.3))  # the threshold is the setting
    tie = samples("1", "1", "2", "2")  # a tie is at most 0.5
    assert preference_pairs(task, weak, tie, "P", PairSettings()) == []


def test_weak_against_majority_rejected_only_from_point_eight() -> None:
    task, weak = Toy(), gen("q", "9")
    at_07 = samples(*["4"] * 7, "9", "9", "5")
    assert preference_pairs(task, weak, at_07, "P", PairSettings()) == []  # 0.7: between tau and 0.8
    at_08 = samples(*["4"] * 8, "9", None)
    pairs = preference_pairs(task, weak, at_08, "P", PairSettings(pairs_per_question=3))
    assert len(pairs) == 3 and all(p["rejected"] == weak["response"] for p in pairs)
    assert len({p["chosen"] for p in pairs}) == 3 and all(p["chosen"] in at_08[:8] for p in pairs)
    no_answer = {**weak, "response": "I do not know"}  # a weak response without an answer is never the majority
    assert preference_pairs(task, no_answer, at_08, "P", PairSettings())[0]["rejected"] == "I do not know"


def test_strong_only_pairs() -> None:
    task, weak = Toy(), gen("q", "9")
    strong = samples("4", "4", "4", "4", "2", "3")
    pairs = preference_pairs(task, weak, strong, "P", PairSettings(mode="strong", pairs_per_question=3))
    assert len(pairs) == 2  # only two non-majority samples
    assert all(p["chosen"] in strong[:4] and p["rejected"] in strong[4:] for p in pairs)
    assert all(weak["response"] not in (p["chosen"], p["rejected"]) for p in pairs)


def test_pairs_are_seeded_per_question() -> None:
    task, weak = Toy(), gen("q", "4")
    strong = samples("4", "4", "4", "4", "4", "4", "1", "2", "3", "5")
    draws = {preference_pairs(task, weak, strong, "P", PairSettings(seed=s))[0]["rejected"] for s in range(20)}
    assert len(draws) > 1  # random among the non-majority samples
    assert preference_pairs(task, weak, strong, "P", PairSettings(seed=3)) == \
        preference_pairs(task, weak, strong, "P", PairSettings(seed=3))


def test_label_accuracy_against_gold() -> None:
    task = Toy()
    problems = {"1": Problem("1", "q1", "0.5"), "2": Problem("2", "q2", "3"), "3": Problem("3", "q3", "")}
    rows = [{"id": "1", "completion": "ANS: 1/2"}, {"id": "2", "completion": "ANS: 4"}]
    # the grade asks equivalent(gold, prediction): ("0.5", "1/2") is equal in that direction
    assert describe(task, problems, rows, ["completion"]) == {"size": 2, "questions": 2, "accuracy_completion": 0.5}
    pairs = [{"id": "2", "chosen": "ANS: 3", "rejected": "ANS: 4"}]
    assert describe(task, problems, pairs, ["chosen", "rejected"])["accuracy_chosen"] == 1.0
    no_gold = describe(task, problems, [{"id": "3", "completion": "ANS: 1"}], ["completion"])
    assert no_gold["accuracy_completion"] is None


def test_confidence_filter_measures_the_majority_answers_kept_and_dropped() -> None:
    task = Toy()
    problems = [Problem("a", "qa", "1"), Problem("b", "qb", "2"), Problem("c", "qc", "3")]
    strong = [samples("1", "1", "1", "2"), samples("5", "5", "5", "2"), samples("3", "4", None, None)]
    stats = confidence_filter(task, problems, strong, 0.6)
    assert stats == {"confident_questions": 2, "majority_accuracy_kept": 0.5, "majority_accuracy_dropped": 1.0}
    unlabelled = [Problem("a", "qa", "")]
    assert confidence_filter(task, unlabelled, strong[:1], 0.6)["majority_accuracy_kept"] is None

"""Verifier metrics on hand-made sample pools (pooled vs within-problem AUC, selection accuracy), standard errors
of accuracies, the mean over seeds, and the ± in tables."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from reasonscale.config import RunConfig
from reasonscale.report import markdown_table
from reasonscale.summary import COST_FIELDS, mean_over_seeds, mean_se, summarize
from reasonscale.tables import results_table
from reasonscale.verifiers.metrics import selection, solution_auc, step_auc, verifier_metrics, within_problem_auc


def candidate(correct: bool, score: float, answer: str | None = None, steps: int = 2) -> dict:
    """A sample whose `v` step scores all equal `score`; the oracle marks its last step wrong when it is wrong."""
    oracle = [1.0] * (steps - 1) + [1.0 if correct else 0.0]
    answer = answer if answer is not None else ("right" if correct else "wrong")
    return {"answer": answer, "correct": float(correct), "step_scores": {"oracle": oracle, "v": [score] * steps}}


def record(pid: str, level: int, candidates: list[dict], outcomes: list[dict] | None = None) -> dict:
    return {"id": pid, "level": level, "candidates": candidates, "outcomes": outcomes or []}


def test_a_verifier_that_knows_only_difficulty_has_high_pooled_but_chance_within_problem_auc():
    # easy problems: 9 of 10 right, every sample scored 0.9; hard ones: 1 of 10 right, every sample scored 0.1
    records = [record(f"e{i}", 1, [candidate(k < 9, 0.9) for k in range(10)]) for i in range(3)]
    records += [record(f"h{i}", 2, [candidate(k < 1, 0.1) for k in range(10)]) for i in range(3)]
    # right above wrong: 27 x 27 pairs, and 2 x 27 x 3 tied pairs count half, of 30 x 30
    assert solution_auc(records, "v") == pytest.approx(0.9)
    assert step_auc(records, "v") > 0.75
    within = within_problem_auc(records, "v")
    assert within == {"mean": pytest.approx(0.5), "se": pytest.approx(0.0), "problems": 6}


def test_within_problem_auc_ranks_each_pool_and_skips_one_class_pools():
    good = record("a", 1, [candidate(True, 0.8), candidate(False, 0.2), candidate(False, 0.3)])
    bad = record("b", 1, [candidate(True, 0.1), candidate(False, 0.9)])
    half = record("c", 1, [candidate(True, 0.5), candidate(False, 0.4), candidate(False, 0.6)])
    alike = record("d", 1, [candidate(True, 0.1), candidate(True, 0.9)])  # no wrong sample: left out
    within = within_problem_auc([good, bad, half, alike], "v")
    assert within["problems"] == 3 and within["mean"] == pytest.approx(0.5)
    assert within["se"] == pytest.approx(math.sqrt(((0.5**2) * 2 + 0) / 3 / 3))
    # two seeds of one problem are one pool: right 0.8, 0.5 against wrong 0.2, 0.6 -> 3 of 4 pairs
    seeds = [record("a", 1, [candidate(True, 0.8), candidate(False, 0.2)]),
             record("a", 1, [candidate(True, 0.5), candidate(False, 0.6)])]
    assert within_problem_auc(seeds, "v") == {"mean": pytest.approx(3 / 4), "se": 0.0, "problems": 1}


def test_selection_reads_disjoint_groups_of_each_pool():
    pool = [
        # group 1: the verifier's top sample is wrong; the weighted vote (0.7+0.6 for "right") and majority win
        candidate(False, 0.9, "x"), candidate(True, 0.7), candidate(True, 0.6), candidate(False, 0.1, "y"),
        # group 2: top sample right, weighted vote right (0.8 vs 0.2+0.3), majority wrong ("x" twice)
        candidate(True, 0.8), candidate(False, 0.2, "x"), candidate(False, 0.3, "x"), candidate(False, 0.1, "z"),
    ]
    hopeless = [candidate(False, 0.5, str(k)) for k in range(8)]
    found = selection([record("p", 1, pool), record("q", 1, hopeless)], "v", [4, 8, 16])
    assert set(found) == {"4", "8"}  # no pool holds 16 samples
    at4 = found["4"]
    assert at4["problems"] == 2
    assert at4["best_of_n"]["accuracy"] == pytest.approx((0.5 + 0) / 2)
    assert at4["weighted"]["accuracy"] == pytest.approx((1.0 + 0) / 2)
    assert at4["majority"]["accuracy"] == pytest.approx((0.5 + 0) / 2)
    assert at4["oracle_best"] == {"accuracy": pytest.approx(0.5), "se": pytest.approx(math.sqrt(0.25 / 2))}
    assert at4["weighted_minus_majority"]["mean"] == pytest.approx(0.25)
    at8 = found["8"]  # the whole pool: "right" weighs 0.7+0.6+0.8 against "x" 0.9+0.2+0.3
    assert at8["weighted"]["accuracy"] == pytest.approx(0.5) and at8["best_of_n"]["accuracy"] == 0.0
    assert at8["majority"]["accuracy"] == pytest.approx(0.0)  # "x" three times, "right" three times: "x" first


def test_verifier_metrics_are_given_per_level():
    records = [record("a", 1, [candidate(True, 0.9), candidate(False, 0.1)]),
               record("b", 2, [candidate(True, 0.1), candidate(False, 0.9)])]
    m = verifier_metrics(records, "v", [2])
    assert m["all"]["problems"] == 2 and set(m["by_level"]) == {"1", "2"}
    assert m["by_level"]["1"]["within_problem_auc"]["mean"] == 1.0
    assert m["by_level"]["2"]["within_problem_auc"]["mean"] == 0.0
    assert m["by_level"]["1"]["selection"]["2"]["best_of_n"]["accuracy"] == 1.0
    assert m["all"]["selection"]["2"]["best_of_n"]["accuracy"] == 0.5


def test_standard_errors_of_0_1_and_fractional_outcomes():
    assert mean_se([1, 0, 0, 1]) == (0.5, pytest.approx(math.sqrt(0.25 / 4)))
    p = 3 / 10
    assert mean_se([1.0] * 3 + [0.0] * 7) == (pytest.approx(p), pytest.approx(math.sqrt(p * (1 - p) / 10)))
    assert mean_se([0.5, 1.0, 0.0]) == (0.5, pytest.approx(math.sqrt((0 + 0.25 + 0.25) / 3 / 3)))
    assert mean_se([]) == (0.0, 0.0)


def outcome(correct: float, budget: int = 1) -> dict:
    return {"strategy": "majority", "label": "majority", "settings": {}, "budget": budget,
            "generation_budget": float(budget), "correct": correct, "generations": budget}


def run_records(correct: list[float]) -> list[dict]:
    usage = dict.fromkeys(COST_FIELDS, 1)
    return [{"id": f"p{i}", "level": 1 + i % 2, "outcomes": [outcome(c)], "usage": usage,
             "candidates": [candidate(bool(c), 0.5)]} for i, c in enumerate(correct)]


CFG = RunConfig(model={"path": "m"}, task={"name": "lab"}, strategies=[{"name": "majority", "n": 1}])
USAGE = {"model_calls": 0, "cache_hits": 0}


def test_summary_has_standard_errors_overall_and_per_level():
    summary = summarize(run_records([1, 0, 1, 1, 0, 1]), CFG, USAGE)
    assert summary["accuracy"]["majority@1"] == pytest.approx(4 / 6)
    assert summary["accuracy_se"]["majority@1"] == pytest.approx(math.sqrt(4 / 6 * 2 / 6 / 6))
    # level 1 holds problems 0, 2, 4 (1, 1, 0); level 2 problems 1, 3, 5 (0, 1, 1)
    assert summary["accuracy_se_by_level"]["1"]["majority@1"] == pytest.approx(math.sqrt(2 / 9 / 3))
    point = summary["strategies"][0]["points"][0]
    assert point["accuracy_se"] == summary["accuracy_se"]["majority@1"]


def test_two_seeds_average_per_problem_and_the_error_is_over_problems():
    first, second = run_records([1, 0, 1, 0]), run_records([1, 1, 0, 0])
    merged = mean_over_seeds([first, second])
    assert [r["outcomes"][0]["correct"] for r in merged] == [1.0, 0.5, 0.5, 0.0]
    assert [len(r["candidates"]) for r in merged] == [2] * 4 and merged[0]["usage"]["generations"] == 2
    summary = summarize(merged, CFG, USAGE)
    assert summary["accuracy"]["majority@1"] == pytest.approx(0.5)  # the mean of 0.5 and 0.5
    assert summary["accuracy_se"]["majority@1"] == pytest.approx(math.sqrt((0.25 + 0 + 0 + 0.25) / 4 / 4))
    with pytest.raises(ValueError, match="same problems"):
        mean_over_seeds([first, second[:3]])


def test_tables_print_accuracy_with_its_standard_error():
    summary = summarize(run_records([1, 0, 1, 1]), CFG, USAGE)
    se = math.sqrt(0.75 * 0.25 / 4)
    console = Console(width=200, record=True)
    console.print(results_table(summary))
    assert f"0.750 ± {se:.3f}" in console.export_text()
    assert f"| 0.750 ± {se:.3f} |" in markdown_table(summary)

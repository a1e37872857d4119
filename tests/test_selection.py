from itertools import combinations

import pytest

from reasonscale.config import StrategyConfig
from reasonscale.search.selection import best_of_n, budgets, majority_vote, pass_at_k, weighted_vote
from reasonscale.search.strategy import build_strategy


def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample():
    correct = [False, True, False, False, True, False, False, True, False, False]
    n, c = len(correct), sum(correct)
    for k in range(1, n + 1):
        subsets = list(combinations(correct, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)


def test_pass_at_k_rejects_bad_k():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_majority_vote_picks_largest_group_first_member():
    assert majority_vote([0, 1, 1, None, 2, 1]) == 1
    assert majority_vote([None, 3, None]) == 1
    assert majority_vote([None, None]) is None
    assert majority_vote([2, 3]) == 0  # tie: the earliest group
    assert majority_vote([3, 2, 2]) == 1


def test_weighted_vote_uses_summed_weight_not_count():
    groups = [0, 0, 0, 1]
    assert weighted_vote(groups, [0.1, 0.1, 0.1, 0.9]) == 3
    assert weighted_vote(groups, [0.4, 0.4, 0.4, 0.9]) == 0
    assert weighted_vote([None, 1, 0], [5.0, 0.2, 0.3]) == 2  # an answerless candidate carries no weight


def test_best_of_n_skips_answerless():
    assert best_of_n([0.2, 0.9, 0.5], [True, False, True]) == 2
    assert best_of_n([0.5, 0.7, 0.7], [True, True, True]) == 1  # tie: the earliest
    assert best_of_n([0.2], [False]) is None


def test_budgets_are_powers_of_two_and_n():
    assert budgets(16) == [1, 2, 4, 8, 16]
    assert budgets(12) == [1, 2, 4, 8, 12]
    assert budgets(1) == [1]


def candidates(step_scores: list[list[float]]) -> list[dict]:
    return [
        {
            "answer": str(i),
            "correct": i == 1,
            "text": f"answer {i}",
            "prompt_tokens": 2,
            "completion_tokens": 3,
            "step_scores": {"v": s},
            "verifier_cost": {"v": {"tokens": 5, "flops": 7.0}},
        }
        for i, s in enumerate(step_scores)
    ]


def choose(config: StrategyConfig, pool: list[dict], groups: list[int | None], n: int):
    return build_strategy(config).choose(pool, groups, n)


def test_weighted_best_of_n_picks_greatest_summed_weight():
    # answers 3, 7, 7, 5 with last-step weights 0.9, 0.5, 0.5, 0.2: 7 sums to 1.0 > 0.9.
    pool = candidates([[0.9], [0.5], [0.5], [0.2]])
    groups = [0, 1, 1, 2]
    weighted = choose(StrategyConfig(name="weighted_best_of_n", n=4, verifier="v"), pool, groups, 4)
    plain = choose(StrategyConfig(name="best_of_n", n=4, verifier="v"), pool, groups, 4)
    assert (weighted.answer, weighted.correct) == ("1", 1.0)
    assert (plain.answer, plain.correct) == ("0", 0.0)
    assert weighted.usage.verifier_tokens == 4 * 5 and weighted.usage.completion_tokens == 4 * 3


def test_configured_aggregation_is_the_one_used():
    # by the last step candidate 0 wins; by its weakest step candidate 1 does.
    pool = candidates([[0.1, 0.95], [0.7, 0.8]])
    last = StrategyConfig(name="best_of_n", n=2, verifier="v", aggregate="last")
    worst = StrategyConfig(name="best_of_n", n=2, verifier="v", aggregate="min")
    assert choose(last, pool, [0, 1], 2).answer == "0"
    assert choose(worst, pool, [0, 1], 2).answer == "1"


def test_a_budget_reads_only_the_head_of_the_pool():
    pool = candidates([[0.1], [0.9], [0.2]])
    head = choose(StrategyConfig(name="best_of_n", n=3, verifier="v"), pool, [0, 1, 2], 1)
    assert head.answer == "0" and head.usage.policy_calls == 1
    majority = choose(StrategyConfig(name="majority", n=3), pool, [0, 1, 1], 3)
    assert majority.answer == "1" and majority.usage.verifier_tokens == 0
    passed = choose(StrategyConfig(name="pass_at_k", n=3), pool, [0, 1, 2], 1)
    assert passed.correct == pytest.approx(1 / 3) and passed.usage.policy_calls == 1

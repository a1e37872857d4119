from math import comb

import pytest

from reasonscale.search.selection import best_of_n, budgets, majority_vote, pass_at_k, weighted_vote


def test_pass_at_k_matches_definition():
    n, c = 10, 3
    for k in range(1, n + 1):
        brute = 1 - comb(n - c, k) / comb(n, k) if n - c >= k else 1.0
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)


def test_pass_at_k_rejects_bad_k():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_vote_picks_largest_group_first_member():
    assert majority_vote([0, 1, 1, None, 2, 1]) == 1
    assert majority_vote([None, None]) is None
    assert majority_vote([2, 3]) == 0  # tie: the earliest group


def test_weighted_vote_uses_summed_weight_not_count():
    groups = [0, 0, 0, 1]
    assert weighted_vote(groups, [0.1, 0.1, 0.1, 0.9]) == 3
    assert weighted_vote(groups, [0.4, 0.4, 0.4, 0.9]) == 0


def test_best_of_n_skips_answerless():
    assert best_of_n([0.2, 0.9, 0.5], [True, False, True]) == 2
    assert best_of_n([0.2], [False]) is None


def test_budgets_are_powers_of_two_and_n():
    assert budgets(16) == [1, 2, 4, 8, 16]
    assert budgets(12) == [1, 2, 4, 8, 12]
    assert budgets(1) == [1]

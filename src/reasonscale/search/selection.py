"""Choosing one answer from a pool of candidates: majority vote, best-of-N (plain and weighted), and pass@k.

Every function takes the first k members of one shared sample pool, so smaller budgets are read off the same
samples as the largest one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(groups: Sequence[int | None]) -> int | None:
    """Index of the chosen candidate: the first member of the largest answer group (earliest group on ties)."""
    return weighted_vote(groups, [1.0] * len(groups))


def weighted_vote(groups: Sequence[int | None], weights: Sequence[float]) -> int | None:
    """Index of the first member of the answer group with the greatest summed weight (None if no answers)."""
    totals: dict[int, float] = defaultdict(float)
    first: dict[int, int] = {}
    for index, (group, weight) in enumerate(zip(groups, weights)):
        if group is None:
            continue
        totals[group] += weight
        first.setdefault(group, index)
    if not totals:
        return None
    best = max(totals, key=lambda g: (totals[g], -first[g]))
    return first[best]


def best_of_n(scores: Sequence[float], has_answer: Sequence[bool]) -> int | None:
    """Index of the highest-scoring candidate that has an answer (the earliest on ties)."""
    ranked = [(score, -i) for i, (score, ok) in enumerate(zip(scores, has_answer)) if ok]
    return -max(ranked)[1] if ranked else None


def budgets(n: int) -> list[int]:
    """The budgets reported for a pool of n samples: every power of two below n, and n."""
    out = [1]
    while out[-1] * 2 < n:
        out.append(out[-1] * 2)
    return out if out[-1] == n else [*out, n]

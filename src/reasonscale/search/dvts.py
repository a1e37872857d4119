"""Diverse verifier tree search (Beeching et al. 2024, search-and-learn): N/M independent greedy subtrees."""

from __future__ import annotations

from reasonscale.search.stepwise import SearchResult, StepSearch, tree_search


def dvts(search: StepSearch, n: int, beam_width: int = 4, max_rounds: int = 12) -> list[SearchResult]:
    """Split the budget N into max(1, N/M) subtrees per problem (the first N mod trees subtrees take one more);
    each expands only its single best beam, as many ways as it has open slots, per round. Subtrees sample
    disjoint first steps; the answer is the verifier-weighted vote over every subtree's finished solutions."""
    trees = max(1, n // beam_width)
    roots = search.roots(trees)
    budgets = [n // trees + (root.tree < n % trees) for root in roots]
    return search.results(tree_search(search, roots, budgets, max(budgets), max_rounds))

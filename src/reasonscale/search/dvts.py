"""Diverse verifier tree search (Beeching et al. 2024, search-and-learn): N/M independent greedy subtrees."""

from __future__ import annotations

from reasonscale.search.stepwise import SearchResult, StepSearch, tree_search


def dvts(search: StepSearch, n: int, beam_width: int = 4, max_rounds: int = 12) -> list[SearchResult]:
    """Split the budget into max(1, N/M) subtrees per problem; each expands its single best beam M ways per
    round, and the final answer is the verifier-weighted vote over every subtree's finished solutions."""
    trees = max(1, n // beam_width)
    width = n // trees
    return search.results(tree_search(search, search.roots(trees), width, width, max_rounds))

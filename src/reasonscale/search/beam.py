"""Beam search against a verifier (Snell et al. 2024, section 5): N beams, keep the best N/M, expand each M times."""

from __future__ import annotations

from reasonscale.search.stepwise import SearchResult, StepSearch, tree_search


def beam_search(search: StepSearch, n: int, beam_width: int = 4, max_rounds: int = 12) -> list[SearchResult]:
    """One result per problem: N sampled first steps; each round the best max(1, N/M) open beams are expanded
    M times each (N spread evenly when M does not divide it); the final answer is the verifier-weighted vote
    over the N finished solutions."""
    roots = search.roots()
    return search.results(tree_search(search, roots, [n] * len(roots), beam_width, max_rounds))

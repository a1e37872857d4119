"""Beam search against a verifier (Snell et al. 2024, section 5): N beams, keep the best N/M, expand each M times."""

from __future__ import annotations

from reasonscale.search.stepwise import SearchResult, StepSearch, tree_search


def beam_search(search: StepSearch, n: int, beam_width: int = 4, max_rounds: int = 12) -> list[SearchResult]:
    """One result per problem: N sampled first steps; each round the best max(1, N/M) unfinished beams are
    expanded M times each; the final answer is the verifier-weighted vote over the finished solutions."""
    return search.results(tree_search(search, search.roots(), n, beam_width, max_rounds))

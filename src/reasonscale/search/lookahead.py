"""Lookahead search (Snell et al. 2024, section 5): beam search whose step scores are read k greedy steps ahead."""

from __future__ import annotations

from dataclasses import replace

from reasonscale.search.stepwise import SearchResult, StepSearch, tree_search


def lookahead_search(
    search: StepSearch, n: int, beam_width: int = 4, max_rounds: int = 12, k: int = 1
) -> list[SearchResult]:
    """Beam search where each candidate step is scored by the verifier at the end of a k-step greedy
    (temperature 0) rollout from it; the rollouts are charged, so a round costs about N x (k + 1) steps."""
    ahead = replace(search, lookahead=k)
    roots = ahead.roots()
    return ahead.results(tree_search(ahead, roots, [n] * len(roots), beam_width, max_rounds))

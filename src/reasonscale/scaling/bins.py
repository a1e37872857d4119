"""Question difficulty bins (Snell et al. 2024, section 3.2): quantiles of how hard a question is.

Oracle bins rank questions by their pass@1 estimated from the run's sample pool with the task's grader; predicted
bins rank them by the verifier's mean final score over the same samples and never read a gold answer or a grade,
so they can route new questions. Bin 1 is the easiest fifth, bin 5 the hardest.

Within a run, questions are ranked by score (equal scores in the order of a hash of their id) and cut into parts of
equal size, so a large group of equal scores (pass@1 = 0 on a hard set) spans several bins instead of emptying
others. The edges (the lowest score of each easier part) place questions of another run: with fixed edges a
question's bin is one plus the number of edges above its score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reasonscale.identity import digest
from reasonscale.verifiers.base import aggregate


def _cut(count: int, bins: int) -> list[int]:
    """The first rank of each part above the lowest when `count` ranked items are cut into `bins` equal parts."""
    return [round(k * count / bins) for k in range(1, bins)]


def quantile_edges(scores: Sequence[float], bins: int = 5) -> list[float]:
    """bins - 1 edges: edge k is the lowest score of the k-th part above the lowest, scores ascending."""
    ordered = sorted(scores)
    return [ordered[min(len(ordered) - 1, r)] for r in _cut(len(ordered), bins)] if ordered else []


def quantile_bins(scores: dict[str, float], bins: int = 5) -> dict[str, int]:
    """Each id's bin among these scores: parts of equal size (ties ordered by a hash of the id), 1 the highest."""
    ranked = sorted(scores, key=lambda i: (scores[i], digest(i)))
    cuts = _cut(len(ranked), bins)
    return {i: bins - sum(rank >= c for c in cuts) for rank, i in enumerate(ranked)}


def bin_of(score: float, edges: Sequence[float]) -> int:
    """1 (easiest: the highest scores) to len(edges) + 1 (hardest): one plus the number of edges above it."""
    return 1 + sum(score < edge for edge in edges)


def pass_at_1(record: Mapping[str, Any]) -> float | None:
    """A question's pass@1 estimated from its sample pool (None without samples)."""
    samples = record.get("candidates") or []
    return sum(float(c["correct"]) for c in samples) / len(samples) if samples else None


def predicted_score(candidates: Sequence[Mapping[str, Any]], verifier: str) -> float | None:
    """The verifier's mean final score over a question's samples: reads only the scores, never a grade or gold
    answer (None without scored samples)."""
    scores = [aggregate(c["step_scores"][verifier], "last") for c in candidates if verifier in c["step_scores"]]
    return sum(scores) / len(scores) if scores else None


def assign_bins(
    records: list[dict[str, Any]],
    verifier: str | None,
    bins: int = 5,
    edges: Sequence[float] | None = None,
) -> dict[str, list[float]]:
    """Set `record["bins"] = {"oracle": b, "predicted": b}` (None where a question has no samples or no verifier
    scores) and return the edges of this run's quantiles. Predicted bins use the fitted `edges` when given."""
    oracle = {r["id"]: s for r in records if (s := pass_at_1(r)) is not None}
    predicted = {}
    if verifier:
        scores = {r["id"]: predicted_score(r.get("candidates") or [], verifier) for r in records}
        predicted = {i: s for i, s in scores.items() if s is not None}
    oracle_bins = quantile_bins(oracle, bins)
    if edges is None:
        predicted_bins = quantile_bins(predicted, bins)
    else:
        predicted_bins = {i: bin_of(s, edges) for i, s in predicted.items()}
    for record in records:
        record["bins"] = {"oracle": oracle_bins.get(record["id"]), "predicted": predicted_bins.get(record["id"])}
    return {"oracle": quantile_edges(list(oracle.values()), bins),
            "predicted": quantile_edges(list(predicted.values()), bins)}

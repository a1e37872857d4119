"""Pretraining vs test-time compute (Snell et al. 2024, section 7).

A model of N parameters costs 6·N·D FLOPs to pretrain on D tokens and 2·N FLOPs per token at inference (Kaplan et
al. 2020). With R = inference tokens / pretraining tokens, a model M times larger (trained on the same D tokens and
serving the same R·D tokens) costs 6·M·N·D + 2·M·N·R·D, which the small model matches by spending
X = M + 3(M - 1)/R times its inference compute: X is the test-time budget the small model may use against the
large model's greedy answer at equal total FLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PAPER_RATIOS = (0.16, 0.79, 22.0)


def pretraining_flops(parameters: float, tokens: float) -> float:
    """6·N·D: forward and backward passes over D training tokens."""
    return 6.0 * parameters * tokens


def inference_flops(parameters: float, tokens: float) -> float:
    """2·N·D: a forward pass per token computed (prompt tokens count only where they are recomputed)."""
    return 2.0 * parameters * tokens


def token_ratio(inference_tokens: float, pretraining_tokens: float) -> float:
    """R = inference tokens / pretraining tokens."""
    if pretraining_tokens <= 0:
        raise ValueError("pretraining tokens must be positive")
    return inference_tokens / pretraining_tokens


def matched_multiplier(m: float, r: float) -> float:
    """X = M + 3(M - 1)/R: how many times its inference compute a model may spend to cost as much in total as a
    model M times larger (same pretraining tokens, R inference tokens per pretraining token)."""
    if m < 1 or r <= 0:
        raise ValueError(f"need M >= 1 and R > 0, got M={m}, R={r}")
    return m + 3.0 * (m - 1.0) / r


def total_flops(parameters: float, pretraining: float, inference: float, multiplier: float = 1.0) -> float:
    """Pretraining on `pretraining` tokens plus inference over `inference` tokens spent `multiplier` times over."""
    return pretraining_flops(parameters, pretraining) + multiplier * inference_flops(parameters, inference)


def accuracy_within(points: Sequence[Mapping[str, Any]], limit: float, cost: str = "generation_budget"
                    ) -> Mapping[str, Any] | None:
    """The best point of a curve whose `cost` is at most `limit` (the small model never gets credit for compute it
    was not evaluated at; None if no point fits)."""
    fitting = [p for p in points if p[cost] <= limit * (1 + 1e-9)]
    return max(fitting, key=lambda p: (p["accuracy"], -p[cost])) if fitting else None


def exchange_rows(
    small_curve: Sequence[Mapping[str, Any]],
    large_accuracy: float,
    m: float,
    ratios: Sequence[float] = PAPER_RATIOS,
    large_flops: float | None = None,
) -> list[dict[str, Any]]:
    """Per R: the matched multiplier X, the small model's best accuracy within it, the large model's greedy
    accuracy, and which wins.

    With `large_flops` (the large model's inference FLOPs per question), a point of the small curve fits when its
    `flops` (policy and verifier, re-sent context included, as measured) are at most X·large_flops/M: the small
    model's FLOPs on the large model's tokens, X times over. Without it, a point fits when its generation budget
    is at most X (generations' worth of greedy)."""
    cost = "flops" if large_flops else "generation_budget"
    rows = []
    for r in ratios:
        x = matched_multiplier(m, r)
        limit = x * large_flops / m if large_flops else x
        best = accuracy_within(small_curve, limit, cost)
        small = None if best is None else best["accuracy"]
        winner = None if small is None else ("test-time" if small > large_accuracy else "pretraining")
        if small is not None and small == large_accuracy:
            winner = "tie"
        rows.append({"R": r, "X": x, "compute": cost, "limit": limit,
                     "budget_used": None if best is None else best["generation_budget"],
                     "flops_used": None if best is None else best.get("flops"),
                     "small": small, "large": large_accuracy, "winner": winner,
                     "beyond_curve": bool(small_curve) and limit > max(p[cost] for p in small_curve)})
    return rows

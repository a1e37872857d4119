"""The Verifier protocol: score each step of candidate solutions; aggregate step scores into one score."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from reasonscale.types import Problem, Usage

Aggregation = Literal["last", "min", "prod", "mean"]


def aggregate(step_scores: Sequence[float], how: Aggregation) -> float:
    """One score for a solution from its step scores (0.0 for a solution with no steps)."""
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    raise ValueError(f"unknown aggregation '{how}': use last, min, prod or mean")


class Verifier(ABC):
    """Scores solutions step by step. `usage` accumulates verifier calls and tokens across calls."""

    name: str = "verifier"

    def __init__(self) -> None:
        self.usage = Usage()

    @abstractmethod
    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (problem, steps) pair, one score in [0, 1] per step: how likely the solution is right so far."""

    def score_items(
        self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]
    ) -> tuple[list[list[float]], list[Usage]]:
        """The scores and each item's own cost. This default fits verifiers that run no model (one call per item,
        no tokens); a verifier that spends tokens overrides it to charge each item what it used."""
        before = replace(self.usage)
        scores = self.score(problems, step_lists)
        if self.usage.verifier_tokens != before.verifier_tokens or self.usage.flops != before.flops:
            raise NotImplementedError(f"{type(self).__name__} spends tokens: it must override score_items")
        return scores, [Usage(verifier_calls=1) for _ in scores]

    def close(self) -> None:
        """Release resources."""

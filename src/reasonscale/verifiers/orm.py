"""Outcome reward models: one score for the whole solution (so far), given to every step.

An ORM checkpoint has the same formats as a PRM (`PRMFormat`), read once at the end of the joined solution.
With a single score per solution every aggregation (last, min, prod, mean) returns that score.
"""

from __future__ import annotations

from collections.abc import Sequence

from reasonscale.verifiers.prm import PRMVerifier


class ORMVerifier(PRMVerifier):
    """Scores the whole solution text once and repeats that score for each of its steps."""

    name = "orm"

    def segments(self, steps: Sequence[str]) -> list[str]:
        return [self.task.join_steps(steps)] if steps else []

    def expand(self, scores: list[float], steps: int) -> list[float]:
        return scores * steps

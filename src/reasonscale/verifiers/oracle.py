"""The oracle verifier: exact step scores for lab problems (the reference that learned PRMs are measured by)."""

from __future__ import annotations

from collections.abc import Sequence

from reasonscale.lab.graph import graph_of
from reasonscale.lab.oracle import check_solution
from reasonscale.types import Problem
from reasonscale.verifiers.base import Verifier


class OracleVerifier(Verifier):
    """Scores 1.0 for each step up to the first wrong one and 0.0 from there on (a wrong answer line is wrong).

    Works on lab problems only (the graph is read back from the question); it costs no model calls, but each
    scored solution counts as one verifier call.
    """

    name = "oracle"

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        scores = []
        for problem, steps in zip(problems, step_lists, strict=True):
            first = check_solution(graph_of(problem.question), steps).first_error
            good = len(steps) if first is None else first
            scores.append([1.0] * good + [0.0] * (len(steps) - good))
            self.usage.verifier_calls += 1
        return scores

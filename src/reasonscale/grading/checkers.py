"""Answer checkers: how to find the final answer in a solution, normalize it and compare it with a reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from reasonscale.grading.extract import after_marker, first_number, last_boxed, last_number
from reasonscale.grading.latex import normalize_latex
from reasonscale.grading.math_verify_pool import MathVerifyPool, equivalent_many
from reasonscale.grading.numeric import canonical_number, numeric_equal

GraderKind = Literal["numeric", "math"]


class AnswerChecker(Protocol):
    def extract(self, solution: str) -> str | None:
        """The final answer in a solution, or None when it has none."""

    def normalize(self, answer: str) -> str:
        """A cheap canonical form: equal forms are equivalent answers."""

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (reference, prediction) pair, whether they are the same answer. Never hangs."""


class NumericChecker:
    """GSM8K-style numbers, compared exactly (see `grading.numeric`)."""

    markers = ("####", "The answer is")

    def extract(self, solution: str) -> str | None:
        """The number after the last `####`, else after the last "The answer is", else the last number."""
        for marker in self.markers:
            segment = after_marker(solution, marker)
            if segment is not None:
                return first_number(segment) or segment
        return last_number(solution)

    def normalize(self, answer: str) -> str:
        return canonical_number(answer)

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return [numeric_equal(reference, prediction) for reference, prediction in pairs]


class MathChecker:
    """LaTeX answers in `\\boxed{}`, compared with Math-Verify in worker processes (the shared pool by default)."""

    def __init__(self, pool: MathVerifyPool | None = None, timeout: float | None = None) -> None:
        self.pool = pool
        self.timeout = timeout

    def extract(self, solution: str) -> str | None:
        return last_boxed(solution)

    def normalize(self, answer: str) -> str:
        return normalize_latex(answer)

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return [v.equal for v in equivalent_many(pairs, self.timeout, self.pool)]


def checker(kind: GraderKind) -> AnswerChecker:
    """The checker for a grader kind: 'numeric' or 'math'."""
    if kind == "numeric":
        return NumericChecker()
    if kind == "math":
        return MathChecker()
    raise ValueError(f"unknown grader '{kind}': use numeric or math")

"""Answer grading: extraction of final answers and their equivalence (exact numbers; Math-Verify in workers)."""

from reasonscale.grading.checkers import AnswerChecker, MathChecker, NumericChecker, checker
from reasonscale.grading.math_verify_pool import GraderStartupError, MathVerifyPool, default_pool, equivalent_many
from reasonscale.grading.verdict import Verdict

__all__ = [
    "AnswerChecker",
    "GraderStartupError",
    "MathChecker",
    "MathVerifyPool",
    "NumericChecker",
    "Verdict",
    "checker",
    "default_pool",
    "equivalent_many",
]

"""LaTeX answer equivalence with Math-Verify, in process and without time limits.

Run it only where something else enforces a timeout (the worker pool in `math_verify_pool` does): Math-Verify's
own signal-based timeouts are turned off because they fail off the main thread and cannot stop C code.
Two principled checks tighten Math-Verify where it is too lenient:
- exact rationals (`1/2^{99}`, `\\frac{5}{9}`) compare exactly, not after rounding to a few decimals;
- answers enclosed in brackets must use the same brackets (`(1,2)` is neither `(1,2]` nor `\\{1,2\\}`).
"""

from __future__ import annotations

import logging

import sympy
from math_verify import LatexExtractionConfig, parse, verify

from reasonscale.grading.latex import enclosing_brackets
from reasonscale.grading.verdict import Verdict

# Math-Verify warns once per process that its timeouts are off; the pool owns timeouts, so the warning is noise.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse(answer: str) -> list:
    """Math-Verify's parse of an extracted answer, read as the content of a `\\boxed{}`.

    Only the LaTeX parser is used: Math-Verify's plain-expression fallback goes through sympy's `parse_expr`,
    which evaluates Python code, and model output is never evaluated.
    """
    return parse(f"\\boxed{{{answer}}}", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)


def _exact_rational(expr: object) -> sympy.Rational | None:
    """The exact value of a number written without decimals or symbols (`1/2^{99}`, `\\sqrt{4}`), else None."""
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or expr.has(sympy.Float):
        return None
    value = expr.doit()
    return value if value.is_Rational else None


def _compare(gold: str, prediction: str) -> Verdict:
    parsed_gold = _parse(gold)
    if not parsed_gold:
        return Verdict(False, "reference did not parse")
    parsed_prediction = _parse(prediction)
    if not parsed_prediction:
        return Verdict(False, "prediction did not parse")
    exact = (_exact_rational(parsed_gold[0]), _exact_rational(parsed_prediction[0]))
    if None not in exact:
        return Verdict(True) if exact[0] == exact[1] else Verdict(False, "different exact values")
    if not verify(parsed_gold, parsed_prediction, timeout_seconds=None):
        return Verdict(False, "not equivalent")
    brackets = enclosing_brackets(gold), enclosing_brackets(prediction)
    if None not in brackets and brackets[0] != brackets[1]:
        return Verdict(False, "different brackets")
    return Verdict(True)


def math_equal(gold: str, prediction: str) -> Verdict:
    """Whether `prediction` is the same answer as `gold` (asymmetric: gold first). Never raises."""
    try:
        return _compare(gold, prediction)
    except Exception as error:  # sympy and the LaTeX parser fail in many ways on odd input
        # The message itself is not formatted: str() of a huge expression can be slow or hang.
        return Verdict(False, f"grader error: {type(error).__name__}")

"""Exact numeric answers (GSM8K style): currency, thousands separators, percent signs and units are ignored.

Numbers compare as exact rationals, never as floats: `1.0001` is not `1` and `0.5` is not `50`.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_CHARS = 200  # longer answers are not numbers worth parsing
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(
    r"(?P<sign>[-+−]?)\s*[$€£]?\s*(?P<value>\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*(?P<denominator>\d+))?(?P<rest>\D*)"
)


def parse_number(text: str) -> Fraction | None:
    """The exact value of an answer like `$1,000`, `-3.50`, `3/4`, `25%` or `18 apples.`, else None.

    Anything after the number (units, words, `%`, a period) is ignored as long as it holds no digit.
    """
    if len(text) > MAX_CHARS:
        return None
    match = _NUMBER.fullmatch(_THOUSANDS.sub("", text.strip()))
    if match is None or match["denominator"] == "0":
        return None
    value = Fraction(match["value"]) / int(match["denominator"] or 1)
    return -value if match["sign"] in ("-", "−") else value


def canonical_number(text: str) -> str:
    """`18` for `$18.00`; text that is not a number comes back stripped and with runs of spaces collapsed."""
    value = parse_number(text)
    return " ".join(text.split()) if value is None else str(value)


def numeric_equal(reference: str, prediction: str) -> bool:
    """Equal exact values, or (when either is not a number) equal non-empty canonical text."""
    if len(reference) > MAX_CHARS or len(prediction) > MAX_CHARS:
        return False
    a, b = canonical_number(reference), canonical_number(prediction)
    return bool(a) and a == b

"""Cheap, meaning-preserving string forms of LaTeX answers (no parsing, linear time)."""

from __future__ import annotations

import re
from collections.abc import Iterator

_SPACING = re.compile(r"\\[!,;:> ]|\\q?quad(?![a-zA-Z])|\\displaystyle(?![a-zA-Z])")
_SIZING = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_FRAC = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION_SPACE = re.compile(r"\s*([^\w\s\\])\s*")
# Round, square and set brackets; a backslash escapes anything else (so `\(` is not a bracket).
_BRACKET = re.compile(r"\\[{}]|[()\[\]]|\\.", re.DOTALL)


def normalize_latex(answer: str) -> str:
    """Drop spacing and sizing commands, spaces around symbols, `$` delimiters and a final period.

    `\\dfrac` and `\\tfrac` become `\\frac`. Equal forms mean equal answers; unequal forms decide nothing.
    """
    text = _SPACING.sub(" ", answer)
    text = _SIZING.sub("", text)
    text = _FRAC.sub(r"\\frac", text)
    text = _PUNCTUATION_SPACE.sub(r"\1", _WHITESPACE.sub(" ", text))
    return text.strip(" $").removesuffix(".").strip(" $")


def _brackets(text: str) -> Iterator[re.Match[str]]:
    return (m for m in _BRACKET.finditer(text) if len(m.group()) == 1 or m.group()[1] in "{}")


def enclosing_brackets(answer: str) -> tuple[str, str] | None:
    """The bracket pair around the whole answer, e.g. ('(', ']') for `(1,2]`, or None when there is none.

    Brackets of all kinds nest together, so an interval's mismatched pair counts as one pair.
    """
    text = normalize_latex(answer)
    depth = 0
    first = ""
    for mark in _brackets(text):
        if depth == 0:
            if mark.start() != 0 or mark.group() in (")", "]", "\\}"):
                return None
            first = mark.group()
        depth += -1 if mark.group() in (")", "]", "\\}") else 1
        if depth == 0:
            return (first, mark.group()) if mark.end() == len(text) else None
    return None

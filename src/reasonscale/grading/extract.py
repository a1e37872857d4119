"""Final answers in model solutions: the last `\\boxed{}`, the text after a marker, or the last number.

Only the last MAX_SOLUTION_CHARS characters of a solution are searched, so every function is linear and bounded.
"""

from __future__ import annotations

import re

MAX_SOLUTION_CHARS = 100_000
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A number with optional sign, thousands separators, decimals or a fraction bar (`-1,234.5`, `3/4`).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def last_boxed(solution: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}`, braces matched (`\\{` is not a brace)."""
    text = solution[-MAX_SOLUTION_CHARS:]
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    depth, i = 1, starts[-1]
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[starts[-1] : i].strip() or None
        i += 1
    return None


def after_marker(solution: str, marker: str) -> str | None:
    """The rest of the line after the last `marker` (matched case-insensitively), or None without one."""
    text = solution[-MAX_SOLUTION_CHARS:]
    at = text.lower().rfind(marker.lower())
    if at < 0:
        return None
    return text[at + len(marker) :].split("\n", 1)[0].strip() or None


def first_number(text: str) -> str | None:
    match = _NUMBER.search(text[:MAX_SOLUTION_CHARS])
    return match.group() if match else None


def last_number(solution: str) -> str | None:
    numbers = _NUMBER.findall(solution[-MAX_SOLUTION_CHARS:])
    return numbers[-1] if numbers else None

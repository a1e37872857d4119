"""The outcome of comparing a reference answer with a predicted one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Whether two answers are equal; `reason` says why not (a difference, a timeout, a crash, a size cap)."""

    equal: bool
    reason: str | None = None

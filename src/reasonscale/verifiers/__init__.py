"""Verifiers: score solutions step by step. `build_verifier` makes one by name."""

from __future__ import annotations

from reasonscale.tasks.base import Task
from reasonscale.verifiers.base import Verifier, aggregate


def build_verifier(name: str, task: Task) -> Verifier:
    """The verifier called `name` for `task` (modules import lazily)."""
    if name == "oracle":
        from reasonscale.verifiers.oracle import OracleVerifier

        return OracleVerifier(task)
    raise ValueError(f"unknown verifier '{name}': available: oracle (lab task)")


__all__ = ["Verifier", "aggregate", "build_verifier"]

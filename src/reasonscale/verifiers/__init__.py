"""Verifiers: score solutions step by step. `build_verifier` makes one by name."""

from __future__ import annotations

from typing import Any

from reasonscale.tasks.base import Task
from reasonscale.verifiers.base import Verifier, aggregate


def build_verifier(name: str, task: Task, path: str | None = None, options: dict[str, Any] | None = None) -> Verifier:
    """The verifier called `name` for `task` (modules import lazily).

    `prm` and `orm` load a model from `path`, or from the name itself written `prm:PATH`; `options` override the
    checkpoint's PRM format (step_separator, step_tag, good_token, bad_token, mode...). `recompute` loads a causal LM
    the same way; its options are `RecomputeOptions` (form, max_number_tokens, score_end, neutral).
    """
    kind, _, inline = name.partition(":")
    path = path or inline or None
    if kind == "oracle":
        from reasonscale.verifiers.oracle import OracleVerifier

        return OracleVerifier()
    if kind in ("prm", "orm", "recompute") and path is None:
        raise ValueError(f"verifier '{kind}' needs a model path: write '{kind}:PATH' or set verifier_path")
    if kind == "recompute":
        from reasonscale.verifiers.recompute import RecomputeVerifier

        return RecomputeVerifier(path, task, **(options or {}))
    if kind in ("prm", "orm"):
        from reasonscale.verifiers.orm import ORMVerifier
        from reasonscale.verifiers.prm import PRMVerifier
        from reasonscale.verifiers.reward import RewardModelVerifier, is_reward_model

        from reasonscale.verifiers.trm import TRMVerifier, is_trm

        if kind == "orm" and is_trm(path):  # a topological reward model from `reasonscale solar trm`
            return TRMVerifier(path, task, **(options or {}))
        if kind == "orm" and is_reward_model(path):  # a scalar reward model from `reasonscale train reward`
            return RewardModelVerifier(path, task, **(options or {}))

        return (PRMVerifier if kind == "prm" else ORMVerifier)(path, task, **(options or {}))
    raise ValueError(f"unknown verifier '{name}': available: oracle (lab task), prm:PATH, orm:PATH, recompute:PATH")


__all__ = ["Verifier", "aggregate", "build_verifier"]

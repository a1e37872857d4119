"""Strategies read off shared samples: greedy decoding, and majority, best-of-N (plain and weighted) and pass@k
over one sample pool (the first k samples of the pool are the budget-k pool)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from reasonscale.config import StrategyConfig, VerifiedStrategyConfig
from reasonscale.search.selection import best_of_n, majority_vote, pass_at_k, weighted_vote
from reasonscale.search.strategy import Chunk, Outcome, Strategy, register
from reasonscale.types import Usage
from reasonscale.verifiers.base import aggregate


def candidate_usage(candidate: dict[str, Any], verifiers: Sequence[str] = ()) -> Usage:
    """One sampled candidate's own cost: its generation, and its scoring by each verifier named."""
    usage = Usage(
        policy_calls=1, prompt_tokens=candidate["prompt_tokens"], completion_tokens=candidate["completion_tokens"]
    )
    for key in verifiers:
        spent = candidate["verifier_cost"][key]
        usage += Usage(
            verifier_calls=1, verifier_tokens=spent["tokens"], flops=spent["flops"], verifier_flops=spent["flops"]
        )
    return usage


def chosen(candidate: dict[str, Any] | None, used: list[dict[str, Any]], verifiers: Sequence[str] = ()) -> Outcome:
    """The outcome of choosing `candidate` (None: no answer) after paying for the candidates `used`."""
    usage = Usage()
    for c in used:
        usage += candidate_usage(c, verifiers)
    if candidate is None:
        return Outcome(None, 0.0, usage)
    return Outcome(candidate["answer"], float(candidate["correct"]), usage)  # its text is in the record's samples


class GreedyConfig(StrategyConfig):
    name: Literal["greedy"] = "greedy"


@register
class Greedy(Strategy):
    """Greedy decoding: one temperature-0 solution per problem (budget 1)."""

    config_class = GreedyConfig
    shares_samples = True

    def budgets(self) -> list[int]:
        return [1]

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        return [chosen(c, [c]) for c in chunk.greedy()]


class PoolStrategy(Strategy):
    """A choice among the first n samples of the shared pool."""

    shares_samples = True

    def pool_size(self) -> int:
        return self.config.n

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        return [self.choose(candidates, groups, n) for candidates, groups in zip(chunk.pool(), chunk.groups())]

    @abstractmethod
    def choose(self, candidates: list[dict[str, Any]], groups: list[int | None], n: int) -> Outcome:
        """The outcome at budget n from the pool's candidates and their answer groups."""


class MajorityConfig(StrategyConfig):
    name: Literal["majority"] = "majority"


@register
class Majority(PoolStrategy):
    """Majority vote over equivalent answers (self-consistency)."""

    config_class = MajorityConfig

    def choose(self, candidates: list[dict[str, Any]], groups: list[int | None], n: int) -> Outcome:
        index = majority_vote(groups[:n])
        return chosen(None if index is None else candidates[index], candidates[:n])


class PassAtKConfig(StrategyConfig):
    name: Literal["pass_at_k"] = "pass_at_k"


@register
class PassAtK(PoolStrategy):
    """Unbiased pass@k over the whole pool (Chen et al. 2021): an oracle's upper bound, not a choice."""

    config_class = PassAtKConfig

    def choose(self, candidates: list[dict[str, Any]], groups: list[int | None], n: int) -> Outcome:
        outcome = chosen(None, candidates[:n])
        outcome.correct = pass_at_k(len(candidates), sum(c["correct"] for c in candidates), n)
        return outcome


class VerifiedPoolStrategy(PoolStrategy):
    """A choice by verifier scores (step scores aggregated as configured)."""

    config: VerifiedStrategyConfig

    def choose(self, candidates: list[dict[str, Any]], groups: list[int | None], n: int) -> Outcome:
        key = self.config.verifier_key()
        head = candidates[:n]
        scores = [aggregate(c["step_scores"][key], self.config.aggregate) for c in head]
        index = self.pick(scores, groups[:n])
        return chosen(None if index is None else head[index], head, [key])

    @abstractmethod
    def pick(self, scores: list[float], groups: list[int | None]) -> int | None:
        """The chosen candidate's index (None: no answer)."""


class BestOfNConfig(VerifiedStrategyConfig):
    name: Literal["best_of_n"] = "best_of_n"


@register
class BestOfN(VerifiedPoolStrategy):
    """The highest-scoring sample with an answer."""

    config_class = BestOfNConfig

    def pick(self, scores: list[float], groups: list[int | None]) -> int | None:
        return best_of_n(scores, [g is not None for g in groups])


class WeightedBestOfNConfig(VerifiedStrategyConfig):
    name: Literal["weighted_best_of_n"] = "weighted_best_of_n"


@register
class WeightedBestOfN(VerifiedPoolStrategy):
    """The answer with the greatest summed score (Li et al. 2023; Snell et al. 2024)."""

    config_class = WeightedBestOfNConfig

    def pick(self, scores: list[float], groups: list[int | None]) -> int | None:
        return weighted_vote(groups, scores)

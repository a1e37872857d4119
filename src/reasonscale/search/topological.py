"""Topological rewarding (SOLAR): spread a budget of N responses across reasoning topologies, score every response
with a (topological) reward model, and choose by reward-weighted vote or by the best reward.

Budget N is the number of responses per problem. Each configured topology (a strategy section: cot, tot, got,
mcts...) answers once per response given to it, at its own `n`; its j-th response is drawn with sampling seed
`seed + j`, exactly as TAG's response j, so a TAG annotation's samples are reused from the cache. The N responses
are split by `shares` (configured weights, or `predicted`: the topo labels the TRM's topology head predicts for
the question) with largest remainders; `routed` gives them all to the topology the head predicts best. Hybrid
scaling is this strategy run with a topologically tuned policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SerializeAsAny, model_validator

from reasonscale.config import StrategyConfig, VerifiedStrategyConfig, _as_section
from reasonscale.search.selection import best_of_n, weighted_vote
from reasonscale.search.strategy import Chunk, Outcome, Strategy, build_strategy, labels, register
from reasonscale.types import Problem, SamplingParams, Usage
from reasonscale.verifiers.base import Verifier, aggregate


class TopologicalConfig(VerifiedStrategyConfig):
    name: Literal["topological"] = "topological"
    topologies: list[SerializeAsAny[Annotated[StrategyConfig, BeforeValidator(_as_section)]]] = Field(
        min_length=1, description="strategy sections, each answering once per response it is given"
    )
    shares: list[float] | Literal["equal", "predicted", "routed"] = Field(
        "equal",
        description="weights of the topologies (one each), equal, predicted (in proportion to the TRM's topology "
        "head) or routed (all to the topology the head predicts best)",
    )
    select: Literal["vote", "argmax"] = Field("vote", description="reward-weighted vote, or the best reward")

    @model_validator(mode="after")
    def _valid_topologies(self) -> TopologicalConfig:
        if isinstance(self.shares, list):
            if len(self.shares) != len(self.topologies) or min(self.shares) < 0 or sum(self.shares) <= 0:
                raise ValueError("shares: give one non-negative weight per topology, not all zero")
        for i, t in enumerate(self.topologies):
            if t.name == "topological" or build_strategy(t).shares_samples:
                raise ValueError(f"topologies.{i}: '{t.name}' is not a topology (use cot, tot, got, mcts...)")
            own = not isinstance(t, VerifiedStrategyConfig) or t.verifier_key() in ("oracle", self.verifier_key())
            if not own:
                raise ValueError(
                    f"topologies.{i}: its verifier must be oracle or this strategy's own ({self.verifier_key()}), "
                    "whose weights are part of the run's identity"
                )
        return self

    def topology_labels(self) -> list[str]:
        return labels(self.topologies)

    def fixed_shares(self) -> list[float] | None:
        """The configured weights (equal: 1 each); None when the topology head decides them."""
        if self.shares in ("predicted", "routed"):
            return None
        return [1.0] * len(self.topologies) if self.shares == "equal" else self.shares


def allocate(n: int, shares: Sequence[float]) -> list[int]:
    """N responses split in proportion to `shares` by largest remainders (ties: the earlier topology): the counts
    always add up to N."""
    total = sum(shares)
    exact = [n * s / total for s in shares] if total > 0 else [n / len(shares)] * len(shares)
    counts = [int(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass
class SubChunk:
    """Some problems of a chunk, sampled with a seed offset (response j of a topology)."""

    parent: Chunk
    problems: list[Problem]
    prompts: list[str]
    offset: int
    built: dict[str, Verifier] = field(default_factory=dict)

    @property
    def task(self):
        return self.parent.task

    @property
    def engine(self):
        return self.parent.engine

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams:
        params = self.parent.sampling(n, greedy)
        return replace(params, seed=params.seed + self.offset)

    def verifier(self, config: VerifiedStrategyConfig) -> Verifier:
        try:
            return self.parent.verifier(config)
        except KeyError:  # an oracle the run's own strategies do not use
            from reasonscale.verifiers import build_verifier

            key = config.verifier_key()
            if key not in self.built:
                self.built[key] = build_verifier(config.verifier, self.task)
            return self.built[key]


@register
class Topological(Strategy):
    """N responses spread across topologies, scored by the reward model, chosen by weighted vote or argmax."""

    config_class = TopologicalConfig
    config: TopologicalConfig

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.oracles: dict[str, Verifier] = {}

    def generation_budget(self, n: int) -> float:
        shares = self.config.fixed_shares() or [1.0] * len(self.config.topologies)
        strategies = [build_strategy(t) for t in self.config.topologies]
        return sum(k * s.generation_budget(s.config.n) for k, s in zip(allocate(n, shares), strategies))

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        counts, usage = self.allocation(chunk, n)
        responses: list[list[Outcome]] = [[] for _ in chunk.problems]
        for t, topology in enumerate(self.config.topologies):
            strategy = build_strategy(topology)
            for j in range(max((c[t] for c in counts), default=0)):
                mine = [i for i, c in enumerate(counts) if c[t] > j]
                sub = SubChunk(chunk, [chunk.problems[i] for i in mine], [chunk.prompts[i] for i in mine], j,
                               self.oracles)  # fmt: skip
                for i, outcome in zip(mine, strategy.run(sub, topology.n)):
                    responses[i].append(outcome)
        return [self.choose(chunk, p, r, u) for p, r, u in zip(chunk.problems, responses, usage)]

    def allocation(self, chunk: Chunk, n: int) -> tuple[list[list[int]], list[Usage]]:
        """Per problem, the responses each topology gets, and the cost of deciding it (the topology head's)."""
        if (shares := self.config.fixed_shares()) is not None:
            return [allocate(n, shares)] * len(chunk.problems), [Usage() for _ in chunk.problems]
        trm = chunk.verifier(self.config)
        shares = self.config.shares
        if not hasattr(trm, "topology_scores"):
            raise ValueError(f"shares: {shares} needs a topological reward model (verifier: orm, a TRM's path)")
        predicted, costs = trm.topology_scores(list(chunk.prompts))
        names = self.config.topology_labels()
        missing = [name for name in names if name not in trm.topologies]
        if missing:
            raise ValueError(f"shares: {shares}: the TRM has no topology {', '.join(missing)} ({trm.topologies})")
        weights = [[p[name] for name in names] for p in predicted]
        if shares == "routed":  # one-hot on the best (ties: the earlier topology)
            weights = [[float(i == w.index(max(w))) for i in range(len(w))] for w in weights]
        return [allocate(n, w) for w in weights], costs

    def choose(self, chunk: Chunk, problem: Problem, responses: list[Outcome], usage: Usage) -> Outcome:
        usage = replace(usage)
        for r in responses:
            usage += r.usage
        steps = [chunk.task.split_steps(r.text or "") for r in responses]
        step_scores, costs = chunk.verifier(self.config).score_items([problem] * len(responses), steps)
        for cost in costs:
            usage += cost
        scores = [aggregate(s, self.config.aggregate) for s in step_scores]
        if self.config.select == "vote":
            index = weighted_vote(chunk.task.group_answers([r.answer for r in responses]), scores)
        else:
            index = best_of_n(scores, [r.answer is not None for r in responses])
        if index is None:
            return Outcome(None, 0.0, usage)
        best = responses[index]
        return Outcome(best.answer, best.correct, usage, best.text)

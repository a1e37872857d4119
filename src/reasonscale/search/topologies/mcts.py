"""Monte-Carlo tree search over solution steps (as the MCTS baselines of OpenR and llm-reasoners): UCT selection,
expansion by sampling `children` steps, value from the verifier (optionally at the end of a rollout), backup."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import Field

from reasonscale.search.stepwise import Beam, SearchResult, StepSearch
from reasonscale.search.strategy import register
from reasonscale.search.topologies.base import TopologyConfig, TopologyStrategy


class MCTSConfig(TopologyConfig):
    SHORT: ClassVar[dict[str, str]] = {**TopologyConfig.SHORT, "exploration": "c"}

    name: Literal["mcts"] = "mcts"
    exploration: float = Field(1.0, ge=0, description="c in UCT: value + c * sqrt(ln N(parent) / N(child))")
    rollout: bool = Field(False, description="value a new state at the end of a sampled rollout from it")


@dataclass(eq=False)
class Node:
    """A state of the tree: `visits` counts the evaluations in its subtree (its own included), `total` sums their
    values, so `total / visits` is its mean value."""

    beam: Beam
    depth: int = 0
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    total: float = 0.0

    @property
    def value(self) -> float:
        return self.total / self.visits if self.visits else 0.0


def uct(node: Node, exploration: float) -> float:
    """The UCT score of a child: mean value plus the exploration bonus (an unvisited child comes first)."""
    if node.visits == 0 or node.parent is None:
        return math.inf
    return node.value + exploration * math.sqrt(math.log(node.parent.visits) / node.visits)


def select(root: Node, exploration: float) -> Node:
    """Walk down from the root by the highest UCT score (the first child on a tie) to a leaf."""
    node = root
    while node.children:
        node = max(node.children, key=lambda c: uct(c, exploration))
    return node


def backup(node: Node, values: list[float]) -> None:
    """Add the evaluations `values` (of the node or of its new children) to the node and every ancestor."""
    while node is not None:
        node.visits += len(values)
        node.total += sum(values)
        node = node.parent


@register
class MCTS(TopologyStrategy):
    """Budget N: N simulations per problem, each expanding one leaf into `children` states (a finished leaf is
    re-evaluated instead). The answer is the verifier-weighted vote over every finished solution the search
    reached (rollouts included); a problem with none runs the most visited path to its end."""

    config_class = MCTSConfig
    config: MCTSConfig

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        c = self.config
        return mcts(search, n, c.children, c.depth, c.exploration, c.rollout)


def mcts(
    search: StepSearch, simulations: int, children: int, depth: int, exploration: float, rollout: bool
) -> list[SearchResult]:
    """`simulations` rounds; each selects one leaf per problem and expands all selected leaves in one call. A leaf
    at `depth` steps is expanded into finished solutions (its children are run to their end)."""
    roots = [Node(beam) for beam in search.roots()]
    finished: list[Beam] = []
    for _ in range(simulations):
        leaves = [select(root, exploration) for root in roots]
        for leaf in leaves:
            if leaf.beam.done:
                backup(leaf, [leaf.beam.score])
        grow = [leaf for leaf in leaves if not leaf.beam.done]
        beams = search.expand([leaf.beam for leaf in grow], children)
        deep = [i for i, b in enumerate(beams) if grow[i // children].depth + 1 >= depth and not b.done]
        for i, end in zip(deep, search.finish([beams[i] for i in deep])):
            beams[i] = end
        search.score(beams)
        values = [b.score for b in beams]
        if rollout:
            values = _rollouts(search, beams, finished)
        finished += [b for b in beams if b.done]
        for i, leaf in enumerate(grow):
            mine = list(range(i * children, (i + 1) * children))
            leaf.children = [Node(beams[j], leaf.depth + 1, leaf) for j in mine]
            for j, node in zip(mine, leaf.children):
                node.visits, node.total = 1, values[j]
            backup(leaf, [values[j] for j in mine])
    return search.results(finished + _fallback(search, roots, finished))


def _rollouts(search: StepSearch, beams: list[Beam], finished: list[Beam]) -> list[float]:
    """Each open state's value is the verifier's score of a sampled rollout from it to the end of its solution;
    the rollouts are finished solutions too."""
    open_ = [i for i, b in enumerate(beams) if not b.done]
    ends = search.finish([beams[i] for i in open_])
    search.score(ends)
    finished += ends
    values = [b.score for b in beams]
    for i, end in zip(open_, ends):
        values[i] = end.score
    return values


def _fallback(search: StepSearch, roots: list[Node], finished: list[Beam]) -> list[Beam]:
    """For each problem with no finished solution: its most visited path, run to the end and scored."""
    reached = {b.problem for b in finished}
    leaves = []
    for root in roots:
        if root.beam.problem in reached:
            continue
        node = root
        while node.children:
            node = max(node.children, key=lambda c: c.visits)
        leaves.append(node.beam)
    ends = search.finish(leaves)
    search.score(ends)
    return ends

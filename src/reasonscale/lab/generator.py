"""Procedural generation of lab problems: difficulty levels, seeded graphs and the random topology behind them.

Every problem is a pure function of a key string (split, seed, level, index), so generation is deterministic.
Quantities are named a, b, c... in definition order, which is a random order that defines each after its
inputs. A level fixes the knobs: the operations the answer needs, the number of independent branches they form
(1 is a chain; more are computed apart and combined at the end), the bound on every value, and the number of
distractors (quantities defined but not needed).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from reasonscale.lab.graph import Graph, Node, Operand, apply_op

MAX_LITERAL_FACTOR = 9  # multipliers and divisors of a chain step stay single digits
NEW_BRANCH_DISTRACTOR_P = 0.3  # chance that a distractor starts afresh rather than extending a quantity


@dataclass(frozen=True)
class LevelSpec:
    """The difficulty knobs of one level."""

    ops: int  # operations the answer needs (solution steps before the answer line)
    branches: int  # independent chains, combined pairwise at the end; 1 = a plain chain
    max_value: int  # every number in the problem and its solution lies in [0, max_value]
    distractors: int  # quantities defined but not needed for the answer

    def __post_init__(self) -> None:
        if self.ops < 2 * self.branches - 1:
            raise ValueError("each branch needs an operation, plus one to combine each extra branch")


LEVELS: dict[int, LevelSpec] = {
    1: LevelSpec(ops=2, branches=1, max_value=30, distractors=2),
    2: LevelSpec(ops=3, branches=1, max_value=35, distractors=1),
    3: LevelSpec(ops=4, branches=2, max_value=40, distractors=2),
    4: LevelSpec(ops=5, branches=2, max_value=45, distractors=2),
    5: LevelSpec(ops=6, branches=3, max_value=50, distractors=3),
}


class _Builder:
    """Grows a graph node by node (under provisional names)."""

    def __init__(self, rng: random.Random, max_value: int):
        self.rng = rng
        self.max_value = max_value
        self.nodes: list[Node] = []

    def add(self, value: int, op: str, args: tuple[Operand, ...]) -> Node:
        node = Node(f"n{len(self.nodes)}", value, op, args)
        self.nodes.append(node)
        return node

    def start(self) -> Node:
        """A new quantity from two numbers: a random number combined with a small one."""
        return self.extend(self.rng.randint(1, self.max_value))

    def extend(self, base: Node | int) -> Node:
        """A new quantity: `base` (a quantity or a number) combined with a small number."""
        x = base.value if isinstance(base, Node) else base
        op, literal, literal_first = self.rng.choice(self._chain_moves(x))
        operand: Operand = base.name if isinstance(base, Node) else base
        args = (literal, operand) if literal_first else (operand, literal)
        left, right = (literal, x) if literal_first else (x, literal)
        return self.add(apply_op(op, left, right), op, args)  # type: ignore[arg-type]

    def _chain_moves(self, x: int) -> list[tuple[str, int, bool]]:
        """Every (op, literal, literal_first) whose result stays in [0, max_value], one op chosen uniformly."""
        rng, top = self.rng, self.max_value
        moves: list[tuple[str, int, bool]] = []
        if x < top:
            moves.append(("+", rng.randint(1, top - x), rng.random() < 0.5))
        if x >= 2:
            moves.append(("-", rng.randint(1, x - 1), False))
        if x < top:
            moves.append(("-", rng.randint(x + 1, top), True))
        if 2 <= x and 2 * x <= top:
            moves.append(("*", rng.randint(2, min(MAX_LITERAL_FACTOR, top // x)), rng.random() < 0.5))
        if x >= 2:
            moves.append(("//", rng.randint(2, min(MAX_LITERAL_FACTOR, x)), False))
        return moves

    def combine(self, a: Node, b: Node) -> Node:
        """A new quantity from two others, by an operation whose result stays in [0, max_value]."""
        big, small = (a, b) if a.value >= b.value else (b, a)
        moves = [("-", big, small)]
        if a.value + b.value <= self.max_value:
            moves.append(("+", a, b))
        if a.value * b.value <= self.max_value:
            moves.append(("*", a, b))
        if small.value >= 2 and big.value >= 2 * small.value:
            moves.append(("//", big, small))
        op, left, right = self.rng.choice(moves)
        return self.add(apply_op(op, left.value, right.value), op, (left.name, right.name))  # type: ignore[arg-type]


def _split_ops(rng: random.Random, spec: LevelSpec) -> list[int]:
    """Operations per branch (at least one each), after reserving one per combination."""
    sizes = [1] * spec.branches
    for _ in range(spec.ops - (spec.branches - 1) - spec.branches):
        sizes[rng.randrange(spec.branches)] += 1
    return sizes


def _random_topological_order(rng: random.Random, nodes: list[Node]) -> list[Node]:
    """The nodes in a uniformly chosen order among those that place every node after its inputs."""
    placed: set[str] = set()
    pending = list(nodes)
    order: list[Node] = []
    while pending:
        ready = [n for n in pending if all(i in placed for i in n.inputs)]
        node = rng.choice(ready)
        order.append(node)
        placed.add(node.name)
        pending.remove(node)
    return order


def generate(level: int, key: str) -> Graph:
    """The problem of difficulty `level` that `key` names (same key, same problem)."""
    spec = LEVELS[level]
    rng = random.Random(f"{level}/{key}")
    build = _Builder(rng, spec.max_value)
    heads = []
    for size in _split_ops(rng, spec):
        node = build.start()
        for _ in range(size - 1):
            node = build.extend(node)
        heads.append(node)
    while len(heads) > 1:
        a, b = rng.sample(heads, 2)
        heads = [h for h in heads if h is not a and h is not b] + [build.combine(a, b)]
    target = heads[0]
    for _ in range(spec.distractors):
        if rng.random() < NEW_BRANCH_DISTRACTOR_P:
            build.start()
        else:
            build.extend(rng.choice(build.nodes))
    order = _random_topological_order(rng, build.nodes)
    return _renamed(order, target.name)


def _renamed(nodes: list[Node], target: str) -> Graph:
    """The graph with its quantities named a, b, c... in definition order."""
    new = {n.name: string.ascii_lowercase[i] for i, n in enumerate(nodes)}
    renamed = [Node(new[n.name], n.value, n.op, tuple(new.get(a, a) for a in n.args)) for n in nodes]  # type: ignore[arg-type]
    return Graph(tuple(renamed), new[target])

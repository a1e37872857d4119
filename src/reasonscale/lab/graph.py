"""A lab problem as a computation graph: named quantities, each one operation on numbers or earlier quantities.

Text forms (short, since the lab models read one character per token):
  question  "a=5+2, b=a*3, c=19-b, d=b-c. Find d."
  step      "b=a*3=7*3=21"          (quantity = definition = operand values = result)
            "a=5+2=7"               (the values part is left out when the definition names no quantity)
  answer    "answer=19"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

Operand = str | int  # a quantity name or a literal

OPS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
}
COMMUTATIVE = frozenset({"+", "*"})
MAX_QUESTION_CHARS = 2000

_OPERAND = r"([a-z]|\d{1,9})"
_OP_DEF = re.compile(rf"([a-z])={_OPERAND}(\+|-|\*|//){_OPERAND}")
_QUESTION = re.compile(r"(.*)\. Find ([a-z])\.")


def apply_op(op: str, left: int, right: int) -> int | None:
    """`left op right`, or None where it is undefined (division by zero)."""
    if op == "//" and right == 0:
        return None
    return OPS[op](left, right)


def parse_operand(text: str) -> Operand:
    """A number or a quantity name."""
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class Node:
    """One quantity: `args[0] op args[1]`, each operand a number or an earlier quantity's name."""

    name: str
    value: int
    op: str
    args: tuple[Operand, Operand]

    @property
    def inputs(self) -> list[str]:
        """The quantities this one is computed from."""
        return [a for a in self.args if isinstance(a, str)]

    def expression(self, values: Mapping[str, int] | None = None) -> str:
        """The definition ("a*3"), or with `values` the same with every name replaced by its value ("7*3")."""
        left, right = (values[a] if values is not None and isinstance(a, str) else a for a in self.args)
        return f"{left}{self.op}{right}"

    def definition(self) -> str:
        return f"{self.name}={self.expression()}"

    def step(self, values: Mapping[str, int]) -> str:
        """The canonical step that computes this quantity."""
        shown = f"={self.expression(values)}" if self.inputs else ""
        return f"{self.name}={self.expression()}{shown}={self.value}"


@dataclass(frozen=True)
class Graph:
    """The quantities of a problem in definition order (each after its inputs) and the one asked for."""

    nodes: tuple[Node, ...]
    target: str

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def values(self) -> dict[str, int]:
        return {n.name: n.value for n in self.nodes}

    def value_of(self, operand: Operand) -> int:
        """The value of a quantity name, or the number itself."""
        return self.values[operand] if isinstance(operand, str) else operand

    @property
    def answer(self) -> int:
        return self.by_name[self.target].value

    @property
    def question(self) -> str:
        return ", ".join(n.definition() for n in self.nodes) + f". Find {self.target}."

    @cached_property
    def needed(self) -> frozenset[str]:
        """The quantities the answer depends on, the target included."""
        seen: set[str] = set()
        todo = [self.target]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.by_name[name].inputs)
        return frozenset(seen)

    @property
    def solution_steps(self) -> list[str]:
        """The canonical solution: each needed quantity in definition order, then the answer line."""
        steps = [n.step(self.values) for n in self.nodes if n.name in self.needed]
        return steps + [f"answer={self.answer}"]

    @property
    def solution(self) -> str:
        return "\n".join(self.solution_steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "nodes": [{"name": n.name, "value": n.value, "op": n.op, "args": list(n.args)} for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        nodes = tuple(Node(d["name"], int(d["value"]), d["op"], tuple(d["args"])) for d in data["nodes"])
        return cls(nodes, data["target"])

    @classmethod
    def from_question(cls, question: str) -> Graph:
        """Rebuild the graph from its question text (values are recomputed); ValueError if it is malformed."""
        match = _QUESTION.fullmatch(question.strip()[:MAX_QUESTION_CHARS])
        if not match:
            raise ValueError(f"not a lab question: {question[:80]!r}")
        values: dict[str, int] = {}
        nodes = [_parse_definition(text, values) for text in match.group(1).split(", ")]
        if match.group(2) not in values:
            raise ValueError(f"the question asks for undefined quantity '{match.group(2)}'")
        return cls(tuple(nodes), match.group(2))


@lru_cache(maxsize=4096)
def graph_of(question: str) -> Graph:
    """The graph of a question, cached (search strategies check many solutions to the same problems)."""
    return Graph.from_question(question)


def _parse_definition(text: str, values: dict[str, int]) -> Node:
    """One "name=x op y" definition; `values` holds the quantities defined so far and gains this one."""
    match = _OP_DEF.fullmatch(text)
    if not match:
        raise ValueError(f"not a definition: {text!r}")
    name, left, op, right = match.groups()
    args = (parse_operand(left), parse_operand(right))
    operands = [values.get(a) if isinstance(a, str) else a for a in args]
    value = None if None in operands else apply_op(op, *operands)  # type: ignore[arg-type]
    if value is None:
        raise ValueError(f"definition '{text}' uses an undefined quantity or divides by zero")
    if name in values:
        raise ValueError(f"quantity '{name}' is defined twice")
    values[name] = value
    return Node(name, value, op, args)

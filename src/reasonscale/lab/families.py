"""Related lab task families: the same computation-graph questions, solved in other written forms.

The lab's own solution form (the target task of the weak-to-strong experiment) writes each needed quantity as
definition, operand values and result, then `answer=N`. A family computes exactly the same quantities in the same
order but writes them differently, and never with an answer line the lab task reads (`answer=`, `the answer is`),
so a model that knows only the families has the skill but not the target's form:

  target    c=2*a=2*13=26        answer=13
  values    c=2*13=26            so f=13
  arrow     c: 2*a -> 26         result: 13
  backward  26=2*13=c            13 is f

A document is several solved problems of one family, each `question\\n solution` and a blank line between them, as
the lab task lays out few-shot prompts: a model pretrained on documents learns to continue in the form of the
examples before it, so demonstrations in the target form can show it that form.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from reasonscale.lab.graph import Graph, Node
from reasonscale.lab.splits import train_problem


def _values(node: Node, values: dict[str, int]) -> str:
    return f"{node.name}={node.expression(values)}={node.value}"


def _arrow(node: Node, values: dict[str, int]) -> str:
    return f"{node.name}: {node.expression()} -> {node.value}"


def _backward(node: Node, values: dict[str, int]) -> str:
    return f"{node.value}={node.expression(values)}={node.name}"


Step = Callable[[Node, dict[str, int]], str]
FAMILIES: dict[str, tuple[Step, Callable[[Graph], str]]] = {
    "values": (_values, lambda g: f"so {g.target}={g.answer}"),
    "arrow": (_arrow, lambda g: f"result: {g.answer}"),
    "backward": (_backward, lambda g: f"{g.answer} is {g.target}"),
}


def solve_as(family: str, graph: Graph) -> str:
    """The solution of `graph` written in `family`'s form (the needed quantities in definition order)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown lab family '{family}': use one of {', '.join(FAMILIES)}")
    step, final = FAMILIES[family]
    lines = [step(n, graph.values) for n in graph.nodes if n.name in graph.needed]
    return "\n".join([*lines, final(graph)])


def document(
    index: int, levels: list[int], families: list[str], max_chars: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Document `index`: solved problems (question, solution) of one family, of random levels, as many as fit in
    `max_chars` (at least one). A pure function of its arguments; problems come from the lab's train split under
    keys of their own ("w2s-doc/..."), never the evaluation problems."""
    rng = random.Random(f"w2s-doc/{seed}/{index}")
    family = rng.choice(families)
    examples: list[tuple[str, str]] = []
    used = 0
    for j in range(64):
        graph = train_problem(rng.choice(levels), f"w2s-doc/{seed}/{index}/{j}")
        if graph is None:
            continue
        pair = (graph.question, solve_as(family, graph))
        size = len(pair[0]) + len(pair[1]) + 3
        if examples and used + size > max_chars:
            break
        examples.append(pair)
        used += size
    return examples

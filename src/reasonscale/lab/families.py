"""Related lab task families: the same computation-graph questions, solved in other written layouts.

The lab's own solution form (the target task of the weak-to-strong experiment) writes each needed quantity as
name, definition, operand values and result joined by "=", then `answer=N`. A family computes exactly the same
quantities in the same order and shows the same parts, but joins them with other separators; a layout is drawn per
document (or per single problem):

  target      c=2*a=2*13=26            answer=13
  a family    c: 2*a -> 2*13 = 26      answer=13
  another     c := 2*a; 2*13, 26       answer=13

A layout never joins all three step parts with "=", so no family solution is a target solution. The answer line
is shared, as a convention ("The answer is") is shared by math text in the wild: a model that knows only the
families writes answers the lab task can grade, in steps the target never uses. Because the layout changes from
document to document and stays fixed within one, a model pretrained on documents learns to continue in the layout
of the examples before it, so demonstrations in the target's layout can show it that layout.

A document is several solved problems of one layout, each `question\\n solution` and a blank line between them, as
the lab task lays out few-shot prompts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from reasonscale.lab.graph import Graph, Node
from reasonscale.lab.splits import train_problem

SEPARATORS = ("=", " = ", ": ", " -> ", ", ", " is ", "; ", " := ")
LAYOUT_SPACE = {"separators": SEPARATORS, "answer": "answer="}  # what the documents draw from


@dataclass(frozen=True)
class Layout:
    """How a family writes a solution: each step is name, definition, operand values and result (operand values
    only when the definition names other quantities), joined by `steps`; the last line is `answer=N`."""

    steps: tuple[str, str, str]

    def step(self, node: Node, values: dict[str, int]) -> str:
        to_definition, to_values, to_result = self.steps
        shown = f"{to_values}{node.expression(values)}" if node.inputs else ""
        return f"{node.name}{to_definition}{node.expression()}{shown}{to_result}{node.value}"

    def solve(self, graph: Graph) -> str:
        """The solution of `graph` in this layout (the needed quantities in definition order, then the answer)."""
        lines = [self.step(n, graph.values) for n in graph.nodes if n.name in graph.needed]
        return "\n".join([*lines, f"answer={graph.answer}"])


TARGET = Layout(("=", "=", "="))  # the lab task's own form: never a family


def is_family(layout: Layout) -> bool:
    """Whether `layout` is not the target's."""
    return layout.steps != TARGET.steps


def random_layout(rng: random.Random) -> Layout:
    """A family layout drawn uniformly from the layout space (redrawn while it is the target's)."""
    while True:
        layout = Layout((rng.choice(SEPARATORS), rng.choice(SEPARATORS), rng.choice(SEPARATORS)))
        if is_family(layout):
            return layout


def document(index: int, levels: list[int], max_chars: int, seed: int = 0, kind: str = "doc") -> list[tuple[str, str]]:
    """Document `index` of `kind`: solved problems (question, solution) in one random family layout, of random
    levels, as many as fit in `max_chars` (at least one: a small `max_chars` gives single problems). A pure function
    of its arguments; problems come from the lab's train split under keys of their own ("w2s-<kind>/..."), never the
    evaluation problems."""
    rng = random.Random(f"w2s-{kind}/{seed}/{index}")
    layout = random_layout(rng)
    examples: list[tuple[str, str]] = []
    used = 0
    for j in range(64):
        graph = train_problem(rng.choice(levels), f"w2s-{kind}/{seed}/{index}/{j}")
        if graph is None:
            continue
        pair = (graph.question, layout.solve(graph))
        size = len(pair[0]) + len(pair[1]) + 3
        if examples and used + size > max_chars:
            break
        examples.append(pair)
        used += size
    return examples

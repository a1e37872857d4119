"""Graph of thoughts (Besta et al. 2024): a plan of operations run by a controller over a set of thoughts.

A thought is a partial or finished solution of one goal: the problem itself, or a sub-goal that `split` cut out
of it. Operations (configured in order as `operations`):

- `split`: replace each problem's thought by one thought per sub-goal. On the lab domain the sub-goals are the
  independent branches of the question's computation graph: from the asked quantity, each operation that combines
  two computed quantities is split into its two inputs, `depth` levels down, and each is asked for by a
  sub-question (the same definitions, or with `prune` only those it needs; only the question's structure is read,
  never a value). Elsewhere a problem is its only goal.
- `generate`: `k` (default: the budget N) complete solutions from each thought, step by step.
- `score`: the verifier's value of each thought.
- `keep_best`: the best `k` (default 1) thoughts per goal.
- `aggregate`: merge the thoughts of `neighbours` different goals of a problem into one thought of the problem:
  each contributes its verified steps (those before its first step valued below `threshold`, answer lines
  dropped); the union, without repeats, in the order the question defines the quantities (lab), is the new
  thought's prefix.
- `refine`: cut each thought back to its verified steps, so the next `generate` continues it from there.

The answer is the verifier-weighted vote over the problem's finished thoughts at the end of the plan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonscale.lab.graph import Graph
from reasonscale.search.stepwise import Beam, SearchResult, StepSearch
from reasonscale.search.strategy import register
from reasonscale.search.topologies.base import TopologyConfig, TopologyStrategy
from reasonscale.types import Problem

_STEP_NAME = re.compile(r"\s*([a-z])\s*=")


class Operation(BaseModel):
    """One operation of the plan; `k` is its count where it takes one (generate, keep_best)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    op: Literal["split", "generate", "score", "keep_best", "aggregate", "refine"]
    k: int | None = Field(None, ge=1)


DEFAULT_PLAN = [
    {"op": "split"},
    {"op": "generate"},
    {"op": "score"},
    {"op": "keep_best", "k": 1},
    {"op": "aggregate"},
    {"op": "generate"},
    {"op": "score"},
]


class GoTConfig(TopologyConfig):
    SHORT: ClassVar[dict[str, str]] = {**TopologyConfig.SHORT, "neighbours": "nb", "threshold": "v"}

    name: Literal["got"] = "got"
    depth: int = Field(1, ge=0, description="levels of combining operations split into sub-goals")
    neighbours: int = Field(2, ge=1, description="thoughts (of different goals) merged by one aggregation")
    threshold: float = Field(0.5, description="steps valued below it end a thought's verified part")
    prune: bool = Field(False, description="lab sub-questions keep only the definitions their quantity needs")
    operations: list[Operation] = Field(default_factory=lambda: [Operation(**o) for o in DEFAULT_PLAN])

    @model_validator(mode="after")
    def _ends_on_the_problem(self) -> GoTConfig:
        ops = [o.op for o in self.operations]
        if ops.count("split") > 1:
            raise ValueError("got: the plan may split once")
        if "split" in ops and "aggregate" not in ops[ops.index("split") :]:
            raise ValueError("got: a 'split' needs a later 'aggregate' to return to the problem")
        return self


@dataclass
class Thought:
    """A beam of goal `goal` (an index into the controller's goals) of problem `beam.problem`."""

    goal: int
    beam: Beam


@dataclass(frozen=True)
class Goal:
    problem: int
    question: str | None  # None: the problem itself


@register
class GoT(TopologyStrategy):
    """Budget N: each `generate` without its own `k` makes N solutions per thought."""

    config_class = GoTConfig
    config: GoTConfig

    def generation_budget(self, n: int) -> float:
        return float(sum(o.k or n for o in self.config.operations if o.op == "generate"))

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        return Controller(search, self.config).run(n)


class Controller:
    """Runs the plan. Sub-goals are searched by a `StepSearch` of their own (their prompt is the problem's with
    the question replaced by the sub-question) whose bill is charged to the problem they came from."""

    def __init__(self, search: StepSearch, config: GoTConfig):
        self.main, self.config = search, config
        self.goals = [Goal(p, None) for p in range(len(search.problems))]
        self.sub: StepSearch | None = None

    def roots(self) -> list[Thought]:
        return [Thought(g, b) for g, b in enumerate(self.main.roots())]

    def run(self, n: int) -> list[SearchResult]:
        thoughts = self.roots()
        for operation in self.config.operations:
            thoughts = getattr(self, operation.op)(thoughts, operation.k or (n if operation.op == "generate" else 1))
        if self.sub is not None:
            for goal, spent in zip(self.goals[len(self.main.problems) :], self.sub.usage):
                self.main.usage[goal.problem] += spent
        return self.main.results(t.beam for t in thoughts if t.goal < len(self.main.problems) and t.beam.done)

    def search_of(self, goal: int) -> StepSearch:
        return self.main if goal < len(self.main.problems) else self.sub  # type: ignore[return-value]

    def split(self, thoughts: list[Thought], _: int) -> list[Thought]:
        problems, prompts = [], []
        out = []
        for thought in thoughts:
            problem = self.main.problems[thought.beam.problem]
            questions = sub_questions(problem.question, self.config.depth, self.config.prune)
            if not questions:
                out.append(thought)
                continue
            for question in questions:
                self.goals.append(Goal(thought.beam.problem, question))
                out.append(Thought(len(self.goals) - 1, Beam(problem=len(problems))))
                problems.append(Problem(f"{problem.id}/{question}", question, "", problem.level))
                prompts.append(self.main.prompts[thought.beam.problem].replace(problem.question, question))
        self.sub = replace(self.main, problems=problems, prompts=prompts)
        return out

    def generate(self, thoughts: list[Thought], k: int) -> list[Thought]:
        out = [t for t in thoughts if t.beam.done]  # a finished solution is kept as it is
        for goal_kind in (True, False):  # the problems' thoughts, then the sub-goals'
            mine = [t for t in thoughts if (t.goal < len(self.main.problems)) == goal_kind and not t.beam.done]
            if not mine:
                continue
            search = self.search_of(mine[0].goal)
            ends = search.finish(search.expand([t.beam for t in mine], k))
            out += [Thought(mine[i // k].goal, b) for i, b in enumerate(ends)]
        return out

    def score(self, thoughts: list[Thought], _: int) -> list[Thought]:
        for goal_kind in (True, False):
            mine = [t.beam for t in thoughts if (t.goal < len(self.main.problems)) == goal_kind]
            if mine:
                self.search_of(0 if goal_kind else len(self.main.problems)).score(mine)
        return thoughts

    def keep_best(self, thoughts: list[Thought], k: int) -> list[Thought]:
        by_goal: dict[int, list[Thought]] = defaultdict(list)
        for t in thoughts:
            by_goal[t.goal].append(t)
        return [t for mine in by_goal.values() for t in sorted(mine, key=lambda t: -t.beam.score)[:k]]

    def aggregate(self, thoughts: list[Thought], _: int) -> list[Thought]:
        by_problem: dict[int, list[Thought]] = defaultdict(list)
        for t in thoughts:
            by_problem[self.goals[t.goal].problem].append(t)
        out = []
        for problem, mine in by_problem.items():
            for start in range(0, len(mine), self.config.neighbours):
                group = mine[start : start + self.config.neighbours]
                steps = merge_steps([self.verified(t) for t in group], self.main.problems[problem].question)
                text = "".join(s + self.main.task.step_delimiter for s in steps)
                out.append(Thought(problem, Beam(problem=problem, text=text)))
        return out

    def refine(self, thoughts: list[Thought], _: int) -> list[Thought]:
        out = []
        for t in thoughts:
            steps = self.verified(t)
            text = "".join(s + self.main.task.step_delimiter for s in steps)
            out.append(Thought(t.goal, Beam(problem=t.beam.problem, tree=t.beam.tree, text=text)))
        return out

    def verified(self, thought: Thought) -> list[str]:
        """The thought's steps before its first step valued below the threshold, answer lines dropped."""
        search = self.search_of(thought.goal)
        steps = search.steps(thought.beam)
        good = []
        for step, value in zip(steps, thought.beam.step_scores):
            if value < self.config.threshold:
                break
            if search.task.extract_answer(step) is None:
                good.append(step)
        return good


def sub_questions(question: str, depth: int, prune: bool = False) -> list[str]:
    """The sub-questions of a lab question's independent branches, `depth` combining operations down from the
    asked quantity: the same definitions asking for the branch's quantity instead (with `prune`, only the
    definitions it needs); [] when the question is no lab question or has nothing to split."""
    try:
        graph = Graph.from_question(question)
    except ValueError:
        return []
    heads = [graph.target]
    for _ in range(depth):
        heads = [i for h in heads for i in (graph.by_name[h].inputs if len(graph.by_name[h].inputs) == 2 else [h])]
    if heads == [graph.target]:
        return []
    return [_sub_question(graph, head, prune) for head in dict.fromkeys(heads)]


def _sub_question(graph: Graph, head: str, prune: bool) -> str:
    needed = Graph(graph.nodes, head).needed
    kept = [n for n in graph.nodes if n.name in needed or not prune]
    return ", ".join(n.definition() for n in kept) + f". Find {head}."


def merge_steps(parts: Sequence[Sequence[str]], question: str) -> list[str]:
    """The union of the parts' steps without repeats; on the lab, in the order the question defines their
    quantities (each after its inputs), elsewhere in the parts' order."""
    steps = list(dict.fromkeys(s for part in parts for s in part))
    try:
        order = {n.name: i for i, n in enumerate(Graph.from_question(question).nodes)}
    except ValueError:
        return steps
    position = {s: order.get(m.group(1), len(order)) if (m := _STEP_NAME.match(s)) else len(order) for s in steps}
    return sorted(steps, key=lambda s: position[s])


"""Graph of thoughts (Besta et al. 2024): a plan of operations run by a controller over a set of thoughts.

A thought is a partial or finished solution of one goal: the problem itself, or a sub-goal that `split` cut out
of it. Operations (configured in order as `operations`):

- `split`: replace each problem's thought by one thought per sub-goal. On the lab domain the sub-goals are the
  independent branches of the question's computation graph: from the asked quantity, each operation that combines
  two computed quantities is split into its two inputs, `depth` levels down, and each is asked for by a
  sub-question (the same definitions, or with `prune` only those it needs; only the question's structure is read,
  never a value). Elsewhere a problem is its only goal, unless `split_prompt` is set: then (on any task) the
  policy is asked for a numbered list of sub-questions (`prompted.py`); a reply without two is no decomposition.
- `generate`: `k` (default: the budget N) complete solutions from each thought, step by step.
- `score`: the verifier's value of each thought.
- `keep_best`: the best `k` (default 1) thoughts per goal.
- `aggregate`: merge the thoughts of `neighbours` different goals of a problem into one thought of the problem:
  each contributes its verified steps (those before its first step valued below `threshold`, answer lines
  dropped); the union, without repeats, in the order the question defines the quantities (lab), is the new
  thought's prefix. With `merge_prompt`, sub-goals' thoughts are merged by prompting instead: the problem's prompt
  with its question followed by each sub-question and its thought's solution, solved by the next `generate`.
- `refine`: cut each thought back to its verified steps, so the next `generate` continues it from there.

The answer is the verifier-weighted vote over the problem's finished thoughts at the end of the plan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonscale.lab.graph import Graph
from reasonscale.search.stepwise import Beam, SearchResult, StepSearch
from reasonscale.search.strategy import register
from reasonscale.search.topologies.base import TopologyConfig, TopologyStrategy
from reasonscale.search.topologies.prompted import fill, parse_list, prompt_entry, render, uses_chat
from reasonscale.types import Problem

_STEP_NAME = re.compile(r"\s*([a-z])\s*=")
SPLIT_KEYS = ("template", "max_subgoals", "max_chars", "max_tokens")
MERGE_KEYS = ("template", "part")


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
    ADDED: ClassVar[frozenset[str]] = frozenset({"split_prompt", "merge_prompt"})

    name: Literal["got"] = "got"
    depth: int = Field(1, ge=0, description="levels of combining operations split into sub-goals")
    neighbours: int = Field(2, ge=1, description="thoughts (of different goals) merged by one aggregation")
    threshold: float = Field(0.5, description="steps valued below it end a thought's verified part")
    prune: bool = Field(False, description="lab sub-questions keep only the definitions their quantity needs")
    operations: list[Operation] = Field(default_factory=lambda: [Operation(**o) for o in DEFAULT_PLAN])
    split_prompt: str | dict[str, Any] | None = Field(
        None, description="split by prompting the policy for sub-questions: got_split, FILE.yaml#NAME, or inline"
    )
    merge_prompt: str | dict[str, Any] | None = Field(
        None, description="aggregate sub-goals by prompting with their solutions: got_merge, FILE.yaml#NAME, or inline"
    )

    @model_validator(mode="after")
    def _ends_on_the_problem(self) -> GoTConfig:
        ops = [o.op for o in self.operations]
        if ops.count("split") > 1:
            raise ValueError("got: the plan may split once")
        if "split" in ops and "aggregate" not in ops[ops.index("split") :]:
            raise ValueError("got: a 'split' needs a later 'aggregate' to return to the problem")
        if self.split_prompt is not None:
            self.split_prompt = prompt_entry(self.split_prompt, SPLIT_KEYS, "got.split_prompt")
        if self.merge_prompt is not None:
            self.merge_prompt = prompt_entry(self.merge_prompt, MERGE_KEYS, "got.merge_prompt")
        return self


MAIN, SUB, MERGED = 0, 1, 2  # the searches a thought's beam belongs to: the problems, sub-goals, merge prompts


@dataclass
class Thought:
    """A beam of goal `goal` (an index into the controller's goals); `beam.problem` indexes the problems of the
    search `space` it belongs to (the problems themselves, the sub-goals, or the merge prompts)."""

    goal: int
    beam: Beam
    space: int = MAIN


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
    """Runs the plan. Sub-goals, and prompted merges, are searched by a `StepSearch` of their own (their prompt is
    the problem's with the question replaced by the sub-question, or by the merge prompt) whose bill is charged to
    the problem they came from."""

    def __init__(self, search: StepSearch, config: GoTConfig):
        self.main, self.config = search, config
        self.goals = [Goal(p, None) for p in range(len(search.problems))]
        self.spaces = {MAIN: search}
        self.owners: dict[int, list[int]] = {}  # a search's problem index -> the problem it serves
        self.details: dict[int, dict[str, Any]] = {}  # per problem: what a prompted split made of it

    def roots(self) -> list[Thought]:
        return [Thought(g, b) for g, b in enumerate(self.main.roots())]

    def run(self, n: int) -> list[SearchResult]:
        thoughts = self.roots()
        for operation in self.config.operations:
            thoughts = getattr(self, operation.op)(thoughts, operation.k or (n if operation.op == "generate" else 1))
        for space, owners in self.owners.items():
            for problem, spent in zip(owners, self.spaces[space].usage):
                self.main.usage[problem] += spent
        finished = (replace(t.beam, problem=self.problem_of(t)) for t in thoughts if t.space != SUB and t.beam.done)
        results = self.main.results(finished)
        for problem, details in self.details.items():
            results[problem].details = details
        return results

    def problem_of(self, thought: Thought) -> int:
        return self.goals[thought.goal].problem

    def by_space(self, thoughts: list[Thought]) -> dict[int, list[Thought]]:
        spaces: dict[int, list[Thought]] = defaultdict(list)
        for t in thoughts:
            spaces[t.space].append(t)
        return spaces

    def split(self, thoughts: list[Thought], _: int) -> list[Thought]:
        if self.config.split_prompt is not None:
            questions = self.asked(thoughts)
        else:
            asked = [self.main.problems[t.beam.problem].question for t in thoughts]
            questions = [sub_questions(q, self.config.depth, self.config.prune) for q in asked]
        problems, prompts, owners, out = [], [], [], []
        for thought, mine in zip(thoughts, questions):
            if not mine:
                out.append(thought)
                continue
            problem = self.main.problems[thought.beam.problem]
            for question in mine:
                self.goals.append(Goal(thought.beam.problem, question))
                out.append(Thought(len(self.goals) - 1, Beam(problem=len(problems)), SUB))
                problems.append(Problem(f"{problem.id}/{question}", question, "", problem.level))
                prompts.append(self.main.prompts[thought.beam.problem].replace(problem.question, question))
                owners.append(thought.beam.problem)
        self.spaces[SUB], self.owners[SUB] = replace(self.main, problems=problems, prompts=prompts), owners
        return out

    def asked(self, thoughts: list[Thought]) -> list[list[str]]:
        """The sub-questions the policy writes for each problem (the split prompt, one reply each, charged to
        the problem); a reply with fewer than two parsed is no decomposition ([]), noted in the problem's details."""
        entry, search = self.config.split_prompt, self.main
        assert isinstance(entry, dict)
        chat = uses_chat(search.task, search.problems, search.prompts)
        limit = str(entry["max_subgoals"])
        texts = [
            fill(entry["template"], question=search.problems[t.beam.problem].question, max_subgoals=limit)
            for t in thoughts
        ]
        params = replace(search.params, n=1, max_tokens=int(entry["max_tokens"]), stop=())
        replies = search.engine.generate([render(search.engine, text, chat) for text in texts], params)
        out = []
        for thought, completions in zip(thoughts, replies):
            search.usage[thought.beam.problem].add_completions(completions, search.engine.num_parameters)
            questions = parse_list(completions[0].text, int(entry["max_subgoals"]), int(entry["max_chars"]))
            questions = questions if len(questions) >= 2 else []
            self.details[thought.beam.problem] = {"subgoals": questions, "split_fallback": not questions}
            out.append(questions)
        return out

    def generate(self, thoughts: list[Thought], k: int) -> list[Thought]:
        out = [t for t in thoughts if t.beam.done]  # a finished solution is kept as it is
        for space, mine in self.by_space([t for t in thoughts if not t.beam.done]).items():
            search = self.spaces[space]
            ends = search.finish(search.expand([t.beam for t in mine], k))
            out += [Thought(mine[i // k].goal, b, space) for i, b in enumerate(ends)]
        return out

    def score(self, thoughts: list[Thought], _: int) -> list[Thought]:
        for space, mine in self.by_space(thoughts).items():
            self.spaces[space].score([t.beam for t in mine])
        return thoughts

    def keep_best(self, thoughts: list[Thought], k: int) -> list[Thought]:
        by_goal: dict[int, list[Thought]] = defaultdict(list)
        for t in thoughts:
            by_goal[t.goal].append(t)
        return [t for mine in by_goal.values() for t in sorted(mine, key=lambda t: -t.beam.score)[:k]]

    def aggregate(self, thoughts: list[Thought], _: int) -> list[Thought]:
        """Groups of `neighbours` thoughts of a problem become one thought of it: with a merge prompt, sub-goals'
        thoughts become a prompt to solve the problem with their solutions; otherwise a merged verified prefix."""
        by_problem: dict[int, list[Thought]] = defaultdict(list)
        for t in thoughts:
            by_problem[self.problem_of(t)].append(t)
        merged: list[tuple[int, str]] = []  # (problem, merge prompt)
        out = []
        for problem, mine in by_problem.items():
            question = self.main.problems[problem].question
            prompted = self.config.merge_prompt is not None and all(t.space == SUB for t in mine)
            for start in range(0, len(mine), self.config.neighbours):
                group = mine[start : start + self.config.neighbours]
                if prompted:
                    prompt = self.main.prompts[problem].replace(question, self.merge_text(question, group))
                    merged.append((problem, prompt))
                    out.append(Thought(problem, Beam(problem=len(merged) - 1), MERGED))
                    continue
                steps = merge_steps([self.verified(t) for t in group], question)
                text = "".join(s + self.main.task.step_delimiter for s in steps)
                out.append(Thought(problem, Beam(problem=problem, text=text)))
        if merged:
            owners = [p for p, _ in merged]
            problems = [self.main.problems[p] for p in owners]
            self.spaces[MERGED] = replace(self.main, problems=problems, prompts=[prompt for _, prompt in merged])
            self.owners[MERGED] = owners
        return out

    def merge_text(self, question: str, group: list[Thought]) -> str:
        """The merge prompt's question: the problem's, then each sub-question of the group with its solution."""
        entry, task = self.config.merge_prompt, self.main.task
        assert isinstance(entry, dict)
        parts = "".join(
            fill(
                entry["part"],
                number=str(i + 1),
                question=self.goals[t.goal].question or "",
                solution=t.beam.text.strip(),
                answer=task.extract_answer(t.beam.text) or "unknown",
            )
            for i, t in enumerate(group)
        )
        return fill(entry["template"], question=question, parts=parts)

    def refine(self, thoughts: list[Thought], _: int) -> list[Thought]:
        out = []
        for t in thoughts:
            steps = self.verified(t)
            text = "".join(s + self.main.task.step_delimiter for s in steps)
            out.append(Thought(t.goal, Beam(problem=t.beam.problem, tree=t.beam.tree, text=text), t.space))
        return out

    def verified(self, thought: Thought) -> list[str]:
        """The thought's steps before its first step valued below the threshold, answer lines dropped."""
        search = self.spaces[thought.space]
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


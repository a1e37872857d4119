"""The lab task: generated computation-graph problems, one step per line, graded by exact integer match."""

from __future__ import annotations

import re
from collections.abc import Sequence

from reasonscale.config import TaskConfig
from reasonscale.lab.graph import Graph, graph_of
from reasonscale.lab.oracle import OracleResult, check_solution, final_answer, is_step, parse_answer
from reasonscale.lab.splits import load_problems, split_graphs
from reasonscale.tasks.base import Task
from reasonscale.types import Problem


class LabTask(Task):
    """Problems of the configured split (`task.split`: test, val or train), `lab.per_level` of each level."""

    name = "lab"
    step_delimiter = "\n"
    solution_stop = ("\n\n",)

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg
        if cfg.step_delimiter is not None:
            self.step_delimiter = cfg.step_delimiter

    def load(self) -> list[Problem]:
        lab = self.cfg.lab
        problems = load_problems(self.cfg.split, lab.levels, lab.per_level, lab.seed)
        return problems[: self.cfg.limit] if self.cfg.limit else problems

    def format_prompt(self, problem: Problem) -> str:
        """The question, after `few_shot` solved training problems, then a newline to start the solution."""
        shots = [g.question + "\n" + g.solution + "\n\n" for g in self._examples()]
        return "".join(shots) + problem.question + "\n"

    def _examples(self) -> list[Graph]:
        """`few_shot` training problems of the easiest configured level."""
        return split_graphs("train", min(self.cfg.lab.levels), self.cfg.few_shot) if self.cfg.few_shot else []

    def extract_answer(self, solution: str) -> str | None:
        """The answer of the solution's first answer line, the one the oracle grades (None if it has none; with
        `strict_format`, also None when a line before it is not a step in the lab's form)."""
        steps = self.split_steps(solution)
        answer = final_answer(steps)
        if answer is not None and self.cfg.lab.strict_format:
            before = steps[: next(i for i, step in enumerate(steps) if parse_answer(step) is not None)]
            answer = answer if all(is_step(step) for step in before) else None
        return None if answer is None else str(answer)

    def normalize(self, answer: str) -> str:
        text = answer.strip()
        return str(int(text)) if re.fullmatch(r"-?\d{1,30}", text) else text

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return [self.normalize(ref) == self.normalize(pred) for ref, pred in pairs]

    def oracle(self, problem: Problem, steps: Sequence[str]) -> OracleResult:
        """The exact verdict on each step of a candidate solution to `problem`."""
        return check_solution(graph_of(problem.question), steps)

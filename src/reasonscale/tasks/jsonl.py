"""User data in JSONL with configurable field names, graded as exact numbers or as LaTeX (Math-Verify).

Also the base of the gsm8k and math tasks, which fix the file layout, field names and grader.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from reasonscale.config import TaskConfig
from reasonscale.grading.checkers import AnswerChecker, GraderKind, checker
from reasonscale.tasks.base import Task
from reasonscale.tasks.io import DataError, iter_jsonl, require
from reasonscale.types import Problem

INSTRUCTIONS: dict[GraderKind, str] = {
    "numeric": 'Solve each problem step by step. End with "The answer is N." where N is a number.',
    "math": "Solve each problem step by step. Put the final answer in \\boxed{}.",
}


def parse_level(value: Any) -> int | None:
    """A difficulty level from `3` or `"Level 3"`; None when there is no number in it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.search(r"\d+", str(value)) if value is not None else None
    return int(match.group()) if match else None


def check_unique_ids(problems: Sequence[Problem], lines: Sequence[int], path: Path) -> None:
    """A DataError naming the first id that occurs on more than one line (results are stored by id)."""
    seen: dict[str, list[int]] = {}
    for problem, line in zip(problems, lines):
        seen.setdefault(problem.id, []).append(line)
    for problem_id, where in seen.items():
        if len(where) > 1:
            raise DataError(
                f"{path}: id '{problem_id}' is on lines {', '.join(map(str, where))}; ids must be unique "
                "(fix the ids, or drop task.fields.id to number the rows by line)"
            )


class JsonlTask(Task):
    """Problems from `task.path`, one JSON object a line; field names come from `task.fields`.

    Ids are the `fields.id` value or the line number. `few_shot: k` takes worked examples from the first k rows of
    `train.jsonl` beside the data file (subclasses that know how to write a worked solution support it).
    """

    name = "jsonl"
    question_label = "Question"
    answer_label = "Answer"
    grader: GraderKind | None = None  # fixed by subclasses; None: taken from the config

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        self.kind: GraderKind = self.grader or cfg.grader
        self.checker: AnswerChecker = checker(self.kind)
        self.step_delimiter = cfg.step_delimiter or type(self).step_delimiter
        self.solution_stop = (f"\n{self.question_label}:",)
        self.examples = self._few_shot_examples() if cfg.few_shot else []

    def data_path(self) -> Path:
        if self.cfg.path is None:
            raise DataError(f"the {self.name} task needs task.path (a JSONL file)")
        return Path(self.cfg.path)

    def train_path(self) -> Path:
        return self.data_path().with_name("train.jsonl")

    def problem(self, index: int, line: int, row: dict[str, Any], where: str) -> Problem:
        """The Problem in one row (`index` counts rows from 0, `line` is the file's line number)."""
        fields = self.cfg.fields
        return Problem(
            id=str(require(row, fields.id, where)) if fields.id else str(line),
            question=str(require(row, fields.question, where)),
            answer=str(require(row, fields.answer, where)),
            level=parse_level(row.get(fields.level)) if fields.level else None,
        )

    def worked_solution(self, row: dict[str, Any], where: str) -> str:
        """A row's reference solution written as few-shot steps."""
        raise DataError(f"the {self.name} task has no worked solutions for few-shot prompts: set task.few_shot: 0")

    def load(self) -> list[Problem]:
        path = self.data_path()
        skip = self.cfg.few_shot if path.resolve() == self.train_path().resolve() else 0  # never test on examples
        rows = islice(enumerate(iter_jsonl(path)), skip, None if self.cfg.limit is None else skip + self.cfg.limit)
        problems, lines = [], []
        for index, (line, row) in rows:
            problems.append(self.problem(index, line, row, f"{path}:{line}"))
            lines.append(line)
        if not problems:
            raise DataError(f"no problems in {path}")
        check_unique_ids(problems, lines, path)
        return problems

    def _few_shot_examples(self) -> list[tuple[str, str]]:
        path = self.train_path()
        if not path.is_file():
            raise DataError(f"{path}: file not found (few_shot: {self.cfg.few_shot} takes examples from it)")
        rows = islice(iter_jsonl(path), self.cfg.few_shot)
        return [
            (self.problem(0, line, row, f"{path}:{line}").question, self.worked_solution(row, f"{path}:{line}"))
            for line, row in rows
        ]

    def format_prompt(self, problem: Problem) -> str:
        shots = [f"{self.question_label}: {q}\n{self.answer_label}: {s}" for q, s in self.examples]
        asked = f"{self.question_label}: {problem.question}\n{self.answer_label}:"
        return "\n\n".join([INSTRUCTIONS[self.kind], *shots, asked])

    def extract_answer(self, solution: str) -> str | None:
        return self.checker.extract(solution)

    def normalize(self, answer: str) -> str:
        return self.checker.normalize(answer)

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return self.checker.equivalent(pairs)

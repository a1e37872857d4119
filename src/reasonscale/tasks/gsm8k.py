"""GSM8K: grade-school word problems; the reference solution ends with `#### <number>`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from reasonscale.grading.extract import after_marker
from reasonscale.tasks.io import DataError, find_data_dir, require
from reasonscale.tasks.jsonl import JsonlTask
from reasonscale.types import Problem

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, e.g. <<16-3-4=9>>


def final_answer(solution: str, where: str) -> str:
    """The number after `####`, without thousands separators."""
    answer = after_marker(solution, "####")
    if answer is None:
        raise DataError(f"{where}: answer has no '#### <number>' line")
    return answer.replace(",", "")


class GSM8KTask(JsonlTask):
    """Upstream GSM8K JSONL (`question`, `answer`), by default from `shared/data/gsm8k/{split}.jsonl`.

    Ids are `gsm8k-{split}-{row}`; answers are graded as exact numbers. Few-shot examples are the first train
    problems, written as steps joined by the step delimiter and ending with "The answer is N."
    """

    name = "gsm8k"
    grader = "numeric"

    def data_path(self) -> Path:
        if self.cfg.path is not None:
            return Path(self.cfg.path)
        return find_data_dir("gsm8k") / f"{self.cfg.split}.jsonl"

    def problem(self, index: int, line: int, row: dict[str, Any], where: str) -> Problem:
        solution = str(require(row, "answer", where))
        return Problem(
            id=f"gsm8k-{self.cfg.split}-{index}",
            question=str(require(row, "question", where)),
            answer=final_answer(solution, where),
            meta={"solution": solution},
        )

    def worked_solution(self, row: dict[str, Any], where: str) -> str:
        solution = _CALCULATOR.sub("", str(require(row, "answer", where)))
        steps = [s.strip() for s in solution.split("####")[0].splitlines() if s.strip()]
        return self.join_steps([*steps, f"The answer is {final_answer(solution, where)}."])

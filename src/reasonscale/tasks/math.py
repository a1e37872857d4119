"""MATH and MATH-500: competition problems with LaTeX answers, graded with Math-Verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonscale.tasks.io import find_data_dir, require
from reasonscale.tasks.jsonl import JsonlTask, parse_level
from reasonscale.types import Problem


class MathTask(JsonlTask):
    """MATH JSONL (`problem`, `answer`, optional `solution`, `level`, `subject`, `unique_id`).

    By default reads `shared/data/math500/{split}.jsonl`. Ids are `unique_id`, else `math-{split}-{row}`. The final
    answer is the last `\\boxed{}` of a solution. Few-shot examples are the `solution`s of the first train problems.
    """

    name = "math"
    question_label = "Problem"
    answer_label = "Solution"
    grader = "math"

    def data_path(self) -> Path:
        if self.cfg.path is not None:
            return Path(self.cfg.path)
        return find_data_dir("math500") / f"{self.cfg.split}.jsonl"

    def problem(self, index: int, line: int, row: dict[str, Any], where: str) -> Problem:
        meta = {key: row[key] for key in ("subject", "solution") if row.get(key) is not None}
        return Problem(
            id=str(row.get("unique_id") or f"math-{self.cfg.split}-{index}"),
            question=str(require(row, "problem", where)),
            answer=str(require(row, "answer", where)),
            level=parse_level(row.get("level")),
            meta=meta,
        )

    def worked_solution(self, row: dict[str, Any], where: str) -> str:
        paragraphs = str(require(row, "solution", where)).split("\n\n")
        return self.join_steps([p.strip() for p in paragraphs if p.strip()])

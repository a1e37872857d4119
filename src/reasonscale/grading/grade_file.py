"""Grade a JSONL file of (reference, prediction) lines: `reasonscale grade FILE.jsonl --task gsm8k|math`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from reasonscale.grading.checkers import AnswerChecker, GraderKind, checker
from reasonscale.tasks.io import iter_jsonl, require

TASK_GRADERS: dict[str, GraderKind] = {"gsm8k": "numeric", "math": "math"}


def _answer(check: AnswerChecker, text: Any) -> str | None:
    """The final answer in a solution, or the text itself when none can be extracted from it."""
    if text is None:
        return None
    text = str(text)
    return check.extract(text) or text.strip() or None


def grade_jsonl(path: str | Path, task_name: str, out: str | Path | None = None) -> tuple[int, float]:
    """Add `extracted` and `correct` to each line of `path`; write the lines to `out` (stdout when None).

    Each line needs `reference` and `prediction` (null: no answer), each a bare answer or a whole solution whose
    final answer the task's extractor finds. Returns (number of lines, accuracy).
    A malformed line raises a DataError that names it.
    """
    if task_name not in TASK_GRADERS:
        raise ValueError(f"unknown task '{task_name}' for grading: use {' or '.join(TASK_GRADERS)}")
    if out is not None and not Path(out).parent.is_dir():
        raise FileNotFoundError(f"--out {out}: the folder {Path(out).parent} does not exist")
    check = checker(TASK_GRADERS[task_name])
    rows, pairs = [], []
    for line, row in iter_jsonl(path):
        reference = require(row, "reference", f"{path}:{line}")
        prediction = require(row, "prediction", f"{path}:{line}", allow_null=True)
        rows.append(row)
        pairs.append((_answer(check, reference) or "", _answer(check, prediction)))
    asked = [(reference, prediction) for reference, prediction in pairs if prediction is not None]
    verdicts = iter(check.equivalent(asked))
    correct = [prediction is not None and next(verdicts) for _, prediction in pairs]
    if out is None:
        _write(sys.stdout, rows, pairs, correct)
    else:
        with Path(out).open("w", encoding="utf-8") as handle:
            _write(handle, rows, pairs, correct)
    return len(rows), sum(correct) / len(rows) if rows else 0.0


def _write(handle: TextIO, rows: list[dict], pairs: list[tuple[str, str | None]], correct: list[bool]) -> None:
    for row, (_, extracted), ok in zip(rows, pairs, correct):
        handle.write(json.dumps({**row, "extracted": extracted, "correct": ok}, ensure_ascii=False) + "\n")

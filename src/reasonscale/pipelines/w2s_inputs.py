"""Generations made elsewhere for the weak-to-strong data stages: JSONL rows of id, question and response.

With `inputs.weak`, its rows are the questions (gold answers, if any, from `inputs.fields.answer`); otherwise the
questions are the task's. `inputs.icl` holds one response per question, `inputs.samples` several.
"""

from __future__ import annotations

from pathlib import Path

from reasonscale.pipelines.w2s_config import Inputs
from reasonscale.tasks import Task
from reasonscale.tasks.io import DataError, iter_jsonl, require
from reasonscale.types import Problem


def read_questions(inputs: Inputs, task: Task) -> list[Problem]:
    if inputs.weak is None:
        return task.load()
    f, problems, seen = inputs.fields, [], set()
    for line, row in iter_jsonl(Path(inputs.weak)):
        where = f"{inputs.weak}:{line}"
        pid = str(require(row, f.id, where))
        if pid in seen:
            raise DataError(f"{where}: id '{pid}' occurs twice")
        seen.add(pid)
        answer = str(row[f.answer]) if f.answer and row.get(f.answer) is not None else ""
        problems.append(Problem(pid, str(require(row, f.question, where)), answer))
    if not problems:
        raise DataError(f"no questions in {inputs.weak}")
    return problems


def read_generations(inputs: Inputs, kind: str, problems: dict[str, Problem]) -> list[dict] | None:
    """The `kind` file's rows (weak, icl or samples) as {id, question, response}; None when it is not given.

    Every row must name a known question; weak and icl files hold at most one response per question."""
    path = getattr(inputs, kind)
    if path is None:
        return None
    f, rows, seen = inputs.fields, [], set()
    for line, row in iter_jsonl(Path(path)):
        where = f"{path}:{line}"
        pid = str(require(row, f.id, where))
        if pid not in problems:
            raise DataError(f"{where}: id '{pid}' is not one of the questions")
        if kind != "samples" and pid in seen:
            raise DataError(f"{where}: a second {kind} response for id '{pid}'")
        seen.add(pid)
        response = require(row, f.response, where)
        if not isinstance(response, str):
            raise DataError(f"{where}: field '{f.response}' must be a string")
        rows.append({"id": pid, "question": problems[pid].question, "response": response})
    return rows

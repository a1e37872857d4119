"""Tasks: JSONL reading and its errors, GSM8K, MATH-500 and user JSONL data; prompts, extraction, grading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonscale.config import FieldNames, TaskConfig
from reasonscale.tasks import build_task
from reasonscale.tasks.gsm8k import GSM8KTask
from reasonscale.tasks.io import DataError, find_data_dir, iter_jsonl, read_jsonl, require
from reasonscale.tasks.jsonl import JsonlTask, parse_level
from reasonscale.tasks.math import MathTask

DATA = Path(__file__).parents[2] / "shared" / "data"
GSM8K = DATA / "gsm8k"
MATH500 = DATA / "math500" / "test.jsonl"
needs_gsm8k = pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason=f"GSM8K data not found in {GSM8K}")
needs_math500 = pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 data not found at {MATH500}")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- JSONL reading -------------------------------------------------------------------------------------------------


def test_read_jsonl_skips_blank_lines_and_numbers_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2}]
    assert [n for n, _ in iter_jsonl(path)] == [1, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', r":2: not valid JSON: Expecting value \(column 7\)"),
        (b'{"a": 1}\n\n[1, 2]\n', r":3: expected a JSON object, got list"),
        (b'{"a": "\xff"}\n', r":1: not valid UTF-8"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"^{path}{message}"):
        list(read_jsonl(path))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path / 'nope.jsonl'}: file not found$"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_require_names_the_field():
    assert require({"q": "x"}, "q", "f:1") == "x"
    with pytest.raises(DataError, match="^f:3: missing field 'answer'$"):
        require({"q": "x"}, "answer", "f:3")
    with pytest.raises(DataError, match="^f:3: field 'answer' is null$"):
        require({"answer": None}, "answer", "f:3")


def test_missing_data_dir_says_to_set_the_path():
    with pytest.raises(DataError, match="set task.path"):
        find_data_dir("no-such-data-set")


@pytest.mark.parametrize(("value", "level"), [(3, 3), ("Level 3", 3), ("Level ?", None), (None, None), (True, None)])
def test_parse_level(value, level):
    assert parse_level(value) == level


# --- GSM8K -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gsm8k() -> GSM8KTask:
    return GSM8KTask(TaskConfig(name="gsm8k", path=str(GSM8K / "test.jsonl")))


@needs_gsm8k
def test_gsm8k_loads_every_problem_with_stable_ids(gsm8k):
    problems = gsm8k.load()
    assert len(problems) == 1319
    assert problems[17].id == "gsm8k-test-17"
    assert len({p.id for p in problems}) == 1319
    assert problems[0].answer == "18"
    assert all("," not in p.answer and "####" in p.meta["solution"] for p in problems)


@needs_gsm8k
def test_every_gsm8k_gold_answer_grades_equal_to_itself(gsm8k):
    problems = gsm8k.load()
    assert all(gsm8k.grade(problems, [p.answer for p in problems]))
    extracted = [gsm8k.extract_answer(p.meta["solution"]) for p in problems]
    assert all(gsm8k.grade(problems, extracted))
    assert gsm8k.grade(problems[:2], [problems[1].answer, None]) == [False, False]


@needs_gsm8k
def test_gsm8k_default_path_and_limit():
    problems = build_task(TaskConfig(name="gsm8k", limit=3)).load()
    assert [p.id for p in problems] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]


@needs_gsm8k
def test_gsm8k_few_shot_prompt_is_deterministic(gsm8k):
    cfg = TaskConfig(name="gsm8k", path=str(GSM8K / "test.jsonl"), few_shot=2, step_delimiter="\n")
    task, problem = GSM8KTask(cfg), gsm8k.load()[0]
    prompt = task.format_prompt(problem)
    assert prompt == GSM8KTask(cfg).format_prompt(problem)
    first_train = next(read_jsonl(GSM8K / "train.jsonl"))
    assert first_train["question"] in prompt and "<<" not in prompt
    assert prompt.count("The answer is ") == 3  # the instruction and two worked examples
    assert prompt.endswith(f"Question: {problem.question}\nAnswer:")
    assert "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72" in prompt


@needs_gsm8k
def test_gsm8k_train_split_skips_its_few_shot_examples():
    problems = GSM8KTask(TaskConfig(name="gsm8k", split="train", few_shot=2, limit=1)).load()
    assert [p.id for p in problems] == ["gsm8k-train-2"]


def test_gsm8k_few_shot_without_train_file_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"question": "1+1?", "answer": "#### 2"}])
    with pytest.raises(DataError, match=f"{tmp_path / 'train.jsonl'}: file not found \\(few_shot: 2"):
        GSM8KTask(TaskConfig(name="gsm8k", path=str(path), few_shot=2))


def test_gsm8k_answer_without_marker_names_the_line(tmp_path):
    path = write_jsonl(
        tmp_path / "test.jsonl", [{"question": "q", "answer": "#### 2"}, {"question": "q", "answer": "2"}]
    )
    with pytest.raises(DataError, match=f"{path}:2: answer has no '#### <number>' line"):
        GSM8KTask(TaskConfig(name="gsm8k", path=str(path))).load()


def test_gsm8k_extraction_and_steps(tmp_path):
    task = GSM8KTask(TaskConfig(name="gsm8k", path=str(tmp_path / "unused.jsonl")))
    solution = "She has 3 + 4 = 7 eggs.\n\nShe sells them for $2 each: 14.\n\nThe answer is $1,014."
    assert task.extract_answer(solution) == "1,014"
    assert task.split_steps(solution) == [
        "She has 3 + 4 = 7 eggs.",
        "She sells them for $2 each: 14.",
        "The answer is $1,014.",
    ]
    assert task.grade([_problem("1014")], [task.extract_answer(solution)]) == [True]
    assert task.group_answers(["$1,014", "1014.00", "1,014 dollars", "14", None]) == [0, 0, 0, 1, None]
    assert task.solution_stop == ("\nQuestion:",)


def _problem(answer: str):
    from reasonscale.types import Problem

    return Problem(id="p", question="q", answer=answer)


# --- MATH --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def math_task() -> MathTask:
    return MathTask(TaskConfig(name="math", path=str(MATH500)))


@needs_math500
def test_math500_loads_with_ids_levels_and_subjects(math_task):
    problems = math_task.load()
    assert len(problems) == 500 and len({p.id for p in problems}) == 500
    assert problems[0].id == "test/precalculus/807.json"
    assert {p.level for p in problems} == {1, 2, 3, 4, 5}
    assert all(p.meta["subject"] and "\\boxed" in p.meta["solution"] for p in problems)


@needs_math500
def test_every_math500_gold_answer_grades_equal_to_itself(math_task):
    problems = math_task.load()
    assert all(math_task.grade(problems, [p.answer for p in problems]))
    assert [math_task.extract_answer(f"So $\\boxed{{{p.answer}}}$.") for p in problems] == [p.answer for p in problems]
    extracted = [math_task.extract_answer(p.meta["solution"]) for p in problems]
    assert all(math_task.grade(problems, extracted))


def test_math_extraction_matches_braces(tmp_path):
    task = MathTask(TaskConfig(name="math", path=str(tmp_path / "unused.jsonl")))
    assert task.extract_answer(r"First \boxed{2}, finally $\boxed{\frac{\sqrt{3}}{2}}$.") == r"\frac{\sqrt{3}}{2}"
    assert task.extract_answer(r"\boxed{\{1,2\}}") == r"\{1,2\}"
    assert task.extract_answer("The answer is 5") is None
    assert "\\boxed{}" in task.format_prompt(_problem("1")) and task.solution_stop == ("\nProblem:",)


def test_math_groups_equivalent_answers(tmp_path):
    task = MathTask(TaskConfig(name="math", path=str(tmp_path / "unused.jsonl")))
    groups = task.group_answers([r"\frac12", "0.5", "2", None, r"\dfrac{1}{2}", "(1,2]", "(1,2)"])
    assert groups[0] == groups[1] == groups[4] and groups[3] is None
    assert len({groups[0], groups[2], groups[5], groups[6]}) == 4


def test_math_rows_without_ids_or_levels(tmp_path):
    path = write_jsonl(
        tmp_path / "test.jsonl",
        [{"problem": "p", "answer": "1", "level": "Level 4"}, {"problem": "p", "answer": "2", "level": "Level ?"}],
    )
    problems = MathTask(TaskConfig(name="math", path=str(path))).load()
    assert [(p.id, p.level) for p in problems] == [("math-test-0", 4), ("math-test-1", None)]


def test_math_few_shot_uses_train_solutions(tmp_path):
    write_jsonl(
        tmp_path / "train.jsonl",
        [{"problem": "What is 1+1?", "answer": "2", "solution": "We add.\n\nSo it is $\\boxed{2}$."}],
    )
    test = write_jsonl(tmp_path / "test.jsonl", [{"problem": "What is 2+2?", "answer": "4"}])
    task = MathTask(TaskConfig(name="math", path=str(test), few_shot=1, step_delimiter="\n"))
    prompt = task.format_prompt(task.load()[0])
    assert (
        "Problem: What is 1+1?\nSolution: We add.\nSo it is $\\boxed{2}$.\n\nProblem: What is 2+2?\nSolution:" in prompt
    )


# --- user JSONL ----------------------------------------------------------------------------------------------------


def test_jsonl_task_with_custom_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"key": "a", "prompt": "2+2?", "target": 4, "difficulty": "Level 2"}\n\n'
        '{"key": "b", "prompt": "half of 1?", "target": "0.5", "difficulty": 1}\n'
    )
    fields = FieldNames(id="key", question="prompt", answer="target", level="difficulty")
    task = build_task(TaskConfig(name="jsonl", path=str(path), fields=fields, grader="numeric"))
    assert isinstance(task, JsonlTask)
    problems = task.load()
    assert [(p.id, p.question, p.answer, p.level) for p in problems] == [
        ("a", "2+2?", "4", 2),
        ("b", "half of 1?", "0.5", 1),
    ]
    assert task.grade(problems, ["The answer is 4.", "1/2"]) == [False, True]
    assert task.grade(problems, [task.extract_answer("2 + 2 = 4. The answer is 4."), "1/2"]) == [True, True]


def test_jsonl_ids_default_to_line_numbers_and_math_grader(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "q1", "answer": "\\\\frac{1}{2}"}\n\n{"question": "q2", "answer": "(1,2]"}\n')
    task = build_task(TaskConfig(name="jsonl", path=str(path), limit=2))
    problems = task.load()
    assert [p.id for p in problems] == ["1", "3"]
    assert task.grade(problems, [task.extract_answer(r"\boxed{0.5}"), "(1,2)"]) == [True, False]


def test_jsonl_task_errors(tmp_path):
    with pytest.raises(DataError, match="needs task.path"):
        build_task(TaskConfig(name="jsonl")).load()
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "q", "answer": "1"}, {"question": "q"}])
    with pytest.raises(DataError, match=f"^{path}:2: missing field 'answer'$"):
        build_task(TaskConfig(name="jsonl", path=str(path))).load()
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DataError, match="few_shot: 0"):
        build_task(TaskConfig(name="jsonl", path=str(path), few_shot=1))

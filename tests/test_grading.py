"""Grading: exact numbers, answer extraction, Math-Verify in workers (traps, hostile inputs), grading files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reasonscale.grading import MathVerifyPool, NumericChecker, Verdict, equivalent_many
from reasonscale.grading.extract import last_boxed
from reasonscale.grading.grade_file import grade_jsonl
from reasonscale.grading.latex import enclosing_brackets, normalize_latex
from reasonscale.grading.numeric import numeric_equal, parse_number
from reasonscale.tasks.io import DataError, read_jsonl

DATA = Path(__file__).parents[2] / "shared" / "data"
MATH500 = DATA / "math500" / "test.jsonl"
needs_math500 = pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 data not found at {MATH500}")


@pytest.fixture(scope="module")
def pool():
    with MathVerifyPool(workers=2, timeout=10.0) as p:
        yield p


# --- exact numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "prediction"),
    [
        ("18", "$18.00"),
        ("1000", "1,000"),
        ("1000", "€1,000"),
        ("-3.5", "-7/2"),
        ("0.75", "3/4"),
        ("50", "50%"),
        ("18", "18 dollars."),
        ("5", "£5"),
        ("10080", "10,080"),
    ],
)
def test_numeric_equal(reference, prediction):
    assert numeric_equal(reference, prediction)


@pytest.mark.parametrize(
    ("reference", "prediction"),
    [
        ("1", "1.0001"),
        ("0.5", "50"),
        ("18", "-18"),
        ("12", "1,2"),
        ("5", "5 hours 30 minutes"),
        ("3", ""),
        ("", ""),
        ("1", "1" + " " * 300),
    ],
)
def test_numeric_not_equal(reference, prediction):
    assert not numeric_equal(reference, prediction)


def test_parse_number_is_exact():
    assert parse_number("0.1") * 3 == parse_number("0.3")
    assert parse_number("1/0") is None and parse_number("1e5") is None


# --- extraction ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        (r"so $\boxed{\frac{1}{\sqrt{2}}}$.", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{1} then \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\fbox{x^{2}}", "x^{2}"),
        (r"\boxed{\text{(C)}} and \boxed {\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{12", None),
        ("no box, 12", None),
        (r"\boxed{}", None),
    ],
)
def test_last_boxed(solution, answer):
    assert last_boxed(solution) == answer


def test_last_boxed_is_bounded():
    start = time.monotonic()
    assert last_boxed("\\boxed{" + "{" * 1_000_000) is None
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        ("9 * 2 = 18\n#### 1,000\nmore text 7", "1,000"),
        ("It costs $5. The answer is $1,234.50 in total. Then 9", "1,234.50"),
        ("the answer is: -7", "-7"),
        ("We get 3 apples, then 4 - 1 = 3, so 12 in all", "12"),
        ("The answer is forty", "forty"),
        ("no numbers here", None),
    ],
)
def test_numeric_extraction(solution, answer):
    assert NumericChecker().extract(solution) == answer


# --- LaTeX forms -----------------------------------------------------------------------------------------------


def test_normalize_latex_keeps_meaning():
    assert normalize_latex(r"$\dfrac{5}{9}$.") == normalize_latex(r"\frac{5}{9}")
    assert normalize_latex(r"\left( 3, \frac{\pi}{2} \right)") == r"(3,\frac{\pi}{2})"
    assert normalize_latex(r"10,\!080") == "10,080"
    assert normalize_latex(r"a \leftarrow b") == r"a \leftarrow b"


@pytest.mark.parametrize(
    ("answer", "brackets"),
    [
        ("(1,2]", ("(", "]")),
        (r"\{1,2\}", (r"\{", r"\}")),
        (r"\left[0, \infty\right)", ("[", ")")),
        ("(x+1)^2", None),
        (r"(-\infty,0)\cup(1,\infty)", None),
        (r"\frac{1}{2}", None),
    ],
)
def test_enclosing_brackets(answer, brackets):
    assert enclosing_brackets(answer) == brackets


# --- Math-Verify pool ----------------------------------------------------------------------------------------------

TRAPS = [
    ("(1,2]", "(1,2)", False),
    ("(1,2)", "(1,2]", False),
    ("0.5", "50", False),
    ("1.0001", "1", False),
    ("1", "1.0001", False),
    ("1/2^{99}", "1/2^{98}", False),
    (r"\frac{1}{2^{99}}", "2^{-99}", True),
    (r"\dfrac{5}{9}", r"\frac 59", True),
    (r"10,\!080", "10080", True),
    (r"\frac12", "0.5", True),
    ("(1,2)", r"\{1,2\}", False),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    ("[2,5)", "[2,5)", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("3", "x", False),
]


@pytest.mark.parametrize(("gold", "prediction", "equal"), TRAPS)
def test_regression_traps(pool, gold, prediction, equal):
    [verdict] = pool.verify([(gold, prediction)])
    assert verdict.equal is equal
    assert (verdict.reason is None) is equal


@needs_math500
def test_every_math500_answer_verifies_against_itself(pool):
    answers = [row["answer"] for row in read_jsonl(MATH500)]
    verdicts = pool.verify([(a, a) for a in answers])
    assert len(verdicts) == 500
    assert [a for a, v in zip(answers, verdicts) if not v.equal] == []


HOSTILE = {
    "tower of powers": "9^{9^{9^9}}",
    "one megabyte": "1" * 2**20,
    "nested braces": "{" * 900 + "1" + "}" * 900,
    "nested parentheses": "(" * 900 + "1" + ")" * 900,
    "nested fractions": "\\frac{" * 150 + "1" + "}{2}" * 150,
}


@pytest.fixture(scope="module")
def strict_pool():
    with MathVerifyPool(workers=1, timeout=1.0) as p:
        yield p


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("side", ["gold", "prediction"])
def test_hostile_input_is_incorrect_within_timeout(strict_pool, text, side):
    assert strict_pool.verify([(r"\frac12", "0.5")]) == [Verdict(True)]  # a worker is up (or replaced) and works
    start = time.monotonic()
    [verdict] = strict_pool.verify([(text, "1") if side == "gold" else ("1", text)])
    assert time.monotonic() - start < strict_pool.timeout + 2
    assert not verdict.equal and verdict.reason


def test_timeout_reason_and_recovery():
    with MathVerifyPool(workers=1, timeout=0.5) as pool:
        assert pool.verify([("9^{9^{9^9}}", "1"), ("2", "2")]) == [
            Verdict(False, "timed out after 0.5 s"),
            Verdict(True),
        ]


def test_dead_idle_worker_is_replaced(pool):
    pool.verify([("1", "1")])
    for worker in pool._idle:
        worker.process.kill()
        worker.process.wait()
    assert pool.verify([("1", "1"), ("2", "3")]) == [Verdict(True), Verdict(False, "different exact values")]


def test_model_text_is_never_executed(pool, tmp_path):
    marker = tmp_path / "pwned"
    payloads = [f"__import__('os').system('touch {marker}')", f"exec(\"open('{marker}', 'w')\")"]
    verdicts = pool.verify([("0", p) for p in payloads] + [(p, p + " ") for p in payloads])
    assert not marker.exists()
    assert len(verdicts) == 4


def test_no_eval_or_exec_in_sources():
    root = Path(__file__).parents[1] / "src" / "reasonscale"
    sources = [*root.glob("grading/*.py"), *root.glob("tasks/*.py")]
    assert sources
    assert [p.name for p in sources if "eval(" in p.read_text() or "exec(" in p.read_text()] == []


class _NoWorkers:
    """A pool stand-in that fails if anything reaches a worker."""

    max_chars = 2000

    def verify(self, pairs, timeout=None):
        assert list(pairs) == []
        return []


def test_fast_path_needs_no_worker():
    pairs = [(r"\dfrac{5}{9}", r"$\frac{5}{9}$"), (r"\left(1,2\right]", "(1, 2]")]
    assert equivalent_many(pairs, pool=_NoWorkers()) == [Verdict(True), Verdict(True)]


def test_equivalent_many_keeps_order(pool):
    pairs = [("1", "1"), ("1", "2"), (r"\frac12", "0.5"), ("x" * 3000, "x" * 3000), ("", "")]
    verdicts = equivalent_many(pairs, pool=pool)
    assert [v.equal for v in verdicts] == [True, False, True, False, False]
    assert verdicts[3].reason == "reference longer than 2000 characters"


# --- grading files -----------------------------------------------------------------------------------------------


def _write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grade_gsm8k_file(tmp_path, capsys):
    source = _write_lines(
        tmp_path / "in.jsonl",
        [
            {"reference": "18", "prediction": "She makes 9 * 2 = $18.\n#### 18", "id": 1},
            {"reference": "#### 1,000", "prediction": "The answer is $1,000.00."},
            {"reference": "5", "prediction": "no idea"},
            {"reference": "5", "prediction": None},
        ],
    )
    assert grade_jsonl(source, "gsm8k") == (4, 0.5)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["extracted"], r["correct"]) for r in lines] == [
        ("18", True),
        ("1,000.00", True),
        ("no idea", False),
        (None, False),
    ]
    assert lines[0]["id"] == 1


def test_grade_math_file_to_path(tmp_path):
    source = _write_lines(
        tmp_path / "in.jsonl",
        [
            {"reference": r"\frac{1}{2}", "prediction": r"so $\boxed{0.5}$"},
            {"reference": "(1,2]", "prediction": "(1,2)"},
        ],
    )
    assert grade_jsonl(source, "math", tmp_path / "out.jsonl") == (2, 0.5)
    lines = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [(r["extracted"], r["correct"]) for r in lines] == [("0.5", True), ("(1,2)", False)]


def test_grade_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"reference": "1", "prediction": "1"}\n{"reference": "2"}\n')
    with pytest.raises(DataError, match=rf"{bad}:2: missing field 'prediction'"):
        grade_jsonl(bad, "gsm8k")
    bad.write_text('{"reference": "1", "prediction": "1"}\n\n{"reference": \n')
    with pytest.raises(DataError, match=rf"{bad}:3: not valid JSON"):
        grade_jsonl(bad, "math")
    with pytest.raises(ValueError, match="unknown task 'lab'"):
        grade_jsonl(bad, "lab")

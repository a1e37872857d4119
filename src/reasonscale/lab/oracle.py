"""The exact step checker of the lab domain: which step of a candidate solution first goes wrong, and how.

A step computes one quantity: "b=a*3=7*3=21" (the definition part "a*3=" may be left out, and a quantity
defined from numbers alone is written "a=5+2=7"). It is checked, in this order, for being a valid step for a
defined quantity (parseable, with that quantity's operation and operands), for using only quantities computed
by earlier steps, for using their true values, and for correct arithmetic. The answer line ("answer=9" or
"The answer is 9") must come after a step that computes the quantity asked for, give the true answer and end the
solution: a bare answer line is an unsupported answer, however right. The first answer line is the solution's
answer (`final_answer`, which the lab task's answer extraction uses too). Input is untrusted: steps are
length-bounded and parsed by anchored regular expressions, never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from reasonscale.lab.graph import COMMUTATIVE, Graph, Node, Operand, apply_op, parse_operand

MAX_STEP_CHARS = 200

_NAME_OR_INT = r"([a-z]|\d{1,9})"
_OP = r"(\+|-|\*|//)"
_STEP = re.compile(
    rf"([a-z])\s*=\s*(?:{_NAME_OR_INT}\s*{_OP}\s*{_NAME_OR_INT}\s*=\s*)?"
    rf"(\d{{1,9}})\s*{_OP}\s*(\d{{1,9}})\s*=\s*(-?\d{{1,12}})"
)
ANSWER = re.compile(r"(?:answer\s*=|the answer is)\s*(-?\d{1,12})\.?", re.IGNORECASE)


class ErrorKind(StrEnum):
    INVALID = "invalid"  # unparseable, not a defined quantity, or not its operation and operands
    UNKNOWN_VALUE = "unknown_value"  # uses a quantity not yet computed (an answer line: the one asked for)
    WRONG_VALUE = "wrong_value"  # an operand's value differs from its true value
    ARITHMETIC = "arithmetic"  # the result is not what the operation gives on the values written
    WRONG_ANSWER = "wrong_answer"  # the answer line gives a wrong answer


@dataclass(frozen=True)
class OracleResult:
    """Per-step verdicts, the first wrong step (None when every step is right) and the final-answer verdict."""

    step_correct: list[bool]
    step_errors: list[ErrorKind | None]
    first_error: int | None
    error_kind: ErrorKind | None
    answer: int | None
    final_correct: bool


@dataclass(frozen=True)
class _ParsedStep:
    name: str
    symbolic: tuple[str, str, str] | None  # (left, op, right) of the definition part, when written
    values: tuple[int, str, int]
    result: int


def parse_answer(step: str) -> int | None:
    """The answer an answer line gives, or None when `step` is no answer line."""
    match = ANSWER.fullmatch(step.strip()[:MAX_STEP_CHARS])
    return int(match.group(1)) if match else None


def final_answer(steps: Sequence[str]) -> int | None:
    """The answer of the first answer line among `steps` (the one the oracle grades), or None."""
    return next((a for a in map(parse_answer, steps) if a is not None), None)


def is_step(step: str) -> bool:
    """Whether `step` is a computation step in the lab's form (right or wrong)."""
    return _parse_step(step) is not None


def _parse_step(step: str) -> _ParsedStep | None:
    """The parts of a computation step, or None when it is not one."""
    text = step.strip()
    match = _STEP.fullmatch(text) if len(text) <= MAX_STEP_CHARS else None
    if not match:
        return None
    name, s_left, s_op, s_right, v_left, v_op, v_right, result = match.groups()
    symbolic = (s_left, s_op, s_right) if s_op else None
    return _ParsedStep(name, symbolic, (int(v_left), v_op, int(v_right)), int(result))


def _operand_order(node: Node, parsed: _ParsedStep, graph: Graph) -> tuple[Operand, ...] | None:
    """The node's operands in the order the step writes them, or None when the step is not this operation.

    Operands of + and * may be swapped; without a definition part, the written values tell the order.
    """
    if parsed.values[1] != node.op:
        return None
    args = node.args
    swapped = args[::-1] if node.op in COMMUTATIVE else None
    if parsed.symbolic is not None:
        left, op, right = parsed.symbolic
        written = (parse_operand(left), parse_operand(right))
        if op != node.op or written not in (args, swapped):
            return None
        return written
    true_values = tuple(graph.value_of(a) for a in args)
    if swapped is not None and (parsed.values[0], parsed.values[2]) == true_values[::-1] != true_values:
        return swapped
    return args


def _check_step(graph: Graph, step: str, computed: set[str]) -> ErrorKind | None:
    """The error in one computation step (None if it is right); a valid step's quantity joins `computed`."""
    parsed = _parse_step(step)
    node = graph.by_name.get(parsed.name) if parsed else None
    if parsed is None or node is None:
        return ErrorKind.INVALID
    order = _operand_order(node, parsed, graph)
    if order is None:
        return ErrorKind.INVALID
    computed_before = set(computed)
    computed.add(node.name)
    if any(a not in computed_before for a in node.inputs):
        return ErrorKind.UNKNOWN_VALUE
    true_values = [graph.value_of(a) for a in order]
    left, op, right = parsed.values
    if [left, right] != true_values:
        return ErrorKind.WRONG_VALUE
    if apply_op(op, left, right) != parsed.result:
        return ErrorKind.ARITHMETIC
    return None


def _check_answer(graph: Graph, given: int, computed: set[str]) -> ErrorKind | None:
    """The error in an answer line (None if it is right): the target must be computed, and the answer true."""
    if graph.target not in computed:
        return ErrorKind.UNKNOWN_VALUE
    return None if given == graph.answer else ErrorKind.WRONG_ANSWER


def check_solution(graph: Graph, steps: Sequence[str]) -> OracleResult:
    """Check every step of a candidate solution against the problem's graph."""
    computed: set[str] = set()
    errors: list[ErrorKind | None] = []
    answer: int | None = None
    answered = False
    for step in steps:
        if answered:
            errors.append(ErrorKind.INVALID)
            continue
        given = parse_answer(step)
        if given is None:
            errors.append(_check_step(graph, step, computed))
            continue
        answered, answer = True, given
        errors.append(_check_answer(graph, given, computed))
    first = next((i for i, e in enumerate(errors) if e is not None), None)
    return OracleResult(
        step_correct=[e is None for e in errors],
        step_errors=errors,
        first_error=first,
        error_kind=None if first is None else errors[first],
        answer=answer,
        final_correct=answer == graph.answer,
    )

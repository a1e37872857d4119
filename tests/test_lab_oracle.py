"""The lab oracle: accepts every canonical solution and finds each kind of injected error at its step."""

from __future__ import annotations

import pytest

from reasonscale.config import TaskConfig
from reasonscale.lab.generator import LEVELS
from reasonscale.lab.graph import COMMUTATIVE, Graph, Node, apply_op
from reasonscale.lab.oracle import ErrorKind, check_solution
from reasonscale.lab.splits import eval_pool, load_problems
from reasonscale.tasks.lab import LabTask
from reasonscale.verifiers.oracle import OracleVerifier

GRAPHS = [g for level in LEVELS for g in eval_pool("test", level)[:40]]


def op_nodes(graph: Graph) -> list[Node]:
    """The needed quantities in canonical order (step i of the canonical solution computes op_nodes[i])."""
    return [n for n in graph.nodes if n.name in graph.needed]


def step_with(node: Node, graph: Graph, values: list[int], op: str | None = None) -> str:
    """A step for `node` that writes `values` as its operands (and `op` as its operation), with correct arithmetic."""
    op = op or node.op
    names = "".join(f"{a}" if i == 0 else f"{op}{a}" for i, a in enumerate(node.args))
    return f"{node.name}={names}={values[0]}{op}{values[1]}={apply_op(op, *values)}"


def true_values(node: Node, graph: Graph) -> list[int]:
    return [graph.value_of(a) for a in node.args]


def replaced(steps: list[str], index: int, step: str) -> list[str]:
    return steps[:index] + [step] + steps[index + 1 :]


def injections(graph: Graph) -> list[tuple[list[str], int, ErrorKind]]:
    """(corrupted solution, index of the first wrong step, its kind) for every step and kind that applies."""
    steps, nodes = graph.solution_steps, op_nodes(graph)
    cases = []
    for i, node in enumerate(nodes):
        values = true_values(node, graph)
        wrong_result = steps[i].rsplit("=", 1)[0] + f"={node.value + 1}"
        cases.append((replaced(steps, i, wrong_result), i, ErrorKind.ARITHMETIC))
        k = next((k for k, a in enumerate(node.args) if isinstance(a, str)), 0)
        off = [v + 1 if j == k else v for j, v in enumerate(values)]
        cases.append((replaced(steps, i, step_with(node, graph, off)), i, ErrorKind.WRONG_VALUE))
        other_op = next(op for op in ("+", "-", "*") if op != node.op)
        cases.append((replaced(steps, i, step_with(node, graph, values, other_op)), i, ErrorKind.INVALID))
        for garbage in ("", "banana", f"{node.name}=?", "=" * 500, "z" * 10_000, f"{node.name}=1+2=3=4"):
            cases.append((replaced(steps, i, garbage), i, ErrorKind.INVALID))
        undefined = next(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in graph.by_name)
        cases.append((replaced(steps, i, undefined + steps[i][1:]), i, ErrorKind.INVALID))
        earlier = [j for j, n in enumerate(nodes[:i]) if n.name in node.inputs]
        if earlier:  # move the step before the step that computes one of its inputs
            j = earlier[0]
            cases.append((steps[:j] + [steps[i]] + steps[j:i] + steps[i + 1 :], j, ErrorKind.UNKNOWN_VALUE))
    cases.append((steps[:-1] + [f"answer={graph.answer + 1}"], len(steps) - 1, ErrorKind.WRONG_ANSWER))
    cases.append((steps + [steps[0]], len(steps), ErrorKind.INVALID))
    return cases


def test_accepts_every_canonical_solution():
    for graph in GRAPHS:
        result = check_solution(graph, graph.solution_steps)
        assert result.first_error is None and result.error_kind is None
        assert all(result.step_correct) and result.final_correct and result.answer == graph.answer


def test_accepts_equivalent_step_forms():
    for graph in GRAPHS:
        steps = []
        for node in op_nodes(graph):
            values = true_values(node, graph)
            if node.op in COMMUTATIVE:
                values = values[::-1]
                steps.append(
                    f"{node.name}={node.args[1]}{node.op}{node.args[0]}={values[0]}{node.op}{values[1]}={node.value}"
                )
            steps.append(f"{node.name} = {values[0]} {node.op} {values[1]} = {node.value}")
        steps.append(f"The answer is {graph.answer}.")
        assert all(check_solution(graph, steps).step_correct), steps


def test_computing_a_distractor_is_a_correct_step():
    cases = [(g, n) for g in GRAPHS for n in g.nodes if n.name not in g.needed and all(a in g.needed for a in n.inputs)]
    assert cases
    for graph, distractor in cases:
        steps = graph.solution_steps
        assert check_solution(graph, steps[:-1] + [distractor.step(graph.values)] + steps[-1:]).first_error is None


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_finds_every_injected_error_at_its_step(level):
    kinds = set()
    for graph in [g for g in GRAPHS if len(g.solution_steps) == LEVELS[level].ops + 1]:
        for steps, index, kind in injections(graph):
            result = check_solution(graph, steps)
            assert (result.first_error, result.error_kind) == (index, kind), (graph.question, steps)
            assert result.step_correct[:index] == [True] * index and not result.step_correct[index]
            kinds.add(kind)
    assert kinds == set(ErrorKind)


def test_an_unfinished_solution_has_no_error_and_no_answer():
    graph = GRAPHS[-1]
    result = check_solution(graph, graph.solution_steps[:2])
    assert result.first_error is None and result.answer is None and not result.final_correct


def test_oracle_verifier_scores_steps_until_the_first_error():
    problems = load_problems("test", [4], 3)
    right, broken, wrong_answer = [Graph.from_question(p.question).solution_steps for p in problems]
    broken[2] = "nonsense"
    wrong_answer[-1] = "answer=-1"
    verifier = OracleVerifier()
    scores = verifier.score(problems, [right, broken, wrong_answer])
    assert scores == [[1.0] * 6, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1.0] * 5 + [0.0]]
    assert verifier.score(problems[:1], [right[:2]]) == [[1.0, 1.0]]
    assert verifier.usage.verifier_calls == 4


def test_an_answer_needs_a_step_that_computes_the_target():
    graph = GRAPHS[0]
    bare = check_solution(graph, [f"answer={graph.answer}"])
    assert (bare.first_error, bare.error_kind) == (0, ErrorKind.UNKNOWN_VALUE)
    assert bare.final_correct and bare.answer == graph.answer  # the outcome is right, the process is not
    steps = graph.solution_steps
    early = check_solution(graph, steps[:-2] + steps[-1:])  # the target's own step left out
    assert (early.first_error, early.error_kind) == (len(steps) - 2, ErrorKind.UNKNOWN_VALUE)
    wrong = check_solution(graph, [f"answer={graph.answer + 1}"])
    assert wrong.error_kind == ErrorKind.UNKNOWN_VALUE and not wrong.final_correct


def test_the_task_extracts_the_answer_the_oracle_grades():
    task = LabTask(TaskConfig(name="lab"))
    problem = load_problems("test", [2], 1)[0]
    graph = Graph.from_question(problem.question)
    right, steps = graph.answer, graph.solution_steps[:-1]
    solutions = [
        "\n".join(steps + [f"answer={right}"]),
        "\n".join(steps + [f"answer={right + 1}", f"answer={right}"]),  # the first answer line counts
        "\n".join(steps + [f"so the answer is {right} I think"]),  # not an answer line
        "\n".join(steps) + f" answer={right}",  # inside a step
        f"x answer={right}",
        "\n".join(steps),
    ]
    for solution in solutions:
        result = task.oracle(problem, task.split_steps(solution))
        extracted = task.extract_answer(solution)
        assert extracted == (None if result.answer is None else str(result.answer)), solution
        assert task.grade([problem], [extracted]) == [result.final_correct], solution
    assert [task.extract_answer(s) for s in solutions] == [str(right), str(right + 1), None, None, None, None]

"""Each scored item is charged its own verifier cost (not a share of its batch's)."""

import pytest

from reasonscale.config import TaskConfig
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem
from reasonscale.verifiers.base import Verifier
from reasonscale.verifiers.oracle import OracleVerifier
from reasonscale.verifiers.prm import PRMVerifier

PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6", level=1)


def test_prm_charges_each_solution_its_own_tokens(tiny_model_dir):
    task = LabTask(TaskConfig(name="lab"))
    prm = PRMVerifier(str(tiny_model_dir), task, mode="token")
    steps = [["b=a*3=2*3=6", "answer=6"], ["answer=5"]]
    scores, costs = prm.score_items([PROBLEM, PROBLEM], steps)
    assert scores == prm.score([PROBLEM, PROBLEM], steps)
    prompt = len(task.format_prompt(PROBLEM)) + 1  # character tokenizer, plus BOS
    assert [c.verifier_tokens for c in costs] == [prompt + len("b=a*3=2*3=6\nanswer=6\n"), prompt + len("answer=5\n")]
    assert [c.verifier_calls for c in costs] == [1, 1]
    assert all(c.verifier_flops == pytest.approx(2 * prm.num_parameters * c.verifier_tokens) for c in costs)
    assert prm.usage.verifier_tokens == 2 * sum(c.verifier_tokens for c in costs)  # scored twice above


def test_a_model_free_verifier_charges_one_call_per_item():
    from reasonscale.lab.graph import Graph

    problem = LabTask(TaskConfig(name="lab", lab={"levels": [2], "per_level": 1})).load()[0]
    steps = Graph.from_question(problem.question).solution_steps
    _, costs = OracleVerifier().score_items([problem, problem], [steps, steps[:1]])
    assert [(c.verifier_calls, c.verifier_tokens, c.verifier_flops) for c in costs] == [(1, 0, 0.0), (1, 0, 0.0)]


def test_a_verifier_that_spends_tokens_must_say_per_item():
    class Spender(Verifier):
        def score(self, problems, step_lists):
            self.usage.verifier_tokens += 10
            return [[0.5] for _ in step_lists]

    with pytest.raises(NotImplementedError, match="Spender"):
        Spender().score_items([PROBLEM], [["answer=6"]])

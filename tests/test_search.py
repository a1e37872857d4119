"""Step-wise search (beam, lookahead, DVTS) on the lab domain with a scripted noisy policy and the oracle."""

from __future__ import annotations

import hashlib

import pytest

from reasonscale.config import LabTaskConfig, ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.lab.graph import Graph
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.search.beam import beam_search
from reasonscale.search.dvts import dvts
from reasonscale.search.lookahead import lookahead_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Completion, SamplingParams, Usage
from reasonscale.verifiers.oracle import OracleVerifier


def _uniform(*parts: object) -> float:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) / 16**8


class NoisyLabPolicy(Engine):
    """Writes the canonical lab solution, but each step's result is off by one with probability `error`.

    Sample i is a pure function of (prompt, i) (greedy: of the prompt), an error carries into a wrong answer,
    and every returned completion is recorded so tests can add up the tokens the engine really produced.
    """

    model_id = "noisy-lab"
    num_parameters = 1000

    def __init__(self, error: float = 0.3):
        self.error = error
        self.returned: list[Completion] = []
        self.requests: list[tuple[SampleRequest, float]] = []  # each request with the temperature it ran at
        self.calls = 0

    def complete(self, requests, params):
        out = [self._one(r.prompt, r.index if params.temperature > 0 else -1, params) for r in requests]
        self.returned += out
        self.requests += [(r, params.temperature) for r in requests]
        self.calls += 1
        return out

    def _one(self, prompt: str, index: int, params: SamplingParams) -> Completion:
        question, _, written = prompt.partition("\n")
        canonical = Graph.from_question(question).solution_steps
        done = written.split("\n")[:-1]
        wrong = any(line != canonical[i] for i, line in enumerate(done))
        lines = []
        for j in range(len(done), len(canonical)):
            step = canonical[j]
            if j == len(canonical) - 1:
                lines.append(step + "1" if wrong else step)
                break
            if _uniform(prompt, index, j) < self.error:
                step, wrong = step + "1", True
            lines.append(step)
            if "\n" in params.stop:
                return Completion(step, "stop", len(prompt) + 1, len(step) + 1, stop="\n")
        text = "\n".join(lines)
        return Completion(text, "stop", len(prompt) + 1, len(text) + 1)


@pytest.fixture(scope="module")
def lab():
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[3, 4], per_level=10)))
    problems = task.load()
    return task, problems, [task.format_prompt(p) for p in problems]


def make_search(lab, engine, **kwargs) -> StepSearch:
    task, problems, prompts = lab
    params = SamplingParams(temperature=0.8, max_tokens=200, stop=task.solution_stop)
    return StepSearch(task, engine, OracleVerifier(), problems, prompts, params, **kwargs)


def greedy_accuracy(lab, engine) -> float:
    task, problems, prompts = lab
    outputs = engine.generate(prompts, SamplingParams(temperature=0.0, max_tokens=200))
    answers = [task.extract_answer(c.text) for (c,) in outputs]
    return sum(task.grade(problems, answers)) / len(problems)


def accuracy(lab, results) -> float:
    task, problems, _ = lab
    return sum(task.grade(problems, [r.answer for r in results])) / len(problems)


@pytest.mark.parametrize("strategy", [beam_search, dvts, lookahead_search])
def test_oracle_guided_search_beats_greedy(lab, strategy):
    engine = NoisyLabPolicy()
    greedy = greedy_accuracy(lab, engine)
    searched = accuracy(lab, strategy(make_search(lab, engine), 8, beam_width=4))
    assert greedy < 0.5
    assert searched >= greedy + 0.3


@pytest.mark.parametrize("strategy", [beam_search, dvts, lookahead_search])
def test_usage_matches_engine_token_counts(lab, strategy):
    engine = NoisyLabPolicy()
    results = strategy(make_search(lab, engine), 8, beam_width=4)
    total = Usage()
    for r in results:
        total += r.usage
    assert total.policy_calls == len(engine.returned)
    assert total.prompt_tokens == sum(c.prompt_tokens for c in engine.returned)
    assert total.completion_tokens == sum(c.completion_tokens for c in engine.returned)
    assert total.flops == pytest.approx(2 * engine.num_parameters * (total.prompt_tokens + total.completion_tokens))
    assert total.verifier_calls > 0


def test_lookahead_charges_its_greedy_rollouts(lab):
    plain, ahead = NoisyLabPolicy(), NoisyLabPolicy()
    beam_search(make_search(lab, plain), 4, beam_width=4, max_rounds=20)
    results = lookahead_search(make_search(lab, ahead), 4, beam_width=4, max_rounds=20, k=1)
    assert all(t > 0 for _, t in plain.requests)  # plain beam search only samples
    sampled = [c for c, (_, t) in zip(ahead.returned, ahead.requests) if t > 0]
    rollouts = [c for c, (_, t) in zip(ahead.returned, ahead.requests) if t == 0.0]
    assert len(rollouts) == sum(c.stop == "\n" for c in sampled)  # one greedy step per open candidate step
    charged = Usage()
    for r in results:
        charged += r.usage
    assert charged.policy_calls == len(sampled) + len(rollouts)
    assert charged.completion_tokens == sum(c.completion_tokens for c in ahead.returned)


def test_usage_is_charged_to_the_problem_that_spent_it(lab):
    _, _, prompts = lab
    engine = NoisyLabPolicy()
    results = beam_search(make_search(lab, engine), 4, beam_width=2)
    for prompt, result in zip(prompts, results):
        mine = [c for c, (r, _) in zip(engine.returned, engine.requests) if r.prompt.startswith(prompt)]
        assert result.usage.policy_calls == len(mine) > 0
        assert result.usage.completion_tokens == sum(c.completion_tokens for c in mine)
        assert result.usage.prompt_tokens == sum(c.prompt_tokens for c in mine)


def test_budget_one_is_a_single_stepwise_sample(lab):
    engine = NoisyLabPolicy()
    results = beam_search(make_search(lab, engine), 1, beam_width=4)
    assert all(len(r.candidates) == 1 for r in results)
    assert all(r.candidates[0].text.endswith(r.candidates[0].answer or "?") for r in results)


def test_dvts_subtrees_sample_disjoint_first_steps(lab):
    engine = NoisyLabPolicy(error=0.5)
    results = dvts(make_search(lab, engine), 16, beam_width=4)
    assert all(len(r.candidates) == 16 for r in results)
    first_call = engine.requests[: 16 * len(lab[1])]
    for prompt in lab[2]:
        assert sorted(r.index for r, _ in first_call if r.prompt == prompt) == list(range(16))


def test_evaluation_dispatches_stepwise_strategies(tmp_path, lab):
    cfg = RunConfig(
        model=ModelConfig(path="noisy"),
        task=TaskConfig(name="lab", lab=LabTaskConfig(levels=[3], per_level=4)),
        sampling=SamplingConfig(temperature=0.8, max_tokens=200),
        strategies=[
            StrategyConfig(name="weighted_best_of_n", n=4, verifier="oracle"),
            StrategyConfig(name="beam", n=4, budgets=[1, 4], verifier="oracle"),
            StrategyConfig(name="dvts", n=4, verifier="oracle", beam_width=2),
        ],
        output_dir=str(tmp_path / "run"),
    )
    engines = []
    summary = run_evaluation(
        cfg, show_progress=False, engine_factory=lambda c: engines.append(NoisyLabPolicy()) or engines[-1]
    )
    assert {"beam[oracle]@1", "beam[oracle]@4", "dvts[oracle]@4", "weighted_best_of_n[oracle]@4"} <= set(
        summary["accuracy"]
    )
    cost = summary["cost_per_problem"]["beam[oracle]@4"]
    assert cost["tokens"] > cost["generated_tokens"] > 0 and cost["verifier_tokens"] == 0  # prefixes are re-billed
    assert summary["accuracy"]["beam[oracle]@4"] >= summary["accuracy"]["beam[oracle]@1"]
    again = run_evaluation(cfg, show_progress=False, engine_factory=lambda c: NoisyLabPolicy())
    assert again["accuracy"] == summary["accuracy"]

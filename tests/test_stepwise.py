"""Step-wise search on scripted continuations: long steps, solution stops across steps, beam slots, DVTS subtrees,
lookahead depth. One character is one token; the engine stops as a real one does (earliest stop, longest on a tie,
only inside the tokens it may generate)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest

from reasonscale.config import TaskConfig
from reasonscale.engines.base import Engine, cut_at_stop
from reasonscale.search.beam import beam_search
from reasonscale.search.dvts import dvts
from reasonscale.search.lookahead import lookahead_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.tasks.jsonl import JsonlTask
from reasonscale.types import Completion, SamplingParams
from reasonscale.verifiers.base import Verifier


class ScriptEngine(Engine):
    """Replays fixed solutions: sample i of a problem's first call picks solution i mod (number of solutions);
    any later prompt continues the first solution that starts with the text generated so far."""

    model_id = "script"

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts
        self.calls: list[tuple[SamplingParams, list]] = []
        self.returned: list[Completion] = []

    def complete(self, requests, params):
        self.calls.append((params, list(requests)))
        out = [self._one(r.prompt, r.index, params) for r in requests]
        self.returned += out
        return out

    def _one(self, prompt: str, index: int, params: SamplingParams) -> Completion:
        base = next(p for p in self.scripts if prompt.startswith(p))
        written, solutions = prompt[len(base) :], self.scripts[base]
        if written:
            script = next(s for s in solutions if s.startswith(written))
        else:
            script = solutions[index % len(solutions)]
        rest = script[len(written) :]
        window = rest[: params.max_tokens]
        kept, stop = cut_at_stop(window, params.stop)
        if stop is not None:
            return Completion(kept, "stop", len(prompt), len(kept) + len(stop), stop=stop)
        if len(rest) > params.max_tokens:
            return Completion(window, "length", len(prompt), params.max_tokens)
        return Completion(rest, "stop", len(prompt), len(rest) + 1)  # end of sequence


class TableVerifier(Verifier):
    """Scores each step by `table(step)`; records the step lists it was asked to score."""

    def __init__(self, table: Callable[[str], float] = lambda step: 0.5):
        super().__init__()
        self.table = table
        self.seen: list[list[str]] = []

    def score(self, problems, step_lists):
        self.seen += [list(s) for s in step_lists]
        self.usage.verifier_calls += len(step_lists)
        return [[self.table(step) for step in steps] for steps in step_lists]


def numeric_task(tmp_path, count: int) -> JsonlTask:
    path = tmp_path / "test.jsonl"
    rows = [{"question": f"How many apples in box {i}?", "answer": str(10 + i)} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return JsonlTask(TaskConfig(name="jsonl", path=str(path), grader="numeric"))


def few_shot_script(answer: int) -> str:
    """A solution with a step longer than any step limit used here, its answer, then an invented next question
    (as a few-shot prompt invites) whose own answer is wrong."""
    return (
        "First we count every apple in the box one by one, which takes a long first step to write down.\n\n"
        f"So there are {answer} apples.\n\n"
        f"The answer is {answer}.\n\n"
        "Question: How many pears are left over?\nAnswer: Two pears are eaten.\n\nThe answer is 999.\n\n"
        "Question: And then?"
    )


def make_search(task, engine, verifier=None, max_tokens=400, step_max_tokens=24, **kwargs) -> StepSearch:
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(temperature=0.8, max_tokens=max_tokens, stop=task.solution_stop)
    return StepSearch(task, engine, verifier or TableVerifier(), problems, prompts, params, step_max_tokens, **kwargs)


def accuracy(task, results) -> int:
    return sum(task.grade(task.load(), [r.answer for r in results]))


@pytest.fixture
def few_shot(tmp_path):
    task = numeric_task(tmp_path, 18)
    scripts = {task.format_prompt(p): [few_shot_script(10 + i)] for i, p in enumerate(task.load())}
    return task, scripts


def test_full_sampling_and_beam_agree_on_a_few_shot_continuation(few_shot):
    task, scripts = few_shot
    engine = ScriptEngine(scripts)
    full = engine.generate(list(scripts), SamplingParams(temperature=0.8, max_tokens=400, stop=task.solution_stop))
    assert sum(task.grade(task.load(), [task.extract_answer(c.text) for (c,) in full])) == 18
    for n in (1, 4):
        results = beam_search(make_search(task, ScriptEngine(scripts)), n, beam_width=4)
        assert accuracy(task, results) == 18
        assert all("Question" not in c.text and c.text.endswith(".\n") for r in results for c in r.candidates)


def test_a_stop_across_steps_costs_only_its_rest(few_shot):
    task, scripts = few_shot
    engine = ScriptEngine(scripts)
    results = beam_search(make_search(task, engine), 1)
    script = few_shot_script(10)
    assert results[0].usage.completion_tokens == script.index("\nQuestion:") + len("\nQuestion:")
    assert any(p.stop[-1] == "Question:" for p, _ in engine.calls)  # the next step stops where the stop completes


def test_a_step_cut_by_its_token_limit_continues(few_shot):
    task, scripts = few_shot
    engine = ScriptEngine(scripts)
    results = beam_search(make_search(task, engine, step_max_tokens=16), 1)
    assert any(c.finish_reason == "length" for c in engine.returned)  # the long first step was cut, several times
    assert accuracy(task, results) == 18
    candidate = results[0].candidates[0]
    assert candidate.steps == ["First we count every apple in the box one by one, which takes a long first step "
                               "to write down.", "So there are 10 apples.", "The answer is 10."]


def test_a_long_step_is_scored_only_when_complete(few_shot):
    task, scripts = few_shot
    verifier = TableVerifier()
    beam_search(make_search(task, ScriptEngine(scripts), verifier, step_max_tokens=8), 1)
    firsts = {steps[0] for steps in verifier.seen}
    assert firsts == {few_shot_script(0).split("\n\n")[0]}


def test_a_solution_without_end_stops_at_its_token_budget(tmp_path):
    task = numeric_task(tmp_path, 1)
    scripts = {task.format_prompt(task.load()[0]): ["Step.\n\n" * 1000]}
    results = beam_search(make_search(task, ScriptEngine(scripts), max_tokens=60, step_max_tokens=4), 3, 2, 100)
    assert len(results[0].candidates) == 3
    assert all(60 <= len(c.text) < 60 + 4 for c in results[0].candidates)


def test_longest_stop_wins_a_tie():
    assert cut_at_stop("x\n\ny", ["\n", "\n\n"]) == ("x", "\n\n")
    assert cut_at_stop("x\n\ny", ["\n\n", "\n"]) == ("x", "\n\n")
    assert cut_at_stop("ab\nQuestion: c\n\n", ["\n\n", "\nQuestion:"]) == ("ab", "\nQuestion:")
    assert cut_at_stop("abc", ["d", ""]) == ("abc", None)


def variants(task, count: int, steps: int = 4) -> dict[str, list[str]]:
    """`count` different solutions per problem, `steps` steps each; variant v writes "v{v}" in each step."""
    return {
        task.format_prompt(p): [
            "\n\n".join([*(f"v{v} step {s}" for s in range(steps - 1)), f"The answer is {10 + i}."])
            for v in range(count)
        ]
        for i, p in enumerate(task.load())
    }


def variant_score(step: str) -> float:
    """Lower variants score higher."""
    return 1.0 - int(step.split()[0][1:]) / 100 if step.startswith("v") else 0.5


def expansions(engine: ScriptEngine, call: int) -> list[int]:
    """How many samples each distinct prompt got in engine call `call`, in order of appearance."""
    return list(Counter(r.prompt for r in engine.calls[call][1]).values())


@pytest.mark.parametrize(("n", "width", "second_round"), [(8, 4, [4, 4]), (9, 4, [5, 4]), (6, 4, [6]), (3, 4, [3])])
def test_beam_keeps_n_over_m_and_spreads_n_expansions(tmp_path, n, width, second_round):
    task = numeric_task(tmp_path, 1)
    engine = ScriptEngine(variants(task, 16))
    results = beam_search(make_search(task, engine, TableVerifier(variant_score)), n, width)
    assert expansions(engine, 0) == [n]
    assert expansions(engine, 1) == second_round
    parents = [r.prompt[-len("v0 step 0\n\n") :] for r in engine.calls[1][1]]
    assert parents[0].startswith("v0 ") and (len(second_round) == 1 or parents[-1].startswith("v1 "))
    assert len(results[0].candidates) == n


def test_a_root_never_collects_more_than_n_solutions(tmp_path):
    task = numeric_task(tmp_path, 2)
    scripts = {
        prompt: [f"The answer is {10 + i}.", *(f"v{v} a\n\nThe answer is {10 + i}." for v in range(1, 5))]
        for i, prompt in enumerate(variants(task, 1))
    }
    for n in (1, 3, 4, 5, 7):
        results = beam_search(make_search(task, ScriptEngine(scripts), TableVerifier(variant_score)), n, 2, 2)
        assert [len(r.candidates) for r in results] == [n, n]


def test_rounds_running_out_finish_every_open_beam(tmp_path):
    task = numeric_task(tmp_path, 1)
    engine = ScriptEngine(variants(task, 8, steps=6))
    results = beam_search(make_search(task, engine, TableVerifier(variant_score)), 4, 2, max_rounds=2)
    assert len(results[0].candidates) == 4
    assert all(c.answer == "10" and len(c.steps) == 6 for c in results[0].candidates)


def test_dvts_subtrees_sample_disjoint_indices_and_differ_from_beam(tmp_path):
    task = numeric_task(tmp_path, 2)
    engine = ScriptEngine(variants(task, 16))
    dvts(make_search(task, engine, TableVerifier(variant_score)), 8, beam_width=4)
    first = engine.calls[0][1]
    for prompt in {r.prompt for r in first}:
        assert sorted(r.index for r in first if r.prompt == prompt) == list(range(8))
    # subtree 0 sampled variants 0-3 and subtree 1 variants 4-7: each expands its own best, 4 ways
    dvts_parents = sorted({r.prompt[-len("v0 step 0\n\n") :][:2] for r in engine.calls[1][1]})
    assert dvts_parents == ["v0", "v4"] and expansions(engine, 1) == [4, 4, 4, 4]
    beam = ScriptEngine(variants(task, 16))
    beam_search(make_search(task, beam, TableVerifier(variant_score)), 8, beam_width=4)
    assert sorted({r.prompt[-len("v0 step 0\n\n") :][:2] for r in beam.calls[1][1]}) == ["v0", "v1"]


def test_dvts_spreads_a_budget_m_does_not_divide(tmp_path):
    task = numeric_task(tmp_path, 1)
    engine = ScriptEngine(variants(task, 16))
    results = dvts(make_search(task, engine, TableVerifier(variant_score)), 9, beam_width=4)
    assert len(results[0].candidates) == 9
    assert sorted(r.index for r in engine.calls[0][1]) == list(range(9))


@pytest.mark.parametrize("k", [1, 2])
def test_lookahead_scores_k_greedy_steps_ahead(tmp_path, k):
    task = numeric_task(tmp_path, 1)
    engine, verifier = ScriptEngine(variants(task, 4, steps=6)), TableVerifier(variant_score)
    lookahead_search(make_search(task, engine, verifier), 4, beam_width=2, k=k)
    first_scored = verifier.seen[:4]
    assert [len(steps) for steps in first_scored] == [1 + k] * 4  # one sampled step and k rolled out
    rollouts = [p for p, _ in engine.calls if p.temperature == 0.0]
    assert rollouts and all(p.temperature == 0.0 for p in rollouts)
    assert sum(len(r) for p, r in engine.calls if p.temperature == 0.0) >= 4 * k


"""Reasoning topologies (cot, tot, got, mcts) on the lab domain with a scripted noisy policy and the oracle, and on
scripted continuations: DFS backtracking, GoT aggregation, UCT bookkeeping, compute accounting."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from test_search import NoisyLabPolicy, accuracy, greedy_accuracy, make_search
from test_stepwise import ScriptEngine, TableVerifier, numeric_task
from test_stepwise import make_search as make_script_search

from reasonscale.config import LabTaskConfig, ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.lab.generator import LEVELS, generate
from reasonscale.lab.graph import Graph
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.search.stepwise import Beam, StepSearch
from reasonscale.search.topologies.cot import CoT, CoTConfig
from reasonscale.search.topologies.got import Controller, GoTConfig, merge_steps, sub_questions
from reasonscale.search.topologies.mcts import Node, backup, mcts, select, uct
from reasonscale.search.topologies.tot import bfs, dfs
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem, SamplingParams, Usage
from reasonscale.verifiers.oracle import OracleVerifier


def lab_problems(levels: list[int], per_level: int):
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=levels, per_level=per_level)))
    problems = task.load()
    return task, problems, [task.format_prompt(p) for p in problems]


@pytest.fixture(scope="module")
def lab():
    return lab_problems([3, 4], 10)


@pytest.fixture(scope="module")
def many():
    """Enough problems that an accuracy gain is measured to about +-0.05 (a standard error)."""
    return lab_problems([3, 4], 100)


TOPOLOGIES = {
    "tot_bfs": lambda s, n: bfs(s, n, children=2, depth=12),
    "tot_dfs": lambda s, n: dfs(s, n, children=2, depth=12, threshold=0.5, max_states=64),
    "mcts": lambda s, n: mcts(s, 4 * n, children=2, depth=12, exploration=1.0, rollout=False),  # 16 simulations
    "mcts_rollout": lambda s, n: mcts(s, n, children=2, depth=12, exploration=1.0, rollout=True),
    "got": lambda s, n: Controller(s, GoTConfig(name="got", verifier="oracle", depth=1)).run(n),
}


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_oracle_guided_topology_beats_greedy(many, name):
    engine = NoisyLabPolicy()
    greedy = greedy_accuracy(many, engine)
    searched = accuracy(many, TOPOLOGIES[name](make_search(many, engine), 4))
    assert greedy < 0.5
    assert searched >= greedy + 0.15  # three standard errors of the gain on 200 problems


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_usage_matches_engine_token_counts(lab, name):
    engine = NoisyLabPolicy()
    results = TOPOLOGIES[name](make_search(lab, engine), 4)
    total = Usage()
    for r in results:
        total += r.usage
    assert total.policy_calls == len(engine.returned) > 0
    assert total.prompt_tokens == sum(c.prompt_tokens for c in engine.returned)
    assert total.completion_tokens == sum(c.completion_tokens for c in engine.returned)
    assert total.verifier_calls > 0


@dataclass
class PlainChunk:
    task: LabTask
    engine: NoisyLabPolicy
    problems: list
    prompts: list

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams:
        return SamplingParams(n, 0.0 if greedy else 0.8, max_tokens=200, stop=self.task.solution_stop)


def test_cot_is_charged_its_chains_and_votes(lab):
    engine = NoisyLabPolicy()
    outcomes = CoT(CoTConfig()).run(PlainChunk(lab[0], engine, lab[1], lab[2]), 5)
    assert sum(o.usage.policy_calls for o in outcomes) == len(engine.returned) == 5 * len(lab[1])
    assert sum(o.usage.completion_tokens for o in outcomes) == sum(c.completion_tokens for c in engine.returned)
    assert all(o.text is not None and (o.answer is None or o.answer in o.text) for o in outcomes)


def test_got_charges_sub_goals_to_their_problem(lab):
    _, problems, prompts = lab
    engine = NoisyLabPolicy()
    results = TOPOLOGIES["got"](make_search(lab, engine), 2)
    for problem, prompt, result in zip(problems, prompts, results):
        subs = [prompt.replace(problem.question, q) for q in sub_questions(problem.question, 1)]
        assert len(subs) == 2  # levels 3 and 4 combine two branches at the end
        mine = [c for c, (r, _) in zip(engine.returned, engine.requests) if r.prompt.startswith((prompt, *subs))]
        assert result.usage.completion_tokens == sum(c.completion_tokens for c in mine) > 0


def test_topologies_run_through_the_evaluation(tmp_path):
    cfg = RunConfig(
        model=ModelConfig(path="noisy"),
        task=TaskConfig(name="lab", lab=LabTaskConfig(levels=[3, 5], per_level=4)),
        sampling=SamplingConfig(temperature=0.8, max_tokens=200),
        strategies=[
            StrategyConfig(name="greedy"),
            StrategyConfig(name="cot", n=8, budgets=[1, 8]),
            StrategyConfig(name="tot", n=2, verifier="oracle", method="dfs"),
            StrategyConfig(name="tot", n=2, verifier="oracle", children=3),
            StrategyConfig(name="got", n=2, verifier="oracle", depth=2, neighbours=3),
            StrategyConfig(name="mcts", n=4, budgets=[4], verifier="oracle"),
        ],
        output_dir=str(tmp_path / "run"),
    )
    summary = run_evaluation(cfg, show_progress=False, engine_factory=lambda c: NoisyLabPolicy())
    acc = summary["accuracy"]
    assert {"cot@1", "cot@8", "tot[oracle,children=2,dfs]@2", "got[oracle]@2", "mcts[oracle]@4"} <= set(acc)
    cost = summary["cost_per_problem"]
    assert cost["cot@8"]["generated_tokens"] > 7 * cost["cot@1"]["generated_tokens"] > 0  # its own 8 chains
    # at their full budget the tree and graph searches beat greedy; 4 simulations of mcts build a tree 4 steps
    # deep at most, short of these solutions, so mcts is compared with greedy where it has 16 (above)
    assert all(acc[k] > acc["greedy@1"] for k in acc if k.startswith(("tot", "got")) and k.endswith("@2"))
    assert cost["mcts[oracle]@4"]["generated_tokens"] > 0
    assert summary["cost_per_problem"]["got[oracle]@2"]["generated_tokens"] > 0


# three branches (d; a; b -> g), combined by h = a - g and i = d // h; c, e and f (which extends b) are distractors
WIDE = "a=37-15, b=22-14, c=5+10, d=7+40, e=13+31, f=b-4, g=b//6, h=a-g, i=d//h. Find i."


def test_got_splits_a_wide_question_into_its_branches():
    definitions = WIDE.removesuffix(" Find i.")
    assert sub_questions(WIDE, 1) == [f"{definitions} Find d.", f"{definitions} Find h."]
    assert sub_questions(WIDE, 2) == [f"{definitions} Find {x}." for x in "dag"]
    assert sub_questions(WIDE, 1, prune=True) == ["d=7+40. Find d.", "a=37-15, b=22-14, g=b//6, h=a-g. Find h."]
    assert sub_questions(WIDE, 2, prune=True) == ["d=7+40. Find d.", "a=37-15. Find a.", "b=22-14, g=b//6. Find g."]
    assert sub_questions(generate(1, "x").question, 3) == [] and sub_questions("How many apples?", 1) == []


@pytest.mark.parametrize("level", [3, 4, 5])
def test_got_branches_of_generated_problems_solve_the_problem_together(level):
    """Whatever the generator's distractors and definition order: the pruned sub-questions ask for independent
    branches, and their merged solutions are the problem's solution up to the combining steps."""
    for i in range(50):
        graph = generate(level, f"got/{i}")
        for depth in (1, 2):
            parts = [Graph.from_question(q) for q in sub_questions(graph.question, depth, prune=True)]
            assert len(parts) == min(LEVELS[level].branches, 2**depth)
            needed = [set(p.needed) for p in parts]
            assert all(not (a & b) for j, a in enumerate(needed) for b in needed[j + 1 :])
            merged = merge_steps([p.solution_steps[:-1] for p in parts], graph.question)
            assert merged == [s for s in graph.solution_steps if s in merged]  # in the problem's order
            combining = [s for s in graph.solution_steps[:-1] if s not in merged]
            assert 1 <= len(combining) <= depth


def test_got_aggregation_merges_exactly_the_verified_steps_of_its_neighbours():
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[5], per_level=1)))
    problem = Problem("p", WIDE, "2", 5)
    search = StepSearch(task, NoisyLabPolicy(), OracleVerifier(), [problem], [WIDE + "\n"], SamplingParams())
    written = {  # sub-goal -> (solution, step scores): g's solution goes wrong at its second step
        "d": ("d=7+40=47\nanswer=47", [1.0, 1.0]),
        "a": ("a=37-15=22\nanswer=22", [1.0, 1.0]),
        "g": ("b=22-14=8\ng=b//6=8//6=2\nanswer=2", [1.0, 0.0, 0.0]),
    }
    for neighbours, expected in [
        (3, ["a=37-15=22\nb=22-14=8\nd=7+40=47\n"]),
        (2, ["a=37-15=22\nd=7+40=47\n", "b=22-14=8\n"]),
        (1, ["d=7+40=47\n", "a=37-15=22\n", "b=22-14=8\n"]),
    ]:
        controller = Controller(search, GoTConfig(name="got", verifier="oracle", depth=2, neighbours=neighbours))
        thoughts = controller.split(controller.roots(), 1)
        for thought in thoughts:
            head = controller.goals[thought.goal].question.split("Find ")[1][0]
            text, scores = written[head]
            thought.beam = Beam(thought.beam.problem, text=text, done=True, step_scores=scores)
        merged = controller.aggregate(thoughts, 1)
        assert [t.beam.text for t in merged] == expected
        assert all(t.goal == 0 and not t.beam.done for t in merged)


def test_merge_orders_lab_steps_as_the_question_defines_them_and_drops_repeats():
    question = "a=1+2, b=3+4, c=a+b. Find c."
    assert merge_steps([["b=3+4=7", "a=1+2=3"], ["a=1+2=3"]], question) == ["a=1+2=3", "b=3+4=7"]
    assert merge_steps([["Second."], ["First."]], "How many?") == ["Second.", "First."]


def dead_end_scripts(task):
    """Each problem: the first start looks best but every continuation of it is a dead end."""
    return {
        task.format_prompt(p): [
            "Good start.\n\nDead end.\n\nThe answer is 999.",
            f"Other start.\n\nFine.\n\nThe answer is {p.answer}.",
        ]
        for p in task.load()
    }


VALUES = {"Good start.": 0.9, "Other start.": 0.6, "Dead end.": 0.0}


def test_tot_dfs_backtracks_from_a_dead_end(tmp_path):
    task = numeric_task(tmp_path, 3)
    verifier = TableVerifier(lambda step: VALUES.get(step, 0.8))
    results = dfs(make_script_search(task, ScriptEngine(dead_end_scripts(task)), verifier), 1, 2, 8, 0.5, 16)
    assert [r.answer for r in results] == [p.answer for p in task.load()]
    assert ["Good start.", "Dead end."] in verifier.seen  # it went down the dead end first...
    first_dead = verifier.seen.index(["Good start.", "Dead end."])
    assert verifier.seen.index(["Other start.", "Fine."]) > first_dead  # ...then backtracked
    greedy_bfs = bfs(make_script_search(task, ScriptEngine(dead_end_scripts(task))), 1, 2, 8)
    assert all(r.answer == "999" for r in greedy_bfs)  # a breadth of one cannot backtrack


def hand_made_tree() -> Node:
    root = Node(Beam(0), visits=6, total=3.0)
    root.children = [
        Node(Beam(0, text="a"), 1, root, visits=4, total=3.0),
        Node(Beam(0, text="b"), 1, root, visits=2, total=0.0),
    ]
    return root


def test_uct_selection_follows_values_and_visit_counts():
    root = hand_made_tree()
    a, b = root.children
    assert uct(a, 1.0) == pytest.approx(0.75 + math.sqrt(math.log(6) / 4))
    assert uct(b, 1.0) == pytest.approx(0.0 + math.sqrt(math.log(6) / 2))
    assert select(root, 1.0) is a  # 1.42 > 0.95
    assert select(root, 3.0) is b  # exploration: 2.77 < 2.84
    a.children = [Node(Beam(0, text="a1"), 2, a), Node(Beam(0, text="a2"), 2, a, visits=1, total=1.0)]
    assert select(root, 1.0) is a.children[0]  # an unvisited child comes first
    backup(a.children[0], [1.0, 0.0])
    assert (a.children[0].visits, a.visits, root.visits) == (2, 6, 8)
    assert (a.children[0].total, a.total, root.total) == (1.0, 4.0, 4.0)
    assert b.visits == 2 and a.value == pytest.approx(4 / 6)


def test_mcts_expands_one_leaf_per_simulation_and_re_values_finished_ones(tmp_path):
    task = numeric_task(tmp_path, 2)
    engine = ScriptEngine(dead_end_scripts(task))
    verifier = TableVerifier(lambda step: VALUES.get(step, 0.8))
    results = mcts(make_script_search(task, engine, verifier), 6, 2, 8, 0.0, False)
    assert all(len(requests) in (2, 4) for _, requests in engine.calls)  # one leaf x 2 children per open problem
    assert [r.answer for r in results] == [p.answer for p in task.load()]


def test_the_policy_values_states_itself_through_a_value_prompt_file(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.yaml"  # the character tokenizer's single-token Yes / No
    prompts.write_text(
        "value:\n  mode: token\n  prompt_template: 'Q: {question}\\n'\n  step_separator: ' ok?'\n"
        "  step_tag: '?'\n  good_token: 'Y'\n  bad_token: 'N'\n"
    )
    data = tmp_path / "q.jsonl"
    data.write_text("".join(f'{{"question": "What is {i} plus 1?", "answer": "{i + 1}"}}\n' for i in range(2)))
    tot = {"name": "tot", "n": 2, "verifier": f"prm:{tiny_model_dir}", "value_prompt": f"{prompts}#value"}
    cfg = RunConfig.model_validate(
        {
            "model": {"path": str(tiny_model_dir), "chat_template": True, "device": "cpu"},
            "task": {"name": "jsonl", "path": str(data), "grader": "numeric"},
            "sampling": {"max_tokens": 12},
            "strategies": [{**tot, "depth": 2, "step_max_tokens": 4}],
            "output_dir": str(tmp_path / "run"),
        }
    )
    assert cfg.strategies[0].verifier_options["good_token"] == "Y"
    summary = run_evaluation(cfg, show_progress=False)
    cost = summary["cost_per_problem"]["tot[prm]@2"]
    assert cost["verifier_tokens"] > 0 and cost["verifier_flops"] > 0 and cost["generated_tokens"] > 0
    with pytest.raises(ValueError, match="no prompt 'missing'"):
        StrategyConfig(**{**tot, "value_prompt": f"{prompts}#missing"})


def test_got_splitting_the_branches_beats_got_without_on_wide_problems():
    wide = lab_problems([5], 100)  # the gains below are measured to about +-0.05 (a standard error)
    problems = wide[1]
    assert all(len(sub_questions(p.question, 2)) == 3 for p in problems)  # three branches each

    def got(depth: int) -> float:
        config = GoTConfig(name="got", verifier="oracle", depth=depth, neighbours=3)
        return accuracy(wide, Controller(make_search(wide, NoisyLabPolicy()), config).run(2))

    greedy = greedy_accuracy(wide, NoisyLabPolicy())
    assert got(1) >= got(0) + 0.1 and got(1) >= greedy + 0.3

"""Prompt-driven topology operations for instruct models, on scripted engines: ToT's vote evaluator (bounded vote
parse, vote shares, exact charging, chat rendering) and GoT's prompted split and merge (the exact context sent, the
fallback when the split is unusable); identity follows the prompt text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import yaml
from test_stepwise import ScriptEngine, TableVerifier, numeric_task
from test_stepwise import make_search as make_script_search
from test_topologies import dead_end_scripts

from reasonscale.config import RunConfig, StrategyConfig
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.prompts import load_prompt
from reasonscale.search.strategy import build_strategy
from reasonscale.search.topologies.got import Controller, GoTConfig
from reasonscale.search.topologies.prompted import fill, parse_list, parse_vote
from reasonscale.search.topologies.vote import VoteVerifier
from reasonscale.types import Completion, Problem, SamplingParams, Usage

VOTE_ASK = "Below are candidate partial solutions"
SPLIT_ASK = "Break the following question"


class PromptedEngine(ScriptEngine):
    """Scripted solutions, and `reply(prompt, index)` to the topologies' own prompts (None: a solution prompt).
    One character is one token."""

    num_parameters = 1000

    def __init__(self, scripts, reply):
        super().__init__(scripts)
        self.reply = reply
        self.asked: list[str] = []

    def _one(self, prompt: str, index: int, params: SamplingParams) -> Completion:
        text = self.reply(prompt, index)
        if text is None:
            return super()._one(prompt, index, params)
        self.asked.append(prompt)
        return Completion(text[: params.max_tokens], "stop", len(prompt), len(text[: params.max_tokens]) + 1)


class ChatEngine(PromptedEngine):
    def render_chat(self, messages):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


@dataclass
class ScriptChunk:
    task: object
    engine: PromptedEngine
    problems: list
    prompts: list

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams:
        return SamplingParams(n, 0.0 if greedy else 0.8, max_tokens=400, stop=self.task.solution_stop)

    def verifier(self, config):
        raise AssertionError("a vote needs no verifier")


def charged(outcomes) -> Usage:
    total = Usage()
    for o in outcomes:
        total += o.usage
    return total


def assert_charged_exactly(usage: Usage, engine: PromptedEngine) -> None:
    assert usage.policy_calls == len(engine.returned) > 0
    assert usage.prompt_tokens == sum(c.prompt_tokens for c in engine.returned)
    assert usage.completion_tokens == sum(c.completion_tokens for c in engine.returned)
    assert usage.flops == 2.0 * engine.num_parameters * (usage.prompt_tokens + usage.completion_tokens)


# --- the vote -------------------------------------------------------------------------------------------------


def test_vote_parse_is_bounded_and_safe_on_hostile_replies():
    assert parse_vote("The best choice is 2", 3) == 1
    assert parse_vote("Choice 1 looks wrong. The best choice is: #3.", 3) == 2  # the conclusion wins
    assert parse_vote("2", 2) == 1 and parse_vote("I pick 1, clearly.", 2) == 0
    assert parse_vote("The best choice is 4", 3) is None  # out of range
    assert parse_vote("The best choice is 0", 3) is None and parse_vote("-1", 3) == 0  # the number, not a sign
    assert parse_vote("choice 12345 or 999999", 9) is None  # no number of at most three digits
    assert parse_vote("No idea; they all look fine.", 3) is None
    assert parse_vote("x" * 200 + "The best choice is 1", 3) is None  # only the first 200 characters are read
    assert parse_vote("__import__('os').system('true') or 1 " + "9" * 10**6, 3) == 0  # read, never run
    assert parse_vote("", 3) is None


def test_split_parse_is_bounded():
    reply = "Sure:\n1. How many red?\n2) How many green?\n  (3) How many red?\n4: " + "y" * 1000 + "\nDone."
    assert parse_list(reply, 5, 20) == ["How many red?", "How many green?", "y" * 20]  # repeat dropped, line cut
    assert parse_list(reply, 2, 20) == ["How many red?", "How many green?"]
    assert parse_list("No list here, 1. inline is not a list", 3, 50) == []
    assert parse_list("\n" * 5000 + "1. late\n2. items", 3, 50) == []  # beyond the 4000 characters read


def votes_for(pick):
    """Replies to a vote prompt naming the choice whose state starts with `pick` (else the text 'no idea')."""

    def reply(prompt: str, index: int) -> str | None:
        if VOTE_ASK not in prompt:
            return None
        match = re.search(rf"Choice (\d+):\n{re.escape(pick)}", prompt)
        return f"The best choice is {match.group(1)}" if match else "no idea"

    return reply


def test_vote_shares_are_the_sampled_votes_and_a_lone_state_is_not_voted_on():
    replies = ["The best choice is 2", "the best choice is 2.", "no idea", "Choice 1", "The best choice is 9"]
    engine = PromptedEngine({}, lambda prompt, index: replies[index])
    voter = VoteVerifier(engine, load_prompt("vote"), 5, SamplingParams(temperature=0.7), chat=False)
    p, q = Problem("p", "How many {choices}?", "1"), Problem("q", "Alone?", "2")
    values = voter.score([p, q, p], [["A {choices}"], ["C"], ["B1", "B2"]])
    assert values == [[0.2], [1.0], [0.4, 0.4]]  # abstentions and an out-of-range vote count for none
    (prompt,) = set(engine.asked)  # one prompt for p's two states, none for q's lone one
    assert prompt.startswith("Question: How many {choices}?\n")  # a brace in the question stays as written
    assert "Choice 1:\nA {choices}\n\nChoice 2:\nB1\nB2\n\n" in prompt
    assert [r.index for _, requests in engine.calls for r in requests] == [0, 1, 2, 3, 4]
    assert voter.usage.policy_calls == 5 and voter.usage.verifier_calls == 0


@pytest.mark.parametrize(("pick", "right"), [("Other start.", True), ("Good start.", False)])
def test_tot_keeps_the_state_the_policy_votes_for_and_is_charged_its_votes(tmp_path, pick, right):
    task = numeric_task(tmp_path, 3)
    problems = task.load()
    engine = PromptedEngine(dead_end_scripts(task), votes_for(pick))
    config = StrategyConfig(name="tot", n=1, evaluator="vote", votes=3, children=2, depth=8, step_max_tokens=24)
    chunk = ScriptChunk(task, engine, problems, [task.format_prompt(p) for p in problems])
    outcomes = build_strategy(config).run(chunk, 1)
    assert [o.answer for o in outcomes] == ([p.answer for p in problems] if right else ["999"] * 3)
    usage = charged(outcomes)
    assert_charged_exactly(usage, engine)
    vote_calls = [c for (_, requests) in engine.calls for c in requests if VOTE_ASK in c.prompt]
    assert len(vote_calls) == len(engine.asked) > 0 and len(vote_calls) % 3 == 0  # `votes` replies per vote
    assert usage.verifier_calls == 0


def test_votes_use_the_chat_template_when_the_run_does(tmp_path):
    task = numeric_task(tmp_path, 2)
    problems = task.load()
    engine = ChatEngine({}, votes_for("Other start."))
    prompts = [engine.render_chat([{"role": "user", "content": task.format_prompt(p)}]) for p in problems]
    engine.scripts = {chat: dead_end_scripts(task)[task.format_prompt(p)] for chat, p in zip(prompts, problems)}
    config = StrategyConfig(name="tot", n=1, evaluator="vote", votes=2, children=2, depth=8, step_max_tokens=24)
    outcomes = build_strategy(config).run(ScriptChunk(task, engine, problems, prompts), 1)
    assert [o.answer for o in outcomes] == [p.answer for p in problems]
    assert engine.asked
    assert all(a.startswith("<user>Question: ") and a.endswith("</user><assistant>") for a in engine.asked)


# --- GoT's prompted split and merge -----------------------------------------------------------------------------

RED, GREEN = "How many red apples are in box 0?", "How many green apples are in box 0?"
SOLVED = {RED: "There are 4 red apples.\n\nThe answer is 4.", GREEN: "There are 6 green apples.\n\nThe answer is 6."}


def got_scripts(task, split_reply: str, merges: dict[str, str]):
    """A one-problem task whose split is `split_reply`; the sub-questions, the problem itself and each expected
    merge question (-> its solution) have scripted solutions. Nothing else can be answered."""
    (problem,) = task.load()
    prompt = task.format_prompt(problem)
    scripts = {prompt.replace(problem.question, q): [s] for q, s in SOLVED.items()}
    scripts |= {prompt.replace(problem.question, q): [s] for q, s in merges.items()}
    scripts[prompt] = ["Counting them all.\n\nThe answer is 10."]
    engine = PromptedEngine(scripts, lambda p, i: split_reply if p.startswith(SPLIT_ASK) else None)
    return problem, engine


def merge_question(question: str, parts: list[str]) -> str:
    written = "".join(f"Sub-question {i + 1}: {q}\nSolution: {SOLVED[q]}\n" for i, q in enumerate(parts))
    return f"{question}\n\nAnswers to sub-questions of this question, which may help (check them):\n{written}"


PROMPTED = {"split_prompt": "got_split", "merge_prompt": "got_merge"}


@pytest.mark.parametrize("neighbours", [2, 1])
def test_got_split_and_merge_prompts_send_exactly_the_sub_questions_and_their_answers(tmp_path, neighbours):
    task = numeric_task(tmp_path, 1)
    question = task.load()[0].question
    merges = {merge_question(question, [RED, GREEN]): "4 + 6 = 10.\n\nThe answer is 10."} if neighbours == 2 else {
        merge_question(question, [RED]): "Red is 4, and 6 green.\n\nThe answer is 10.",
        merge_question(question, [GREEN]): "Green is 6, and 4 red.\n\nThe answer is 10.",
    }  # fmt: skip
    problem, engine = got_scripts(task, f"Here:\n1. {RED}\n2. {GREEN}\n", merges)
    config = GoTConfig(name="got", verifier="oracle", neighbours=neighbours, **PROMPTED)
    (result,) = Controller(make_script_search(task, engine, TableVerifier()), config).run(2)
    split = load_prompt("got_split")["template"].replace("{max_subgoals}", "3").replace("{question}", question)
    assert engine.asked == [split]
    assert result.answer == "10" and {c.text for c in result.candidates} == set(merges.values())
    assert result.details == {"subgoals": [RED, GREEN], "split_fallback": False}
    assert not any(r.prompt.startswith(task.format_prompt(problem)) for _, rs in engine.calls for r in rs)  # split
    assert_charged_exactly(result.usage, engine)


def test_got_falls_back_to_the_problem_when_the_split_is_unusable(tmp_path):
    task = numeric_task(tmp_path, 1)
    for reply in ["I cannot split this question.", f"1. {RED}\n"]:  # no list; a list of one
        problem, engine = got_scripts(task, reply, {})
        config = GoTConfig(name="got", verifier="oracle", **PROMPTED)
        (result,) = Controller(make_script_search(task, engine, TableVerifier()), config).run(2)
        assert result.details == {"subgoals": [], "split_fallback": True}
        assert result.answer == "10"  # solved as a whole, merged by its verified prefix (no merge prompt)
        assert all(r.prompt.startswith((SPLIT_ASK, task.format_prompt(problem))) for _, rs in engine.calls for r in rs)
        assert_charged_exactly(result.usage, engine)


# --- identity ---------------------------------------------------------------------------------------------------


def test_identity_follows_the_prompt_text_and_is_unchanged_without_prompts(tmp_path):
    file = tmp_path / "prompts.yaml"
    entry = load_prompt("vote")
    file.write_text(yaml.safe_dump({"mine": entry}))
    shipped = StrategyConfig(name="tot", evaluator="vote")
    same = StrategyConfig(name="tot", evaluator="vote", vote_prompt=f"{file}#mine")
    assert same.settings() == shipped.settings()  # the text is the identity, not where it was read
    file.write_text(yaml.safe_dump({"mine": {**entry, "template": "Pick one. {choices}"}}))
    other = StrategyConfig(name="tot", evaluator="vote", vote_prompt=f"{file}#mine")
    assert other.settings() != shipped.settings()
    assert StrategyConfig(name="tot", evaluator="vote", votes=3).settings() != shipped.settings()
    got = StrategyConfig(name="got", verifier="oracle", **PROMPTED)
    merge = {**load_prompt("got_merge"), "part": "{number}. {question} -> {answer}\n"}
    changed = StrategyConfig(name="got", verifier="oracle", **{**PROMPTED, "merge_prompt": merge})
    assert changed.settings() != got.settings()
    plain = {"tot": StrategyConfig(name="tot", verifier="oracle"), "got": StrategyConfig(name="got", verifier="oracle")}
    assert not {"evaluator", "votes", "vote_prompt"} & set(plain["tot"].settings())  # stored results stay valid
    assert not {"split_prompt", "merge_prompt"} & set(plain["got"].settings())
    for config in [other, got, *plain.values()]:  # a strategy is rebuilt from its settings (scaling, policies)
        assert StrategyConfig(name=config.name, **config.settings()) == config
    with pytest.raises(ValueError, match="need evaluator: vote"):
        StrategyConfig(name="tot", verifier="oracle", votes=3)
    with pytest.raises(ValueError, match="not by 'oracle'"):
        StrategyConfig(name="tot", evaluator="vote", verifier="oracle")
    with pytest.raises(ValueError, match="lacks part"):
        StrategyConfig(name="got", verifier="oracle", merge_prompt={"template": "{question}"})


def test_fill_reads_no_value_twice():
    assert fill("{a} {b} {c}", a="{b}", b="x") == "{b} x {c}"


def test_vote_and_prompted_got_run_through_the_evaluation_with_a_chat_model(tmp_path, tiny_model_dir):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(f'{{"question": "What is {i} plus 1?", "answer": "{i + 1}"}}\n' for i in range(2)))
    values = tmp_path / "prompts.yaml"  # the character tokenizer's single-token Yes / No
    values.write_text(
        "value:\n  mode: token\n  prompt_template: 'Q: {question}\\n'\n  step_separator: ' ok?'\n"
        "  step_tag: '?'\n  good_token: 'Y'\n  bad_token: 'N'\n"
    )
    steps = {"depth": 2, "step_max_tokens": 4}
    got = {"name": "got", "verifier": f"prm:{tiny_model_dir}", "value_prompt": f"{values}#value", **PROMPTED}
    cfg = RunConfig.model_validate(
        {
            "model": {"path": str(tiny_model_dir), "chat_template": True, "device": "cpu"},
            "task": {"name": "jsonl", "path": str(data), "grader": "numeric"},
            "sampling": {"max_tokens": 12},
            "strategies": [
                {"name": "tot", "n": 2, "evaluator": "vote", "votes": 2, **steps},
                {**got, "n": 1, **steps, "split_prompt": {**load_prompt("got_split"), "max_tokens": 24}},
            ],
            "output_dir": str(tmp_path / "run"),
        }
    )
    summary = run_evaluation(cfg, show_progress=False)
    cost = summary["cost_per_problem"]
    assert cost["tot[vote]@2"]["generations"] > 0 and cost["tot[vote]@2"]["verifier_tokens"] == 0
    assert cost["got[prm]@1"]["generated_tokens"] > 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    details = [o["details"] for r in rows for o in r["outcomes"] if o["strategy"] == "got"]
    assert len(details) == 2 and all(set(d) == {"subgoals", "split_fallback"} for d in details)

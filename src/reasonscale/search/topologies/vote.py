"""The policy's vote as a state evaluator (the vote prompt of the ToT paper, Yao et al. 2023): the candidate states
of a problem are shown together, numbered, in one prompt; `votes` replies are sampled and each state's value is its
share of them. The votes are policy generations: they are counted in the verifier's `usage` as policy calls,
prompt and generated tokens and FLOPs, which the step search charges to the problem voted on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reasonscale.engines.base import Engine
from reasonscale.search.topologies.prompted import fill, parse_vote, render
from reasonscale.types import Problem, SamplingParams
from reasonscale.verifiers.base import Verifier

VOTE_KEYS = ("template", "choice", "max_tokens")


class VoteVerifier(Verifier):
    """Values the candidates of each problem in one call by their share of `votes` sampled votes; a vote that
    names no candidate counts for none (abstains). A lone candidate has nothing to be compared with: value 1,
    no call."""

    name = "vote"

    def __init__(self, engine: Engine, prompt: dict[str, Any], votes: int, params: SamplingParams, chat: bool):
        super().__init__()
        self.engine, self.prompt, self.votes, self.chat = engine, prompt, votes, chat
        self.params = replace(params, n=votes, max_tokens=int(prompt["max_tokens"]), stop=())

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        by_problem: dict[str, list[int]] = defaultdict(list)
        for i, problem in enumerate(problems):
            by_problem[problem.id].append(i)
        values = [1.0] * len(problems)
        groups = [(problems[m[0]], m) for m in by_problem.values() if len(m) > 1]
        prompts = [self.vote_prompt(p, [step_lists[i] for i in m]) for p, m in groups]
        for (_, members), completions in zip(groups, self.engine.generate(prompts, self.params)):
            self.usage.add_completions(completions, self.engine.num_parameters)
            chosen = [parse_vote(c.text, len(members)) for c in completions]
            for number, i in enumerate(members):
                values[i] = chosen.count(number) / self.votes
        return [[value] * len(steps) for value, steps in zip(values, step_lists)]

    def vote_prompt(self, problem: Problem, states: Sequence[Sequence[str]]) -> str:
        choices = "".join(
            fill(self.prompt["choice"], number=str(k + 1), state="\n".join(steps)) for k, steps in enumerate(states)
        )
        return render(self.engine, fill(self.prompt["template"], question=problem.question, choices=choices), self.chat)

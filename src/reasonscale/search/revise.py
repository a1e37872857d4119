"""Sequential revisions (Snell et al. 2024, section 6): P chains of L attempts, each conditioned on the last
`window` attempts of its chain, at a budget N = P x L.

Attempt t of chain j is sample j of the prompt that shows chain j's earlier attempts, so chain j's first attempt is
pool sample j, a budget's chains are prefixes of a larger budget's, and the cache serves every repeat. Because a
revision can turn a right answer wrong, the answer is selected among all attempts, not taken from the chains' ends:
with a verifier hierarchically (weighted best-of-N within each chain, then across the chains' winners), or by a
flat majority over every attempt. Each attempt is billed its whole context (the re-sent attempts) and its tokens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from reasonscale.config import VerifiedStrategyConfig
from reasonscale.data.revisions import WINDOW, revision_context, revision_prompt
from reasonscale.engines.base import SampleRequest
from reasonscale.search.selection import majority_vote, weighted_vote
from reasonscale.search.strategy import Chunk, Outcome, Strategy, register
from reasonscale.types import Problem, Usage
from reasonscale.verifiers.base import aggregate


class ReviseConfig(VerifiedStrategyConfig):
    SHORT: ClassVar[dict[str, str]] = {**VerifiedStrategyConfig.SHORT, "length": "L", "window": "window"}

    name: Literal["revise"] = "revise"
    length: int = Field(4, ge=1, description="L: attempts per chain (a budget N runs N / L chains)")
    window: int = Field(WINDOW, ge=0, description="previous attempts shown in each attempt's context")
    select: Literal["verifier", "majority"] = Field(
        "verifier", description="verifier: weighted best-of-N within each chain, then across the chains' winners; "
        "majority: a vote over every attempt of every chain"
    )

    @model_validator(mode="after")
    def _needs_verifier(self) -> ReviseConfig:  # replaces the parent's check: majority needs no verifier
        if self.select == "verifier" and self.verifier is None:
            raise ValueError("strategy 'revise' with select: verifier needs a verifier (or use select: majority)")
        if self.select == "majority" and self.verifier is not None:
            raise ValueError("strategy 'revise' with select: majority uses no verifier: drop 'verifier'")
        if self.verifier is not None:
            VerifiedStrategyConfig._needs_verifier(self)
        for n in self.budget_list():
            if n % min(self.length, n):
                raise ValueError(f"revise: budget {n} is not a multiple of the chain length {self.length}")
        return self

    def base_label(self) -> str:
        return f"revise[{self.verifier or 'majority'}]" if self.aggregate == "last" else super().base_label()

    def shape(self, n: int) -> tuple[int, int]:
        """(P chains, L attempts each) at budget n: chains of `length` (or one chain of n below it)."""
        length = min(self.length, n)
        return n // length, length


@register
class Revise(Strategy):
    """P chains of L sequential revisions; the answer selected among every attempt."""

    config_class = ReviseConfig
    config: ReviseConfig

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        chains, usages = self.sample_chains(chunk, n)
        return [self.select(chunk, problem, attempts, usage)
                for problem, attempts, usage in zip(chunk.problems, chains, usages)]

    def in_context(self, problem: Problem, attempts: list[list[str]]) -> list[Problem]:
        """The problem of each attempt (chain-major) with the previous attempts it saw as `meta["context"]`, which
        verifiers that read the prompt read too (an ORM trained on revisions with their context)."""
        window = self.config.window
        return [replace(problem, meta={**problem.meta, "context": revision_context(chain[:t], window)})
                for chain in attempts for t in range(len(chain))]

    def sample_chains(self, chunk: Chunk, n: int) -> tuple[list[list[list[str]]], list[Usage]]:
        """Every problem's P chains of L attempt texts, and each problem's policy usage."""
        chains_n, length = self.config.shape(n)
        params = chunk.sampling()
        chains = [[[] for _ in range(chains_n)] for _ in chunk.problems]
        usages = [Usage() for _ in chunk.problems]
        for _ in range(length):
            requests = [
                SampleRequest(revision_prompt(prompt, chain, self.config.window), j)
                for prompt, problem_chains in zip(chunk.prompts, chains)
                for j, chain in enumerate(problem_chains)
            ]
            completions = iter(chunk.engine.complete(requests, params))
            for problem_chains, usage in zip(chains, usages):
                for chain in problem_chains:
                    completion = next(completions)
                    usage.add_completions([completion])
                    chain.append(completion.text)
        return chains, usages

    def select(self, chunk: Chunk, problem: Problem, attempts: list[list[str]], usage: Usage) -> Outcome:
        """Grade, group and (with a verifier) score every attempt of one problem; choose one answer."""
        task = chunk.task
        flat = [text for chain in attempts for text in chain]
        answers = [task.extract_answer(text) for text in flat]
        correct = task.grade([problem] * len(flat), answers)
        groups = task.group_answers(answers)
        if self.config.select == "majority":
            index = majority_vote(groups)
        else:
            steps = [task.split_steps(text) for text in flat]
            step_scores, costs = chunk.verifier(self.config).score_items(self.in_context(problem, attempts), steps)
            for cost in costs:
                usage += cost
            scores = [aggregate(s, self.config.aggregate) for s in step_scores]
            index = hierarchical_choice(groups, scores, len(attempts[0]))
        length = len(attempts[0])
        details: dict[str, Any] = {"correct": [[int(c) for c in correct[j : j + length]]
                                               for j in range(0, len(flat), length)]}
        if index is None:
            return Outcome(None, 0.0, usage, details=details)
        return Outcome(answers[index], float(correct[index]), usage, flat[index], details)


def hierarchical_choice(groups: list[int | None], scores: list[float], length: int) -> int | None:
    """Weighted best-of-N within each chain of `length` consecutive attempts (its winner: the best-scored attempt
    of its heaviest answer), then weighted best-of-N across the chains' winners by their scores."""
    winners = []
    for start in range(0, len(groups), length):
        chain = range(start, start + length)
        first = weighted_vote([groups[i] for i in chain], [scores[i] for i in chain])
        if first is not None:
            group = groups[start + first]
            winners.append(max((i for i in chain if groups[i] == group), key=lambda i: (scores[i], -i)))
    best = weighted_vote([groups[i] for i in winners], [scores[i] for i in winners])
    return None if best is None else winners[best]

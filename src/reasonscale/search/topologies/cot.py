"""Chain of thought as a topology: N independent chains, answered by majority vote (N = 1: one sampled chain)."""

from __future__ import annotations

from typing import Literal

from reasonscale.config import StrategyConfig
from reasonscale.search.selection import majority_vote
from reasonscale.search.strategy import Chunk, Outcome, Strategy, register
from reasonscale.types import Usage


class CoTConfig(StrategyConfig):
    name: Literal["cot"] = "cot"


@register
class CoT(Strategy):
    """One chain per sample, drawn with the run's sampling settings (the same samples, and cache entries, as the
    shared pool's first N); with N > 1 the chains vote (self-consistency). Named a topology so that TAG treats
    chains, trees and graphs alike."""

    config_class = CoTConfig

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        outputs = chunk.engine.generate(chunk.prompts, chunk.sampling(n))
        outcomes = []
        for problem, completions in zip(chunk.problems, outputs):
            answers = [chunk.task.extract_answer(c.text) for c in completions]
            usage = Usage()
            usage.add_completions(completions, chunk.engine.num_parameters)
            index = majority_vote(chunk.task.group_answers(answers))
            if index is None:
                outcomes.append(Outcome(None, 0.0, usage, completions[0].text))
                continue
            (ok,) = chunk.task.grade([problem], [answers[index]])
            outcomes.append(Outcome(answers[index], float(ok), usage, completions[index].text))
        return outcomes

"""Step-wise search strategies: beam search, lookahead search and DVTS, each run on its own at every budget."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Literal

from pydantic import Field

from reasonscale.config import StepSearchConfig
from reasonscale.search.beam import beam_search
from reasonscale.search.dvts import dvts
from reasonscale.search.lookahead import lookahead_search
from reasonscale.search.stepwise import SearchResult, StepSearch
from reasonscale.search.strategy import Chunk, Outcome, Strategy, register
from reasonscale.verifiers.base import Verifier


class StepStrategy(Strategy):
    """A tree search over steps, guided by the configured verifier; charged everything it generates and scores."""

    config: StepSearchConfig

    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        search = StepSearch(
            chunk.task,
            chunk.engine,
            self.scorer(chunk),
            chunk.problems,
            chunk.prompts,
            chunk.sampling(),
            step_max_tokens=self.config.step_max_tokens,
            aggregation=self.config.aggregate,
        )
        results = self.search(search, n)
        correct = chunk.task.grade(chunk.problems, [r.answer for r in results])
        return [
            Outcome(r.answer, float(ok), r.usage, None if r.chosen is None else r.candidates[r.chosen].text, r.details)
            for r, ok in zip(results, correct)
        ]

    def scorer(self, chunk: Chunk) -> Verifier:
        """What values the search's states: the configured verifier."""
        return chunk.verifier(self.config)

    @abstractmethod
    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        """One result per problem at budget n."""


class BeamConfig(StepSearchConfig):
    name: Literal["beam"] = "beam"


@register
class Beam(StepStrategy):
    """Beam search (Snell et al. 2024): keep N/M beams, expand each M times per round."""

    config_class = BeamConfig

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        return beam_search(search, n, self.config.beam_width, self.config.max_rounds)


class LookaheadConfig(StepSearchConfig):
    SHORT: ClassVar[dict[str, str]] = {**StepSearchConfig.SHORT, "lookahead": "k"}

    name: Literal["lookahead"] = "lookahead"
    lookahead: int = Field(1, ge=0, description="k: greedy steps rolled out to score a step")


@register
class Lookahead(StepStrategy):
    """Beam search whose step scores are read k greedy steps ahead: a budget N costs N x (k + 1) generations."""

    config_class = LookaheadConfig
    config: LookaheadConfig

    def generation_budget(self, n: int) -> float:
        return float(n * (self.config.lookahead + 1))

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        return lookahead_search(search, n, self.config.beam_width, self.config.max_rounds, self.config.lookahead)


class DVTSConfig(StepSearchConfig):
    name: Literal["dvts"] = "dvts"


@register
class DVTS(StepStrategy):
    """Diverse verifier tree search: N/M independent subtrees of width M."""

    config_class = DVTSConfig

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        return dvts(search, n, self.config.beam_width, self.config.max_rounds)

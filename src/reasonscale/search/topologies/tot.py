"""Tree of thoughts (Yao et al. 2023) over solution steps: breadth-first with the best N states kept per level, or
depth-first with pruning below a value threshold and backtracking. States are valued by the configured verifier, or
by the policy's votes (`evaluator: vote`, `search/topologies/vote.py`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from reasonscale.config import VerifiedStrategyConfig
from reasonscale.search.stepwise import Beam, SearchResult, StepSearch
from reasonscale.search.strategy import Chunk, register
from reasonscale.search.topologies.base import TopologyConfig, TopologyStrategy
from reasonscale.search.topologies.prompted import prompt_entry, uses_chat
from reasonscale.search.topologies.vote import VOTE_KEYS, VoteVerifier
from reasonscale.verifiers.base import Verifier


class ToTConfig(TopologyConfig):
    SHORT: ClassVar[dict[str, str]] = {**TopologyConfig.SHORT, "threshold": "v"}
    ADDED: ClassVar[frozenset[str]] = frozenset({"evaluator", "votes", "vote_prompt"})

    name: Literal["tot"] = "tot"
    method: Literal["bfs", "dfs"] = "bfs"
    threshold: float = Field(0.5, description="dfs: states valued below it are pruned")
    max_states: int = Field(64, ge=1, description="dfs: states expanded per problem at most")
    evaluator: Literal["verifier", "vote"] = Field(
        "verifier", description="what values states: the verifier, or the policy's votes among a problem's states"
    )
    votes: int = Field(5, ge=1, description="vote: replies sampled per vote; a state's value is its share")
    vote_prompt: str | dict[str, Any] | None = Field(
        None, description="vote: a prompt of prompts/topologies.yaml (default vote), FILE.yaml#NAME, or inline"
    )

    @model_validator(mode="after")
    def _needs_verifier(self) -> ToTConfig:  # replaces the parent's check: a vote needs no verifier
        if self.evaluator == "verifier":
            if self.vote_prompt is not None or self.votes != type(self).model_fields["votes"].default:
                raise ValueError("tot: votes and vote_prompt need evaluator: vote")
            return VerifiedStrategyConfig._needs_verifier(self)  # type: ignore[return-value]
        if self.verifier is not None:
            raise ValueError(f"tot: evaluator: vote values states by the policy's votes, not by '{self.verifier}'")
        self.vote_prompt = prompt_entry(self.vote_prompt or "vote", VOTE_KEYS, "tot.vote_prompt")
        return self

    def base_label(self) -> str:
        if self.evaluator == "verifier":
            return super().base_label()
        return "tot[vote]" if self.aggregate == "last" else f"tot[vote,{self.aggregate}]"

    def short(self, field: str, value: Any) -> str:
        return str(value) if field == "method" else super().short(field, value)


@register
class ToT(TopologyStrategy):
    """Budget N: bfs keeps the N best states per level (each proposes `children` steps); dfs stops after N
    solutions valued at or above the threshold."""

    config_class = ToTConfig
    config: ToTConfig

    def scorer(self, chunk: Chunk) -> Verifier:
        c = self.config
        if c.evaluator == "verifier":
            return super().scorer(chunk)
        chat = uses_chat(chunk.task, chunk.problems, chunk.prompts)
        return VoteVerifier(chunk.engine, c.vote_prompt, c.votes, chunk.sampling(), chat)  # type: ignore[arg-type]

    def search(self, search: StepSearch, n: int) -> list[SearchResult]:
        if self.config.method == "bfs":
            return bfs(search, n, self.config.children, self.config.depth)
        return dfs(search, n, self.config.children, self.config.depth, self.config.threshold, self.config.max_states)


def bfs(search: StepSearch, breadth: int, children: int, depth: int) -> list[SearchResult]:
    """Each level, every kept state proposes `children` next steps; finished solutions are set aside and the best
    `breadth` open states per problem are kept. After `depth` levels the kept states are run to their end."""
    finished: list[Beam] = []
    states = search.roots()
    for _ in range(depth):
        if not states:
            break
        proposals = search.expand(states, children)
        search.score(proposals)
        finished += [b for b in proposals if b.done]
        states = []
        for problem in range(len(search.problems)):
            open_ = [b for b in proposals if b.problem == problem and not b.done]
            states += sorted(open_, key=lambda b: -b.score)[:breadth]
    rest = search.finish(states)
    search.score(rest)
    return search.results(finished + rest)


def dfs(
    search: StepSearch, solutions: int, children: int, depth: int, threshold: float, max_states: int
) -> list[SearchResult]:
    """Depth-first: pop a state, propose `children` steps, push those valued at or above `threshold` (the best on
    top); when none is, the search backtracks to the next state on the stack. A state at `depth` steps is run to
    its end and kept if valued at or above the threshold. Stops at `solutions` kept solutions, an empty stack or
    `max_states` expansions; a problem with no kept solution falls back to running its best state seen to the end.
    One state per problem is expanded per engine call, so problems are searched side by side."""
    count = len(search.problems)
    stacks: list[list[tuple[Beam, int]]] = [[(root, 0)] for root in search.roots()]
    found: list[list[Beam]] = [[] for _ in range(count)]
    best: list[Beam | None] = [None] * count
    expanded = [0] * count
    while True:
        active = [p for p in range(count) if stacks[p] and len(found[p]) < solutions and expanded[p] < max_states]
        if not active:
            break
        popped = {p: stacks[p].pop() for p in active}
        for p, (state, _) in popped.items():
            if state.done:
                found[p].append(state)
        deep = [p for p, (s, d) in popped.items() if not s.done and d >= depth]
        ends = search.finish([popped[p][0] for p in deep])
        search.score(ends)
        for p, end in zip(deep, ends):
            if end.score >= threshold:
                found[p].append(end)
            best[p] = _better(best[p], end)
        grow = [p for p, (s, d) in popped.items() if not s.done and d < depth]
        proposals = search.expand([popped[p][0] for p in grow], children)
        search.score(proposals)
        for i, p in enumerate(grow):
            expanded[p] += 1
            mine = proposals[i * children : (i + 1) * children]
            for child in mine:
                best[p] = _better(best[p], child)
            good = sorted((c for c in mine if c.score >= threshold), key=lambda c: c.score)
            stacks[p] += [(c, popped[p][1] + 1) for c in good]
    fallback = [p for p in range(count) if not found[p] and best[p] is not None]
    ends = search.finish([best[p] for p in fallback])  # type: ignore[misc]
    search.score(ends)
    for p, end in zip(fallback, ends):
        found[p].append(end)
    return search.results(b for beams in found for b in beams)


def _better(best: Beam | None, beam: Beam) -> Beam:
    return beam if best is None or beam.score > best.score else best

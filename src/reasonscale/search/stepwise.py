"""Step-wise generation shared by the tree searches (beam, lookahead, DVTS).

A partial solution is continued by prompting with the problem's prompt plus the text generated so far and
stopping at the task's step delimiter; a completion that ends any other way (end of sequence, a solution stop,
the token limit) finishes the solution. Every policy and verifier token is charged to the problem that spent it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace

from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.search.selection import weighted_vote
from reasonscale.tasks.base import Task
from reasonscale.types import Candidate, Completion, Problem, SamplingParams, Usage
from reasonscale.verifiers.base import Aggregation, Verifier, aggregate


@dataclass
class Beam:
    """A partial (or finished) solution of problem number `problem`, grown in subtree `tree`."""

    problem: int
    tree: int = 0
    text: str = ""  # exactly as generated, stop strings included, so it can be continued verbatim
    done: bool = False
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0


@dataclass
class SearchResult:
    """A strategy's outcome on one problem: its final candidates, the chosen one and the compute spent."""

    candidates: list[Candidate]
    chosen: int | None
    usage: Usage

    @property
    def answer(self) -> str | None:
        return None if self.chosen is None else self.candidates[self.chosen].answer


def usage_delta(before: Usage, after: Usage) -> Usage:
    """What was spent between two snapshots of an accumulating Usage."""
    return Usage(**{f.name: getattr(after, f.name) - getattr(before, f.name) for f in fields(Usage)})


@dataclass
class StepSearch:
    """Expands, scores and finishes beams for a batch of problems with one engine and one verifier.

    `params` are the sampling settings of a whole solution (its max_tokens bounds the final completion);
    steps use the same temperature, top-p and seed with `step_max_tokens`. `usage[i]` is problem i's bill.
    """

    task: Task
    engine: Engine
    verifier: Verifier
    problems: Sequence[Problem]
    prompts: Sequence[str]
    params: SamplingParams
    step_max_tokens: int = 48
    aggregation: Aggregation = "last"
    lookahead: int = 0
    usage: list[Usage] = field(init=False)

    def __post_init__(self) -> None:
        self.usage = [Usage() for _ in self.problems]

    def step_params(self, greedy: bool = False) -> SamplingParams:
        stop = (self.task.step_delimiter, *self.task.solution_stop)
        temperature = 0.0 if greedy else self.params.temperature
        return replace(self.params, n=1, max_tokens=self.step_max_tokens, stop=stop, temperature=temperature)

    def roots(self, trees: int = 1) -> list[Beam]:
        """Empty solutions: `trees` independent subtrees per problem."""
        return [Beam(problem=i, tree=t) for i in range(len(self.problems)) for t in range(trees)]

    def generate(self, beams: Sequence[Beam], k: int, params: SamplingParams) -> list[list[Completion]]:
        """k completions per beam in one engine call; beams that share a prompt get disjoint sample indices."""
        taken: dict[str, int] = defaultdict(int)
        requests = []
        for beam in beams:
            prompt = self.prompts[beam.problem] + beam.text
            requests += [SampleRequest(prompt, taken[prompt] + j) for j in range(k)]
            taken[prompt] += k
        flat = self.engine.complete(requests, params) if requests else []
        out = [flat[i * k : (i + 1) * k] for i in range(len(beams))]
        for beam, completions in zip(beams, out):
            self.usage[beam.problem].add_completions(completions, self.engine.num_parameters)
        return out

    def expand(self, beams: Sequence[Beam], k: int, greedy: bool = False) -> list[Beam]:
        """k one-step continuations of every beam (k*len(beams) children, grouped by parent)."""
        outputs = self.generate(beams, k, self.step_params(greedy))
        return [self.child(b, c) for b, completions in zip(beams, outputs) for c in completions]

    def child(self, beam: Beam, completion: Completion) -> Beam:
        """The beam plus one step; it is finished unless the step ended on the delimiter (and no solution stop)."""
        text = beam.text + completion.text + (completion.stop or "")
        ended = completion.stop != self.task.step_delimiter or any(text.endswith(s) for s in self.task.solution_stop)
        return Beam(beam.problem, beam.tree, text, done=ended)

    def finish(self, beams: Sequence[Beam]) -> list[Beam]:
        """Each beam completed to the end of its solution in one call (no step stop)."""
        params = replace(self.params, n=1, stop=self.task.solution_stop)
        outputs = self.generate(beams, 1, params)
        return [Beam(b.problem, b.tree, b.text + c.text, done=True) for b, (c,) in zip(beams, outputs)]

    def steps(self, beam: Beam) -> list[str]:
        return self.task.split_steps(beam.text)

    def score(self, beams: Sequence[Beam]) -> None:
        """Set each beam's step scores and aggregated score; with lookahead k, unfinished beams are scored at
        the end of a k-step greedy rollout (Snell et al. 2024, section 5)."""
        probes = list(beams)
        for _ in range(self.lookahead):
            open_ = [i for i, p in enumerate(probes) if not p.done]
            for i, rolled in zip(open_, self.expand([probes[i] for i in open_], 1, greedy=True)):
                probes[i] = rolled
        by_problem: dict[int, list[int]] = defaultdict(list)
        for i, beam in enumerate(beams):
            by_problem[beam.problem].append(i)
        for problem, members in by_problem.items():
            before = replace(self.verifier.usage)
            scores = self.verifier.score(
                [self.problems[problem]] * len(members), [self.steps(probes[i]) for i in members]
            )
            self.usage[problem] += usage_delta(before, self.verifier.usage)
            for i, step_scores in zip(members, scores):
                beams[i].step_scores = step_scores[: len(self.steps(beams[i]))]
                beams[i].score = aggregate(step_scores, self.aggregation)

    def results(self, finished: Iterable[Beam]) -> list[SearchResult]:
        """Per problem: candidates from the finished beams and the answer of greatest summed score."""
        per_problem: list[list[Beam]] = [[] for _ in self.problems]
        for beam in finished:
            per_problem[beam.problem].append(beam)
        return [self.select(beams, usage) for beams, usage in zip(per_problem, self.usage)]

    def select(self, beams: list[Beam], usage: Usage) -> SearchResult:
        candidates = [
            Candidate(b.text, self.task.extract_answer(b.text), self.steps(b), score=b.score, step_scores=b.step_scores)
            for b in beams
        ]
        groups = self.task.group_answers([c.answer for c in candidates])
        return SearchResult(candidates, weighted_vote(groups, [c.score or 0.0 for c in candidates]), usage)


def tree_search(search: StepSearch, roots: list[Beam], n: int, width: int, max_rounds: int) -> list[Beam]:
    """Step-level beam search from each root: sample n first steps; each round keep the best max(1, n // width)
    unfinished beams and expand each n // keep times, until n solutions per root have finished or the rounds run
    out (then the best unfinished ones are completed in one go). Returns the finished beams of every root."""
    keep = max(1, n // width)
    per = max(1, n // keep)
    finished: dict[tuple[int, int], list[Beam]] = defaultdict(list)
    active = search.expand(roots, n)
    search.score(active)
    for _ in range(1, max_rounds):
        active = _retire(active, finished, n)
        if not active:
            break
        active = search.expand(_best_per_root(active, keep), per)
        search.score(active)
    active = _retire(active, finished, n)
    last = [b for root in _group(active).values() for b in _top(root, n - len(finished[_root(root[0])]))]
    completed = search.finish(last) if last else []
    search.score(completed)
    return [b for beams in finished.values() for b in beams] + completed


def _root(beam: Beam) -> tuple[int, int]:
    return beam.problem, beam.tree


def _group(beams: Iterable[Beam]) -> dict[tuple[int, int], list[Beam]]:
    groups: dict[tuple[int, int], list[Beam]] = defaultdict(list)
    for beam in beams:
        groups[_root(beam)].append(beam)
    return groups


def _top(beams: list[Beam], k: int) -> list[Beam]:
    return sorted(beams, key=lambda b: -b.score)[: max(0, k)]


def _retire(beams: list[Beam], finished: dict[tuple[int, int], list[Beam]], n: int) -> list[Beam]:
    """Move finished beams out; drop the open beams of roots that already have n finished solutions."""
    for beam in beams:
        if beam.done:
            finished[_root(beam)].append(beam)
    return [b for b in beams if not b.done and len(finished[_root(b)]) < n]


def _best_per_root(beams: list[Beam], keep: int) -> list[Beam]:
    return [b for root in _group(beams).values() for b in _top(root, keep)]

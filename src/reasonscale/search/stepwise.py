"""Step-wise generation shared by the tree searches (beam, lookahead, DVTS).

A partial solution is continued by prompting with the problem's prompt plus the text generated so far. A step
is generated until it ends on the task's step delimiter; a step cut by `step_max_tokens` is continued in further
calls until it ends, so a long step is never taken for a finished solution. A solution ends at the end of
sequence, at its token budget (the solution's `max_tokens`), or at a solution stop (e.g. `\nQuestion:`), which is
looked for in the whole text generated so far: a stop that spans a step boundary ("...\n\n" then "Question:")
is found too, the text is cut there and the beam is finished. Every policy and verifier token is charged to the
problem that spent it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from reasonscale.engines.base import Engine, SampleRequest, cut_at_stop
from reasonscale.search.selection import weighted_vote
from reasonscale.tasks.base import Task
from reasonscale.types import Candidate, Completion, Problem, SamplingParams, Usage
from reasonscale.verifiers.base import Aggregation, Verifier, aggregate


@dataclass
class Beam:
    """A partial (or finished) solution of problem number `problem`, grown in subtree `tree`."""

    problem: int
    tree: int = 0
    # As generated, step delimiters included, so it can be continued verbatim; a finished solution ends before
    # the solution stop that ended it.
    text: str = ""
    done: bool = False
    partial: bool = False  # its last step was cut before its end (token limit) and goes on in the next call
    tokens: int = 0  # policy tokens generated into this solution
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0


@dataclass
class SearchResult:
    """A strategy's outcome on one problem: its final candidates, the chosen one and the compute spent."""

    candidates: list[Candidate]
    chosen: int | None
    usage: Usage
    details: dict[str, Any] | None = None  # anything a strategy reports of its search (kept in the outcome)

    @property
    def answer(self) -> str | None:
        return None if self.chosen is None else self.candidates[self.chosen].answer


def usage_delta(before: Usage, after: Usage) -> Usage:
    """What was spent between two snapshots of an accumulating Usage."""
    return Usage(**{f.name: getattr(after, f.name) - getattr(before, f.name) for f in fields(Usage)})


@dataclass
class StepSearch:
    """Expands, scores and finishes beams for a batch of problems with one engine and one verifier.

    `params` are the sampling settings of a whole solution (its max_tokens is a solution's token budget);
    steps use the same temperature, top-p and seed with `step_max_tokens` per call. `usage[i]` is problem i's bill.
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

    def step_params(self, greedy: bool = False, text: str = "") -> SamplingParams:
        """Settings of one step call after `text`: stop at the step delimiter, at a solution stop, and at the
        rest of a solution stop whose beginning `text` already ends with (so "Question:" after "...\n\n")."""
        stops = (self.task.step_delimiter, *self.task.solution_stop, *stop_rests(text, self.task.solution_stop))
        temperature = 0.0 if greedy else self.params.temperature
        return replace(
            self.params, n=1, max_tokens=self.step_max_tokens, stop=tuple(dict.fromkeys(stops)), temperature=temperature
        )

    def roots(self, trees: int = 1) -> list[Beam]:
        """Empty solutions: `trees` independent subtrees per problem."""
        return [Beam(problem=i, tree=t) for i in range(len(self.problems)) for t in range(trees)]

    def generate(self, beams: Sequence[Beam], counts: Sequence[int], greedy: bool = False) -> list[list[Completion]]:
        """counts[i] step completions of beam i; beams that share a prompt get disjoint sample indices, so
        subtrees or siblings never reuse a sample. One engine call per distinct set of step settings."""
        taken: dict[str, int] = defaultdict(int)
        groups: dict[SamplingParams, list[tuple[int, list[SampleRequest]]]] = defaultdict(list)
        for i, (beam, k) in enumerate(zip(beams, counts)):
            prompt = self.prompts[beam.problem] + beam.text
            groups[self.step_params(greedy, beam.text)].append(
                (i, [SampleRequest(prompt, taken[prompt] + j) for j in range(k)])
            )
            taken[prompt] += k
        out: list[list[Completion]] = [[] for _ in beams]
        for params, members in groups.items():
            flat = iter(self.engine.complete([r for _, requests in members for r in requests], params))
            for i, requests in members:
                out[i] = [next(flat) for _ in requests]
        for beam, completions in zip(beams, out):
            self.usage[beam.problem].add_completions(completions, self.engine.num_parameters)
        return out

    def expand(self, beams: Sequence[Beam], k: int | Sequence[int], greedy: bool = False) -> list[Beam]:
        """k (or k[i]) one-step continuations of every beam, grouped by parent; each child's step is complete
        (continued past the token limit as often as needed) or its solution finished."""
        counts = [k] * len(beams) if isinstance(k, int) else list(k)
        outputs = self.generate(beams, counts, greedy)
        children = [self.child(b, c) for b, completions in zip(beams, outputs) for c in completions]
        while cut := [i for i, c in enumerate(children) if c.partial]:
            for i, (completion,) in zip(cut, self.generate([children[i] for i in cut], [1] * len(cut), greedy)):
                children[i] = self.child(children[i], completion)
        return children

    def child(self, beam: Beam, completion: Completion) -> Beam:
        """The beam plus one generated piece. A solution stop anywhere in the text so far cuts the text there
        and finishes the solution; the end of sequence and the solution's token budget finish it too. A piece
        that ended on the step delimiter completes its step; any other (the step token limit, or a stop's rest
        that completed no stop) leaves the step partial, to be continued."""
        text = beam.text + completion.text + (completion.stop or "")
        tokens = beam.tokens + max(1, completion.completion_tokens)
        kept, stop = cut_at_stop(text, self.task.solution_stop)
        if stop is not None:
            return Beam(beam.problem, beam.tree, kept, done=True, tokens=tokens)
        ended = completion.finish_reason != "length" and completion.stop is None  # end of sequence
        done = ended or tokens >= self.params.max_tokens
        step_end = completion.finish_reason != "length" and completion.stop == self.task.step_delimiter
        return Beam(beam.problem, beam.tree, text, done=done, partial=not (done or step_end), tokens=tokens)

    def finish(self, beams: Sequence[Beam]) -> list[Beam]:
        """Each beam run to the end of its solution, step after step, without scoring or pruning."""
        out = list(beams)
        while open_ := [i for i, b in enumerate(out) if not b.done]:
            for i, child in zip(open_, self.expand([out[i] for i in open_], 1)):
                out[i] = child
        return out

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


def tree_search(
    search: StepSearch, roots: list[Beam], budgets: Sequence[int], width: int, max_rounds: int
) -> list[Beam]:
    """Step-level beam search from each root with budgets[i] candidates per round (Snell et al. 2024, section 5).

    Round 1 samples `budget` first steps. Each later round refills the root's open slots (its budget less its
    finished solutions): the best max(1, slots // width) open beams are kept and the slots are spread over them
    as evenly as possible, the better beams taking the remainder (N=10, M=4: 5 and 5; N=9: 5 and 4). So a round
    costs at most `budget` steps and a root never holds more than `budget` finished solutions. When the rounds
    run out, the open beams left are run to the end of their solutions without pruning. Returns every root's
    finished beams.
    """
    budget = {_root(r): b for r, b in zip(roots, budgets)}
    finished: dict[tuple[int, int], list[Beam]] = defaultdict(list)
    active = search.expand(roots, list(budgets))
    search.score(active)
    for _ in range(1, max_rounds):
        active = _retire(active, finished)
        if not active:
            break
        parents, counts = [], []
        for root, beams in _group(active).items():
            slots = budget[root] - len(finished[root])
            kept = _top(beams, min(len(beams), max(1, slots // width)))
            parents += kept
            counts += [slots // len(kept) + (i < slots % len(kept)) for i in range(len(kept))]
        active = search.expand(parents, counts)
        search.score(active)
    active = _retire(active, finished)
    completed = search.finish(active)
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


def _retire(beams: list[Beam], finished: dict[tuple[int, int], list[Beam]]) -> list[Beam]:
    """Move finished beams out; return the open ones."""
    for beam in beams:
        if beam.done:
            finished[_root(beam)].append(beam)
    return [b for b in beams if not b.done]


def stop_rests(text: str, stops: Sequence[str]) -> list[str]:
    """For each stop whose beginning `text` ends with, the rest of it: what would complete it next."""
    return [s[cut:] for s in stops for cut in range(1, len(s)) if text.endswith(s[:cut])]

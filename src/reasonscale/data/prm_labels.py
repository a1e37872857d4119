"""Process labels without human annotation (Wang et al. 2024, Math-Shepherd): Monte-Carlo rollouts per step.

Sample solutions from the policy; for every step prefix, roll out k completions and label the step with the
fraction that reach the right answer (soft) and with whether any does (hard). The last step is labelled by the
solution's own outcome. Rollouts come from the policy (the default, as in Snell et al. 2024: a label is the
step's value under the policy that will be searched) or from a separate "completer" model (Math-Shepherd's term):
its labels value a step under the completer instead; a stronger one finishes correct prefixes more often, so its
labels separate right from wrong steps more sharply but no longer say what the policy makes of the step. Every
sample goes through the given engines, so caching engines make this resumable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from reasonscale.engines.base import Engine
from reasonscale.tasks.base import Task
from reasonscale.types import Problem, SamplingParams


@dataclass
class PRMExample:
    """One sampled solution with a label per step."""

    problem_id: str
    question: str
    prompt: str
    steps: list[str]
    soft: list[float]  # fraction of rollouts from the prefix ending at this step that reach the right answer
    hard: list[float]  # 1.0 when any of them does
    correct: bool  # the sampled solution's own outcome
    level: int | None = None


def step_prefixes(text: str, delimiter: str) -> list[str]:
    """For each non-empty step of `text`, the text up to the end of that step (its delimiter included)."""
    prefixes, end = [], 0
    pieces = text.split(delimiter)
    for i, piece in enumerate(pieces):
        end += len(piece) + (len(delimiter) if i < len(pieces) - 1 else 0)
        if piece.strip():
            prefixes.append(text[:end])
    return prefixes


def build_prm_examples(
    task: Task,
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    params: SamplingParams,
    samples: int = 4,
    rollouts: int = 4,
    completer: Engine | None = None,
) -> list[PRMExample]:
    """`samples` solutions per problem from `engine`, each step labelled by `rollouts` completions of its prefix
    from `completer` (default: `engine`)."""
    outputs = engine.generate(prompts, replace(params, n=samples))
    solutions = [(p, prompt, c.text) for p, prompt, cs in zip(problems, prompts, outputs) for c in cs]
    owners: dict[str, tuple[Problem, int]] = {}  # prefix prompt -> its problem and where the solution starts
    for p, prompt, text in solutions:
        for prefix in step_prefixes(text, task.step_delimiter)[:-1]:
            owners.setdefault(prompt + prefix, (p, len(prompt)))
    rolled = (completer or engine).generate(list(owners), replace(params, n=rollouts))
    flat = [(owners[pp][0], pp[owners[pp][1] :] + c.text) for pp, cs in zip(owners, rolled) for c in cs]
    verdicts = task.grade([p for p, _ in flat], [task.extract_answer(t) for _, t in flat])
    success = {pp: verdicts[i * rollouts : (i + 1) * rollouts] for i, pp in enumerate(owners)}
    own = task.grade([p for p, _, _ in solutions], [task.extract_answer(t) for _, _, t in solutions])
    return [label(task, p, prompt, text, ok, success) for (p, prompt, text), ok in zip(solutions, own)]


def label(
    task: Task, problem: Problem, prompt: str, text: str, correct: bool, success: dict[str, list[bool]]
) -> PRMExample:
    """The example for one solution from the rollout outcomes of its prefixes."""
    prefixes = step_prefixes(text, task.step_delimiter)
    outcomes = [success[prompt + prefix] for prefix in prefixes[:-1]] + [[correct]] if prefixes else []
    return PRMExample(
        problem_id=problem.id,
        question=problem.question,
        prompt=prompt,
        steps=task.split_steps(text),
        soft=[sum(o) / len(o) for o in outcomes],
        hard=[float(any(o)) for o in outcomes],
        correct=correct,
        level=problem.level,
    )


def save_examples(examples: Sequence[PRMExample], path: str | Path) -> Path:
    """Write examples as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    return path


def load_examples(path: str | Path) -> list[PRMExample]:
    return [PRMExample(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]

"""Process labels for PRM training: Monte-Carlo rollouts per step (Wang et al. 2024, Math-Shepherd), or a verifier's.

Sample solutions from the policy; for every step prefix, roll out k completions and label the step with the
fraction that reach the right answer (soft) and with whether any does (hard). The last step is labelled by the
solution's own outcome. Rollouts come from the policy (the default, as in Snell et al. 2024: a label is the
step's value under the policy that will be searched) or from a separate "completer" model (Math-Shepherd's term):
its labels value a step under the completer instead; a stronger one finishes correct prefixes more often, so its
labels separate right from wrong steps more sharply but no longer say what the policy makes of the step. Every
sample goes through the given engines, so caching engines make this resumable.

`verified_prm_examples` labels the sampled solutions with a step verifier instead (the lab's exact oracle: 1 up to
the first wrong step, 0 from it on), with no rollouts: the label-quality upper bound. `hard_negatives` adds
near-miss copies of a solution's prefix whose last step has a wrong number (`a=8+11=29`), labelled 0 there.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from reasonscale.engines.base import Engine
from reasonscale.tasks.base import Task
from reasonscale.types import Problem, SamplingParams
from reasonscale.verifiers.base import Verifier


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


def sample_solutions(
    task: Task, engine: Engine, problems: Sequence[Problem], prompts: Sequence[str], params: SamplingParams,
    samples: int,
) -> list[tuple[Problem, str, str, bool]]:
    """`samples` solutions per problem from `engine`: (problem, prompt, text, whether its answer is right)."""
    outputs = engine.generate(prompts, replace(params, n=samples))
    solutions = [(p, prompt, c.text) for p, prompt, cs in zip(problems, prompts, outputs) for c in cs]
    own = task.grade([p for p, _, _ in solutions], [task.extract_answer(t) for _, _, t in solutions])
    return [(p, prompt, text, ok) for (p, prompt, text), ok in zip(solutions, own)]


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
    solutions = sample_solutions(task, engine, problems, prompts, params, samples)
    owners: dict[str, tuple[Problem, int]] = {}  # prefix prompt -> its problem and where the solution starts
    for p, prompt, text, _ in solutions:
        for prefix in step_prefixes(text, task.step_delimiter)[:-1]:
            owners.setdefault(prompt + prefix, (p, len(prompt)))
    rolled = (completer or engine).generate(list(owners), replace(params, n=rollouts))
    flat = [(owners[pp][0], pp[owners[pp][1] :] + c.text) for pp, cs in zip(owners, rolled) for c in cs]
    verdicts = task.grade([p for p, _ in flat], [task.extract_answer(t) for _, t in flat])
    success = {pp: verdicts[i * rollouts : (i + 1) * rollouts] for i, pp in enumerate(owners)}
    return [label(task, p, prompt, text, ok, success) for p, prompt, text, ok in solutions]


def verified_prm_examples(
    task: Task,
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    params: SamplingParams,
    verifier: Verifier,
    samples: int = 4,
) -> list[PRMExample]:
    """`samples` solutions per problem from `engine`, each step labelled by `verifier`'s score (soft and hard
    alike); no rollouts."""
    return relabel(sample_as_examples(task, sample_solutions(task, engine, problems, prompts, params, samples)),
                   verifier)


def sample_as_examples(task: Task, solutions: Sequence[tuple[Problem, str, str, bool]]) -> list[PRMExample]:
    """Sampled solutions as examples without labels yet (all steps 0.0)."""
    out = []
    for p, prompt, text, ok in solutions:
        steps = task.split_steps(text)
        out.append(PRMExample(p.id, p.question, prompt, steps, [0.0] * len(steps), [0.0] * len(steps), ok, p.level))
    return out


def relabel(examples: Sequence[PRMExample], verifier: Verifier) -> list[PRMExample]:
    """The examples with every step labelled by `verifier` (soft and hard alike)."""
    problems = [Problem(e.problem_id, e.question, "", e.level) for e in examples]
    scores = verifier.score(problems, [e.steps for e in examples])
    return [replace(e, soft=list(s), hard=list(s)) for e, s in zip(examples, scores)]


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


LAST_NUMBER = re.compile(r"(?<!\d)\d{1,12}(?!\d)")  # a bounded number, not part of a longer one
MAX_STEP_CHARS = 400  # longer steps get no hard negatives


def near_misses(value: int) -> list[int]:
    """Wrong values close to `value`: ±1, ±10 and each swap of two adjacent digits; never `value`, never negative."""
    digits = str(value)
    swaps = [digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :] for i in range(len(digits) - 1)]
    candidates = [value + 1, value - 1, value + 10, value - 10, *(int(d) for d in swaps if d[0] != "0")]
    return [v for v in dict.fromkeys(candidates) if v >= 0 and v != value]


def perturb(step: str, rng: random.Random, k: int) -> list[str]:
    """Up to `k` copies of `step` whose last number is replaced by a near miss (none for a step without one)."""
    if len(step) > MAX_STEP_CHARS:
        return []
    match = None
    for match in LAST_NUMBER.finditer(step):
        pass
    if match is None:
        return []
    wrong = near_misses(int(match.group()))
    return [step[: match.start()] + str(v) + step[match.end() :] for v in rng.sample(wrong, min(k, len(wrong)))]


def hard_negatives(examples: Sequence[PRMExample], k: int, seed: int = 0) -> list[PRMExample]:
    """For every step labelled 1.0 (soft), up to `k` near-miss copies of the solution up to that step, the step's
    last number made wrong and labelled 0 there (the steps after it dropped). Deterministic: each step draws from
    its own generator, seeded by `seed`, the prompt and the prefix; duplicates are kept once."""
    out: dict[tuple[str, tuple[str, ...]], PRMExample] = {}
    for e in examples:
        for i, step in enumerate(e.steps):
            if e.soft[i] != 1.0:
                continue
            rng = random.Random("\x00".join([str(seed), e.prompt, *e.steps[: i + 1]]))
            for wrong in perturb(step, rng, k):
                steps = [*e.steps[:i], wrong]
                negative = PRMExample(e.problem_id, e.question, e.prompt, steps, [*e.soft[:i], 0.0],
                                      [*e.hard[:i], 0.0], False, e.level)
                out.setdefault((e.prompt, tuple(steps)), negative)
    return list(out.values())


def save_examples(examples: Sequence[PRMExample], path: str | Path) -> Path:
    """Write examples as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    return path


def load_examples(path: str | Path) -> list[PRMExample]:
    return [PRMExample(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]

"""Revision trajectories (Snell et al. 2024, appendix H) and the revision prompt format.

From N parallel answers per training question: answers without a final answer are dropped; for each correct answer,
k is drawn uniformly from 0..min(4, #incorrect) and k incorrect answers are put before it, the last of them the one
closest to the correct answer by character edit distance, the others drawn at random, so the model learns to edit
an attempt rather than restart. The SFT example's prompt holds the question and those attempts; its completion (the
only tokens with a loss) is the correct answer. Graded by the task's own grader: no oracle is needed.

The prompt: the task's prompt, then each previous attempt (the last `window`) after `PREVIOUS`, then `REVISED`.
With no previous attempt it is the task's prompt alone, so a chain's first attempt is an ordinary sample. Markers
are plain ASCII lines (the lab's character tokenizer has them); for a chat model the task prompt is the rendered
user turn and the attempts follow in the assistant turn, as its own earlier answers (see docs/scaling.md).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reasonscale.identity import digest

PREVIOUS = "Previous attempt:\n"
REVISED = "Revised attempt:\n"
WINDOW = 4
MAX_PREVIOUS = 4


def revision_context(previous: Sequence[str], window: int = WINDOW) -> str:
    """What follows the task prompt before the next attempt: the last `window` attempts, each after a marker, then
    the marker of the new one (empty without previous attempts)."""
    shown = list(previous)[-window:] if window > 0 else []
    if not shown:
        return ""
    return "".join(f"{PREVIOUS}{attempt.strip()}\n" for attempt in shown) + REVISED


def revision_prompt(prompt: str, previous: Sequence[str], window: int = WINDOW) -> str:
    """The context of the next attempt: the task prompt and the last `window` attempts, each after a marker."""
    return prompt + revision_context(previous, window)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings, by characters (two rows of the dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class RevisionExample:
    """One SFT example: `previous` incorrect attempts (nearest last) before the `completion`, a correct answer."""

    problem_id: str
    prompt: str
    completion: str
    previous: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trajectories(
    problem_id: str,
    prompt: str,
    samples: Sequence[dict[str, Any]],
    seed: int = 0,
    max_previous: int = MAX_PREVIOUS,
    window: int = WINDOW,
) -> list[RevisionExample]:
    """The revision examples of one question from its graded samples ({text, answer, correct}).

    Samples without an answer are dropped. Every correct sample gives one example; the draws depend only on
    (seed, problem_id), so a question's examples do not change when other questions are added.
    """
    valid = [s for s in samples if s["answer"] is not None]
    correct = [s["text"] for s in valid if s["correct"]]
    incorrect = [s["text"] for s in valid if not s["correct"]]
    rng = random.Random(digest([seed, problem_id]))
    out = []
    for answer in correct:
        k = rng.randint(0, min(max_previous, len(incorrect)))
        previous = _previous(answer, incorrect, k, rng)
        out.append(RevisionExample(problem_id, revision_prompt(prompt, previous, window), answer, tuple(previous)))
    return out


def _previous(answer: str, incorrect: list[str], k: int, rng: random.Random) -> list[str]:
    """k incorrect attempts: k-1 at random, then the one nearest `answer` by edit distance (first on ties)."""
    if k == 0:
        return []
    nearest = min(range(len(incorrect)), key=lambda i: (edit_distance(answer, incorrect[i]), i))
    others = [i for i in range(len(incorrect)) if i != nearest]
    return [incorrect[i] for i in rng.sample(others, k - 1)] + [incorrect[nearest]]


def build_revision_data(
    items: Sequence[tuple[str, str, Sequence[dict[str, Any]]]],
    seed: int = 0,
    split_steps=None,
    max_previous: int = MAX_PREVIOUS,
    window: int = WINDOW,
) -> tuple[list[RevisionExample], dict[str, Any]]:
    """Examples from (problem id, prompt, graded samples) per question, and statistics about them.

    With `split_steps` (the task's), the statistics include how often the nearest incorrect attempt shares its
    first step with the correct answer it precedes.
    """
    examples: list[RevisionExample] = []
    dropped = 0
    for problem_id, prompt, samples in items:
        dropped += sum(s["answer"] is None for s in samples)
        examples.extend(trajectories(problem_id, prompt, samples, seed, max_previous, window))
    revised = [e for e in examples if e.previous]
    stats: dict[str, Any] = {
        "questions": len(items),
        "samples": sum(len(s) for _, _, s in items),
        "dropped_without_answer": dropped,
        "examples": len(examples),
        "previous_attempts": dict(sorted(Counter(len(e.previous) for e in examples).items())),
    }
    if split_steps is not None:
        shared = [_first_step(split_steps, e.previous[-1]) == _first_step(split_steps, e.completion) for e in revised]
        stats["nearest_shares_first_step"] = sum(shared) / len(shared) if shared else None
    return examples, stats


def _first_step(split_steps, text: str) -> str | None:
    steps = split_steps(text)
    return steps[0] if steps else None


def verifier_examples(task, problem, prompt: str, chains: Sequence[Sequence[str]], window: int = WINDOW) -> list:
    """Outcome-labelled examples for a verifier of revisions (the paper's ORM): each attempt of each chain, after
    the prompt that showed it its previous attempts, labelled by the task's grader; one segment per attempt (as the
    `orm` verifier reads it). Attempts without any step are left out."""
    from reasonscale.data.prm_labels import PRMExample

    flat = [(chain[:t], text) for chain in chains for t, text in enumerate(chain)]
    answers = [task.extract_answer(text) for _, text in flat]
    correct = task.grade([problem] * len(flat), answers)
    out = []
    for (previous, text), ok in zip(flat, correct):
        steps = task.split_steps(text)
        if steps:
            label = [float(ok)]
            out.append(PRMExample(problem.id, problem.question, revision_prompt(prompt, previous, window),
                                  [task.join_steps(steps)], label, label, bool(ok), problem.level))
    return out

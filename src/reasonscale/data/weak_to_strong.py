"""Weak-to-strong reasoning data (Yang et al. 2024): the stage I consistency filter and the stage II confidence
filter and preference pairs, as pure functions over generations, plus how clean each set is against gold.

A generation is a dict with at least `id`, `question` and `response` (the model's whole solution); answers are
extracted by the task and compared with its grader's equivalence (`Task.group_answers`), never as strings.
Random choices are seeded per question (`seed`, question id), so a set is the same in any order or batch.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reasonscale.tasks.base import Task
from reasonscale.types import Problem

Generation = dict[str, Any]
PairMode = Literal["weak", "strong"]


def demonstrations(pool: Sequence[Generation], problem_id: str, question: str, k: int, seed: int) -> list[Generation]:
    """`k` weak question/solution pairs for in-context learning, drawn from `pool` (seeded by the question),
    never the question being answered (neither its id nor its text)."""
    others = [g for g in pool if g["id"] != problem_id and g["question"] != question]
    if len(others) < k:
        raise ValueError(
            f"{k} demonstrations asked but only {len(others)} other weak solutions exist: ask for fewer "
            "(stage1.demonstrations) or give more questions"
        )
    return random.Random(f"demos/{seed}/{problem_id}").sample(others, k)


def icl_prompt(task: Task, problem: Problem, demos: Sequence[Generation]) -> str:
    """The task's prompt for `problem` with `demos` as worked examples before it.

    JSONL-style tasks (gsm8k, math, jsonl) add them to their few-shot examples; any other task (the lab) gets each
    demonstration as its own prompt followed by the solution and a blank line."""
    from reasonscale.tasks.jsonl import JsonlTask

    if isinstance(task, JsonlTask):
        shown = copy.copy(task)
        shown.examples = [*task.examples, *((d["question"], d["response"]) for d in demos)]
        return shown.format_prompt(problem)
    shots = "".join(
        task.format_prompt(Problem(d["id"], d["question"], "")) + d["response"] + "\n\n" for d in demos
    )
    return shots + task.format_prompt(problem)


def answers_agree(task: Task, pairs: Sequence[tuple[str | None, str | None]]) -> list[bool]:
    """For each pair of answers, whether the task's grader says they are the same (a missing answer never agrees).

    Equal normal forms agree at once; the rest are asked in one batch in both directions (graders may be
    asymmetric), as `Task.group_answers` does."""
    verdicts = [a is not None and b is not None and task.normalize(a) == task.normalize(b) for a, b in pairs]
    ask = [i for i, (a, b) in enumerate(pairs) if a is not None and b is not None and not verdicts[i]]
    if ask:
        asked = [pairs[i] for i in ask] + [pairs[i][::-1] for i in ask]
        said = task.equivalent(asked)  # type: ignore[arg-type]
        for n, i in enumerate(ask):
            verdicts[i] = bool(said[n] or said[len(ask) + n])
    return verdicts


def consistent(task: Task, weak: Sequence[Generation], icl: Sequence[Generation]) -> set[str]:
    """Stage I: ids of the questions whose weak and ICL final answers agree (final-answer consistency)."""
    icl_by_id = {g["id"]: g for g in icl}
    both = [(w, icl_by_id[w["id"]]) for w in weak if w["id"] in icl_by_id]
    pairs = [(task.extract_answer(w["response"]), task.extract_answer(i["response"])) for w, i in both]
    return {w["id"] for (w, _), ok in zip(both, answers_agree(task, pairs)) if ok}


def sft_records(task: Task, problems: Mapping[str, Problem], generations: Sequence[Generation]) -> list[Generation]:
    """Training examples (`prompt` = the task's plain prompt, `completion` = the response) with their answer."""
    return [
        {
            "id": g["id"],
            "question": g["question"],
            "prompt": task.format_prompt(problems[g["id"]]),
            "completion": g["response"],
            "answer": task.extract_answer(g["response"]),
        }
        for g in generations
    ]


@dataclass(frozen=True)
class Vote:
    """The strong samples of one question grouped by answer: the majority group, its share and each sample's group.

    Samples without an answer count in the denominator and belong to no group. Among tied groups the majority is the
    one whose first sample comes first (as `Counter.most_common`), so a tie is resolved by sample order."""

    groups: list[int | None]
    majority: int | None
    confidence: float


def tally(groups: Sequence[int | None]) -> Vote:
    """The vote of samples already grouped by answer (None: no answer)."""
    counts = Counter(g for g in groups if g is not None)
    if not counts:
        return Vote(list(groups), None, 0.0)
    majority, count = counts.most_common(1)[0]
    return Vote(list(groups), majority, count / len(groups))


def vote(task: Task, answers: Sequence[str | None]) -> Vote:
    """Confidence of the strong model on one question: the majority answer's share of its samples."""
    return tally(task.group_answers(answers))


def confidence_filter(
    task: Task, problems: Sequence[Problem], samples: Sequence[Sequence[str]], tau: float
) -> dict[str, float | int | None]:
    """How the confidence filter sorts questions: how many reach `tau`, and, where gold exists, how often the
    majority answer is correct among those kept and among those dropped (the filter should keep correct ones)."""
    kept: list[bool] = []
    right: list[bool] = []
    for problem, texts in zip(problems, samples):
        answers = [task.extract_answer(t) for t in texts]
        v = vote(task, answers)
        majority = next((a for a, g in zip(answers, v.groups) if g == v.majority), None)
        kept.append(v.majority is not None and v.confidence >= tau)
        right.append(bool(problem.answer) and majority is not None and task.grade([problem], [majority])[0])
    gold = all(p.answer for p in problems)

    def share(flag: bool) -> float | None:
        chosen = [r for k, r in zip(kept, right) if k == flag]
        return sum(chosen) / len(chosen) if gold and chosen else None

    return {"confident_questions": sum(kept), "majority_accuracy_kept": share(True),
            "majority_accuracy_dropped": share(False)}


@dataclass(frozen=True)
class PairSettings:
    tau: float = 0.6  # questions whose majority share is below this give no pair
    flip_confidence: float = 0.8  # a weak response against the majority is rejected only from this share up
    pairs_per_question: int = 1
    mode: PairMode = "weak"  # weak: the weak response is one side of every pair; strong: strong samples only
    seed: int = 0


def preference_pairs(
    task: Task, weak: Generation, samples: Sequence[str], prompt: str, settings: PairSettings
) -> list[Generation]:
    """Stage II pairs for one question from the strong model's `samples` and the weak model's response.

    Mode `weak` (the paper's repository): below `tau`, none. If the weak answer is the majority answer, the weak
    response is chosen against up to `pairs_per_question` distinct random non-majority samples (none if there are
    none); otherwise, only when confidence >= `flip_confidence`, it is rejected against random majority samples.
    Mode `strong`: random majority samples chosen against random non-majority ones, the weak response unused."""
    answers = [task.extract_answer(s) for s in samples]
    groups = task.group_answers([*answers, task.extract_answer(weak["response"])])  # the weak answer joins its group
    counted = tally(groups[:-1])
    if counted.majority is None or counted.confidence < settings.tau:
        return []
    inside = [s for s, g in zip(samples, counted.groups) if g == counted.majority]
    outside = [s for s, g in zip(samples, counted.groups) if g != counted.majority]
    rng = random.Random(f"pairs/{settings.seed}/{weak['id']}")
    k = settings.pairs_per_question
    if settings.mode == "strong":
        chosen, rejected = rng.sample(inside, min(k, len(inside))), rng.sample(outside, min(k, len(outside)))
        sides = list(zip(chosen, rejected))
    elif groups[-1] == counted.majority:
        sides = [(weak["response"], r) for r in rng.sample(outside, min(k, len(outside)))]
    elif counted.confidence >= settings.flip_confidence:
        sides = [(c, weak["response"]) for c in rng.sample(inside, min(k, len(inside)))]
    else:
        sides = []
    base = {"id": weak["id"], "question": weak["question"], "prompt": prompt, "confidence": counted.confidence}
    return [{**base, "chosen": c, "rejected": r} for c, r in sides]


def label_accuracy(task: Task, problems: Mapping[str, Problem], rows: Sequence[Generation], field: str) -> float | None:
    """The share of `rows` whose `field` response reaches the gold answer (None without rows or without gold)."""
    if not rows or any(not problems[r["id"]].answer for r in rows):
        return None
    graded = task.grade([problems[r["id"]] for r in rows], [task.extract_answer(r[field]) for r in rows])
    return sum(graded) / len(rows)


def describe(task: Task, problems: Mapping[str, Problem], rows: Sequence[Generation], fields: Sequence[str]) -> dict:
    """A data set's size, questions and, where gold exists, label accuracy of each response field."""
    return {
        "size": len(rows),
        "questions": len({r["id"] for r in rows}),
        **{f"accuracy_{f}": label_accuracy(task, problems, rows, f) for f in fields},
    }

"""How well a verifier separates right from wrong solutions, measured on a run's sample pools.

A pooled ROC AUC over every problem's samples flatters a verifier: most of it is between problems (easy problems
have high scores and many right samples), which selection cannot use. Selection ranks the samples of ONE problem,
so the honest measures are within a problem:

- pooled step AUC (step scores against the oracle's step verdicts) and pooled solution AUC (final scores against
  the grade), for comparison;
- within-problem AUC: for each problem with right and wrong samples, the AUC of the final scores separating them;
  the mean over those problems, their count and the standard error;
- selection accuracy at budget N over disjoint groups of N samples of each pool (samples 0..N-1, N..2N-1, ...; the
  first group is exactly what the pool strategies choose from): the top-scored sample, the verifier-weighted vote,
  the majority vote, and the oracle's best (any sample right: pass@N on the same groups), so the headroom shows.

Records are a run's results records (one per problem and seed: a problem's records are pooled); each candidate
holds `step_scores` per verifier key (the oracle's under "oracle") and its graded `correct`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from reasonscale.search.selection import best_of_n, majority_vote, weighted_vote
from reasonscale.summary import mean_se
from reasonscale.types import Problem
from reasonscale.verifiers.base import Aggregation, Verifier, aggregate

Record = dict[str, Any]
GroupAnswers = Callable[[Sequence[str | None]], list[int | None]]
SELECTORS = ("best_of_n", "weighted", "majority", "oracle_best")


def roc_auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float | None:
    """Area under the ROC curve by mean rank (ties share their mean rank); None without both classes."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def step_auc(records: list[Record], verifier: str, until_first_error: bool = True) -> float | None:
    """ROC AUC of `verifier`'s step scores against the oracle's step labels over a run's sample pool.

    With `until_first_error`, each solution contributes its steps up to and including its first wrong one.
    """
    scores, labels = [], []
    for record in records:
        for c in record["candidates"]:
            truth, predicted = c["step_scores"]["oracle"], c["step_scores"][verifier]
            keep = truth.index(0.0) + 1 if until_first_error and 0.0 in truth else len(truth)
            scores += predicted[:keep]
            labels += [int(v) for v in truth[:keep]]
    return roc_auc(scores, labels)


def label_auc(examples: Sequence[Any], oracle: Verifier) -> float | None:
    """ROC AUC of Monte-Carlo soft labels (`PRMExample`s) against the oracle's first-error step labels."""
    problems = [Problem(e.problem_id, e.question, "", e.level) for e in examples]
    scores, labels = [], []
    for e, truth in zip(examples, oracle.score(problems, [e.steps for e in examples])):
        keep = truth.index(0.0) + 1 if 0.0 in truth else len(truth)
        scores += e.soft[:keep]
        labels += [int(v) for v in truth[:keep]]
    return roc_auc(scores, labels)


def pools(records: list[Record]) -> dict[str, list[list[Record]]]:
    """Each problem's sample pools (one per record: a problem evaluated with several seeds has several)."""
    out: dict[str, list[list[Record]]] = defaultdict(list)
    for record in records:
        if record.get("candidates"):
            out[record["id"]].append(record["candidates"])
    return out


def final_score(candidate: Record, verifier: str, how: Aggregation) -> float:
    return aggregate(candidate["step_scores"][verifier], how)


def solution_auc(records: list[Record], verifier: str, how: Aggregation = "last") -> float | None:
    """Pooled ROC AUC of final scores against the grades, every problem's samples together."""
    samples = [c for r in records for c in r.get("candidates") or []]
    return roc_auc([final_score(c, verifier, how) for c in samples], [bool(c["correct"]) for c in samples])


def within_problem_auc(records: list[Record], verifier: str, how: Aggregation = "last") -> dict[str, float | int]:
    """Mean over problems (with right and wrong samples) of the AUC of final scores within the problem's pool."""
    aucs = []
    for problem_pools in pools(records).values():
        samples = [c for pool in problem_pools for c in pool]
        auc = roc_auc([final_score(c, verifier, how) for c in samples], [bool(c["correct"]) for c in samples])
        if auc is not None:
            aucs.append(auc)
    mean, se = mean_se(aucs)
    return {"mean": mean, "se": se, "problems": len(aucs)}


def by_exact_answer(answers: Sequence[str | None]) -> list[int | None]:
    """Answer groups by equal strings (a task's `group_answers` also merges equivalent forms)."""
    index: dict[str, int] = {}
    return [None if a is None else index.setdefault(a, len(index)) for a in answers]


def choices(pool: list[Record], groups: list[int | None], scores: list[float]) -> dict[str, float]:
    """Whether each selector's choice from this pool is right (1.0) or not (0.0)."""
    has_answer = [g is not None for g in groups]
    picked = {
        "best_of_n": best_of_n(scores, has_answer),
        "weighted": weighted_vote(groups, scores),
        "majority": majority_vote(groups),
    }
    out = {name: 0.0 if i is None else float(pool[i]["correct"]) for name, i in picked.items()}
    out["oracle_best"] = float(any(c["correct"] for c in pool))
    return out


def selection(
    records: list[Record],
    verifier: str,
    budgets: Sequence[int],
    how: Aggregation = "last",
    group_answers: GroupAnswers = by_exact_answer,
) -> dict[str, dict[str, Any]]:
    """Selection accuracy at each budget N: per problem, the mean over its disjoint groups of N samples (groups of
    every seed's pool), then the mean and standard error over problems; also the weighted vote's paired gain over
    the majority vote. A budget larger than every pool is left out."""
    per_problem: dict[int, dict[str, list[float]]] = {n: defaultdict(list) for n in budgets}
    for problem_pools in pools(records).values():
        outcomes: dict[int, list[dict[str, float]]] = defaultdict(list)
        for pool in problem_pools:
            groups = group_answers([c["answer"] for c in pool])
            scores = [final_score(c, verifier, how) for c in pool]
            for n in budgets:
                for s in range(0, len(pool) - n + 1, n):
                    outcomes[n].append(choices(pool[s : s + n], groups[s : s + n], scores[s : s + n]))
        for n, found in outcomes.items():
            for name in SELECTORS:
                per_problem[n][name].append(sum(o[name] for o in found) / len(found))
    out = {}
    for n, values in per_problem.items():
        if not values:
            continue
        point: dict[str, Any] = {"problems": len(values["majority"])}
        for name in SELECTORS:
            point[name] = dict(zip(("accuracy", "se"), mean_se(values[name])))
        gain = [w - m for w, m in zip(values["weighted"], values["majority"])]
        point["weighted_minus_majority"] = dict(zip(("mean", "se"), mean_se(gain)))
        out[str(n)] = point
    return out


def verifier_metrics(
    records: list[Record],
    verifier: str,
    budgets: Sequence[int],
    how: Aggregation = "last",
    group_answers: GroupAnswers = by_exact_answer,
) -> dict[str, Any]:
    """Every measure above over all problems and per level: {"all": {...}, "by_level": {level: {...}}}."""

    def block(subset: list[Record]) -> dict[str, Any]:
        has_oracle = all("oracle" in c["step_scores"] for r in subset for c in r.get("candidates") or [])
        return {
            "problems": len({r["id"] for r in subset}),
            "step_auc_first_error": step_auc(subset, verifier) if has_oracle else None,
            "step_auc_all_steps": step_auc(subset, verifier, until_first_error=False) if has_oracle else None,
            "solution_auc": solution_auc(subset, verifier, how),
            "within_problem_auc": within_problem_auc(subset, verifier, how),
            "selection": selection(subset, verifier, budgets, how, group_answers),
        }

    levels = sorted({str(r["level"]) for r in records if r.get("level") is not None})
    by_level = {lvl: block([r for r in records if str(r.get("level")) == lvl]) for lvl in levels}
    return {"verifier": verifier, "aggregate": how, "all": block(records), "by_level": by_level}

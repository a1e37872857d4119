"""The compute-optimal policy (Snell et al. 2024, section 3.2): per difficulty bin and budget, the strategy (with
its settings) that does best, chosen on some questions and reported on others.

Strategies compare at equal generation budget (N, or N x (k + 1) for lookahead). `cross_validate` splits the
questions in two halves by a hash of their id, selects on one half and reports on the other, both ways, so every
question is reported exactly once by a policy that never saw it. `fit_policy` selects on all questions: the policy
to apply to new ones. Bin 0 of a policy is the choice over all questions, used where a question has no bin or its
bin had no question to select on.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from reasonscale.identity import digest
from reasonscale.summary import COST_FIELDS, mean_se

Record = dict[str, Any]
ALL = 0


def series_key(outcome: Record) -> str:
    return json.dumps([outcome["strategy"], outcome["settings"]], sort_keys=True)


def outcome_index(records: Sequence[Record]) -> dict[tuple[str, str, float], Record]:
    """Every outcome by (question id, strategy and settings, generation budget)."""
    return {(r["id"], series_key(o), float(o["generation_budget"])): o for r in records for o in r["outcomes"]}


def budgets(records: Sequence[Record]) -> list[float]:
    return sorted({float(o["generation_budget"]) for r in records for o in r["outcomes"]})


def halves(records: Sequence[Record], seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Two halves of the questions (sizes differ by at most one), by a hash of each id: no question in both."""
    ordered = sorted(records, key=lambda r: digest([seed, r["id"]]))
    return ordered[0::2], ordered[1::2]


def select(records: Sequence[Record], kind: str) -> list[Record]:
    """Per budget and bin (and bin 0: all questions), the strategy with the best accuracy on `records`
    (ties: the fewer generated tokens, then the first seen). Reads only the questions given."""
    index = outcome_index(records)
    names: dict[str, Record] = {}
    for r in records:
        for o in r["outcomes"]:
            names.setdefault(series_key(o), o)
    by_bin: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        by_bin[ALL].append(r)
        if (b := (r.get("bins") or {}).get(kind)) is not None:
            by_bin[b].append(r)
    choices = []
    for budget in budgets(records):
        for b, members in sorted(by_bin.items()):
            scored = []
            for order, key in enumerate(names):
                found = [index.get((r["id"], key, budget)) for r in members]
                if any(o is None for o in found):
                    continue  # a strategy is compared only where it ran on every question
                accuracy = sum(float(o["correct"]) for o in found) / len(found)
                tokens = sum(float(o.get("generated_tokens", 0)) for o in found) / len(found)
                scored.append((-accuracy, tokens, order, key, found[0]["budget"]))
            if scored:
                *_, key, n = min(scored)
                strategy, settings = json.loads(key)
                choices.append({"budget": budget, "bin": b, "n": n, "strategy": strategy, "settings": settings,
                                "label": names[key]["label"]})
    return choices


def route(record: Record, choices: Sequence[Record], budget: float, kind: str) -> Record | None:
    """The choice a policy makes for one question at `budget`: its bin's, else bin 0's."""
    at = {c["bin"]: c for c in choices if c["budget"] == budget}
    b = (record.get("bins") or {}).get(kind)
    return at.get(b) or at.get(ALL)


def apply(records: Sequence[Record], choices: Sequence[Record], kind: str) -> dict[float, list[tuple[Record, Record]]]:
    """Per budget, each question's (record, outcome of the strategy the policy routes it to)."""
    index = outcome_index(records)
    out: dict[float, list[tuple[Record, Record]]] = defaultdict(list)
    for budget in sorted({c["budget"] for c in choices}):
        for r in records:
            choice = route(r, choices, budget, kind)
            if choice is None:
                continue
            key = json.dumps([choice["strategy"], choice["settings"]], sort_keys=True)
            if (o := index.get((r["id"], key, budget))) is not None:
                out[budget].append((r, o))
    return out


def cross_validate(
    records: Sequence[Record], kind: str, seed: int = 0, selector: Callable[[Sequence[Record], str], list] = select
) -> dict[str, Any]:
    """Two-fold cross-validated accuracy of the compute-optimal policy per budget, overall and per bin.

    Returns {"points": [{budget, accuracy, accuracy_by_bin, generated_tokens, questions, correct_by_id}], "folds":
    [{"select":
    ids, "report": ids, "choices": [...]}]}: each fold's policy is selected on its `select` ids only."""
    first, second = halves(records, seed)
    folds, reported = [], defaultdict(list)
    for chosen_on, reported_on in ((first, second), (second, first)):
        choices = selector(chosen_on, kind)
        folds.append({"select": [r["id"] for r in chosen_on], "report": [r["id"] for r in reported_on],
                      "choices": choices})
        for budget, pairs in apply(reported_on, choices, kind).items():
            reported[budget].extend(pairs)
    points = []
    for budget, pairs in sorted(reported.items()):
        point = _point(budget, pairs, kind)
        point["correct_by_id"] = {r["id"]: float(o["correct"]) for r, o in pairs}
        points.append(point)
    return {"points": points, "folds": folds}


def fit_policy(records: Sequence[Record], kind: str) -> list[Record]:
    """The policy selected on every question: what to apply to new questions."""
    return select(records, kind)


def policy_series(records: Sequence[Record], choices: Sequence[Record], kind: str = "predicted") -> Record:
    """A summary series for a configured policy applied by (predicted) bin: its accuracy and the cost of the
    routed strategy, per budget."""
    points = []
    for budget, pairs in sorted(apply(records, choices, kind).items()):
        point = _point(budget, pairs, kind)
        point["cost"] = {f: sum(float(o.get(f, 0)) for _, o in pairs) / len(pairs) for f in COST_FIELDS}
        point["accuracy_by_level"] = _by(pairs, lambda r: r.get("level"))
        points.append(point)
    return {"label": f"compute_optimal[{kind}]", "strategy": "compute_optimal", "settings": {"bins": kind},
            "points": points}


def _point(budget: float, pairs: Sequence[tuple[Record, Record]], kind: str) -> Record:
    n = len(pairs)
    accuracy, se = mean_se([float(o["correct"]) for _, o in pairs])
    return {
        "budget": int(budget) if float(budget).is_integer() else budget,
        "generation_budget": budget,
        "questions": n,
        "accuracy": accuracy,
        "accuracy_se": se,
        "generated_tokens": sum(float(o.get("generated_tokens", 0)) for _, o in pairs) / n if n else 0.0,
        "flops": sum(float(o.get("flops", 0)) for _, o in pairs) / n if n else 0.0,
        "accuracy_by_bin": {kind: _by(pairs, lambda r: (r.get("bins") or {}).get(kind))},
        "flops_by_bin": {kind: _by(pairs, lambda r: (r.get("bins") or {}).get(kind), "flops")},
    }


def _by(pairs: Sequence[tuple[Record, Record]], group: Callable[[Record], Any], field: str = "correct"
        ) -> dict[str, float]:
    """The mean of an outcome field per group of questions."""
    values: dict[str, list[float]] = defaultdict(list)
    for r, o in pairs:
        if (g := group(r)) is not None:
            values[str(g)].append(float(o.get(field, 0.0)))
    return {g: sum(v) / len(v) for g, v in sorted(values.items())}


def budget_to_match(points: Sequence[Record], accuracy: float) -> float | None:
    """The generation budget at which a curve ({generation_budget, accuracy} points) first reaches `accuracy`,
    interpolated linearly in log2(budget) between the evaluated budgets around the crossing, as the paper reads its
    curves (None if it never does). A curve evaluated at 4 and 16 reaches a level between its two accuracies at a
    budget in between, not at 16."""
    ordered = sorted(points, key=lambda p: p["generation_budget"])
    for i, p in enumerate(ordered):
        if p["accuracy"] >= accuracy - 1e-12:
            if i == 0 or p["accuracy"] <= ordered[i - 1]["accuracy"]:
                return p["generation_budget"]
            low = ordered[i - 1]
            share = (accuracy - low["accuracy"]) / (p["accuracy"] - low["accuracy"])
            a, b = math.log2(low["generation_budget"]), math.log2(p["generation_budget"])
            return 2 ** (a + share * (b - a))
    return None

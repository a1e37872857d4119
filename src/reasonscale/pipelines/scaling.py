"""`reasonscale scaling fit RUN_DIR`: the compute-optimal policy of a finished run (any task).

Reads the run's results, places every question in its oracle and predicted difficulty bin, reports the two-fold
cross-validated accuracy of the compute-optimal policy per budget with each kind of bin next to weighted best-of-N
(the budget it needs to match), and writes the policy selected on all questions as a run config that routes new
questions by predicted bin: `reasonscale run RUN_DIR/scaling/policy.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from reasonscale import atomic
from reasonscale.config import RunConfig, StrategyConfig, validate
from reasonscale.pipelines.evaluate import difficulty_bins, uses_verifier, verifier_key
from reasonscale.scaling.policy import budget_to_match, cross_validate, fit_policy, series_key
from reasonscale.search.strategy import build_strategy
from reasonscale.summary import series

BASELINE = "weighted_best_of_n"


def load_run(run_dir: str | Path) -> tuple[RunConfig, list[dict[str, Any]]]:
    """A finished run's config and per-question records (a clear error naming what is missing)."""
    run_dir = Path(run_dir)
    summary_path, results_path = run_dir / "summary.json", run_dir / "results.jsonl"
    for path in (summary_path, results_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (is {run_dir} a finished run?)")
    cfg = validate(RunConfig, json.loads(summary_path.read_text())["config"], str(summary_path))
    records = []
    for number, line in enumerate(results_path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{results_path}:{number}: not valid JSON") from None
    return cfg, records


def baseline_points(records: list[dict[str, Any]], verifier: str | None) -> list[dict[str, Any]]:
    """The points of weighted best-of-N with the binning verifier (None if the run has none)."""
    for curve in series(records):
        if curve["strategy"] == BASELINE and (verifier is None or _key(curve) == verifier):
            return curve["points"]
    return []


def _key(curve: dict[str, Any]) -> str:
    return StrategyConfig(name=curve["strategy"], **curve["settings"]).verifier_key()


def fit(run_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Cross-validate and fit the compute-optimal policy of a run; writes `scaling/` in the run directory:
    scaling.json (curves, folds, savings) and, where predicted bins exist, policy.yaml."""
    run_dir = Path(run_dir)
    cfg, records = load_run(run_dir)
    edges = difficulty_bins(records, cfg)
    verifier = cfg.difficulty.verifier or next((verifier_key(s) for s in cfg.strategies if uses_verifier(s)), None)
    baseline = baseline_points(records, verifier)
    result: dict[str, Any] = {"run": str(run_dir), "seed": seed, "edges": edges, "verifier": verifier,
                              "baseline": baseline, "cross_validated": {}}
    for kind in ("oracle", "predicted"):
        if not any((r["bins"] or {}).get(kind) for r in records):
            continue
        cv = cross_validate(records, kind, seed)
        for point in cv["points"]:
            matched = budget_to_match(baseline, point["accuracy"])
            point["baseline_budget"] = matched
            point["saving"] = None if matched is None else matched / point["generation_budget"]
        result["cross_validated"][kind] = cv
    out = run_dir / "scaling"
    out.mkdir(exist_ok=True)
    if "predicted" in result["cross_validated"]:
        choices = fit_policy(records, "predicted")
        policy = policy_config(cfg, choices, edges["predicted"], verifier, run_dir)
        atomic.write_text(out / "policy.yaml", yaml.safe_dump(policy, sort_keys=False))
        result["policy"] = choices
    atomic.write_text(out / "scaling.json", json.dumps(result, indent=2))
    return result


def policy_config(
    cfg: RunConfig, choices: list[dict[str, Any]], edges: list[float], verifier: str, run_dir: Path
) -> dict[str, Any]:
    """A run config that evaluates the chosen strategies at their budgets, draws the pool that predicts bins, and
    reports the policy routed by predicted bin (`compute_optimal[predicted]` in its summary)."""
    data = cfg.model_dump(mode="json")
    budgets: dict[str, set[int]] = {}
    for c in choices:
        budgets.setdefault(series_key({"strategy": c["strategy"], "settings": c["settings"]}), set()).add(c["n"])
    source = next(s for s in cfg.strategies if uses_verifier(s) and s.verifier_key() == verifier)
    pool_n = max((build_strategy(s).pool_size() for s in cfg.strategies), default=0)
    if pool_n:  # the pool whose verifier scores place a new question, as large as in the fitted run
        fields = {k: source.settings()[k] for k in ("verifier", "verifier_path", "verifier_options", "aggregate")}
        budgets.setdefault(series_key({"strategy": BASELINE, "settings": fields}), set()).add(pool_n)
    data["strategies"] = []
    for key, ns in budgets.items():
        name, settings = json.loads(key)
        data["strategies"].append({"name": name, **settings, "budgets": sorted(ns)})
    data["difficulty"] = {**data["difficulty"], "verifier": verifier, "edges": edges}
    data["policy"] = [{k: c[k] for k in ("budget", "bin", "n", "strategy", "settings", "label")} for c in choices]
    data["output_dir"] = str(run_dir / "scaling" / "policy-run")
    data["cache_path"] = data["cache_path"] or str(run_dir / "store.sqlite")  # reuse the fitted run's samples
    validate(RunConfig, json.loads(json.dumps(data)), "policy")  # what we write must load
    return data

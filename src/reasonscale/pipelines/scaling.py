"""`reasonscale scaling fit RUN_DIR`: the compute-optimal policy of a finished run (any task).

Reads the run's results, places every question in its oracle and predicted difficulty bin, reports the two-fold
cross-validated accuracy of the compute-optimal policy per budget with each kind of bin next to weighted best-of-N
(the budget it needs to match), and writes the policy selected on all questions as a run config that routes new
questions by predicted bin: `reasonscale run RUN_DIR/scaling/policy.yaml`.

`reasonscale scaling exchange SMALL_RUN LARGE_RUN`: at matched total FLOPs, the small model's compute-optimal
test-time compute against a larger model's greedy answer, per oracle bin (Snell et al. 2024, section 7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from reasonscale import atomic
from reasonscale.config import RunConfig, StrategyConfig
from reasonscale.config_loading import validate
from reasonscale.pipelines.evaluate import binning_verifier, difficulty_bins, uses_verifier, verifier_key
from reasonscale.scaling.bins import pass_at_1
from reasonscale.scaling.flops import PAPER_RATIOS, exchange_rows
from reasonscale.scaling.policy import budget_to_match, cross_validate, fit_policy, series_key
from reasonscale.search.strategy import build_strategy
from reasonscale.summary import mean_se, series

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
    scaling.json (curves, folds, savings) and, where predicted bins exist, policy.yaml.

    One policy per verifier that weights a best-of-N baseline, the binning verifier's first: each chooses only
    among the strategies that use its verifier or none, and is measured against best-of-N weighted by the same
    verifier (a policy free to pick an oracle's strategy would not compare with best-of-N weighted by a PRM)."""
    run_dir = Path(run_dir)
    cfg, records = load_run(run_dir)
    edges = difficulty_bins(records, cfg)
    verifier = binning_verifier(cfg)
    result: dict[str, Any] = {"run": str(run_dir), "seed": seed, "edges": edges, "verifier": verifier,
                              "policies": [_policy(records, v, seed) for v in baseline_verifiers(records, verifier)]}
    out = run_dir / "scaling"
    out.mkdir(exist_ok=True)
    if verifier is not None and any((r["bins"] or {}).get("predicted") for r in records):
        choices = fit_policy(comparable(records, verifier), "predicted")
        policy = policy_config(cfg, choices, edges["predicted"], verifier, run_dir)
        atomic.write_text(out / "policy.yaml", yaml.safe_dump(policy, sort_keys=False))
        result["policy"] = choices
    atomic.write_text(out / "scaling.json", json.dumps(result, indent=2))
    return result


def _policy(records: list[dict[str, Any]], verifier: str | None, seed: int) -> dict[str, Any]:
    """The cross-validated policy restricted to `verifier` (None: every strategy) per kind of bin, with its
    weighted best-of-N baseline and, per budget, the baseline budget that matches it."""
    baseline = baseline_points(records, verifier)
    entry: dict[str, Any] = {"verifier": verifier, "baseline": baseline, "cross_validated": {}}
    usable = comparable(records, verifier)
    base_correct = {(r["id"], float(o["generation_budget"])): float(o["correct"]) for r in usable
                    for o in r["outcomes"] if o["strategy"] == BASELINE and verifier is not None}
    largest = max((p["generation_budget"] for p in baseline), default=None)
    for kind in ("oracle", "predicted"):
        if not any((r["bins"] or {}).get(kind) for r in records):
            continue
        cv = cross_validate(usable, kind, seed)
        for point in cv["points"]:
            budget = point["generation_budget"]
            matched = budget_to_match(baseline, point["accuracy"])
            point["baseline_budget"] = matched
            point["saving"] = None if matched is None else matched / budget
            # best-of-N never reaches the policy within its largest budget: the saving is more than that ratio
            point["saving_above"] = largest / budget if matched is None and largest else None
            diffs = [c - base_correct[i, budget] for i, c in point["correct_by_id"].items()
                     if (i, budget) in base_correct]
            point["vs_baseline"], point["vs_baseline_se"] = mean_se(diffs) if diffs else (None, None)
        entry["cross_validated"][kind] = cv
    return entry


def baseline_verifiers(records: list[dict[str, Any]], first: str | None) -> list[str | None]:
    """The verifiers of the run's weighted best-of-N curves, `first` first ([None] when there is none)."""
    keys = list(dict.fromkeys(_key(c) for c in series(records) if c["strategy"] == BASELINE))
    return sorted(keys, key=lambda k: k != first) or [None]


def comparable(records: list[dict[str, Any]], verifier: str | None) -> list[dict[str, Any]]:
    """The records keeping only the outcomes a policy owning `verifier` may choose: the strategies that use it or
    no verifier at all (None keeps every outcome)."""
    if verifier is None:
        return records
    keys: dict[str, str | None] = {}
    for r in records:
        for o in r["outcomes"]:
            if (k := series_key(o)) not in keys:
                keys[k] = verifier_key(StrategyConfig(name=o["strategy"], **o["settings"]))
    return [{**r, "outcomes": [o for o in r["outcomes"] if keys[series_key(o)] in (None, verifier)]}
            for r in records]


def policy_config(
    cfg: RunConfig, choices: list[dict[str, Any]], edges: list[float], verifier: str, run_dir: Path
) -> dict[str, Any]:
    """A run config that evaluates the chosen strategies at their budgets, draws the pool that predicts bins, and
    reports the policy routed by predicted bin (`compute_optimal[predicted]` in its summary)."""
    data = cfg.model_dump(mode="json")
    budgets: dict[str, set[int]] = {}
    for c in choices:
        budgets.setdefault(series_key({"strategy": c["strategy"], "settings": c["settings"]}), set()).add(c["n"])
    source = next((s for s in cfg.strategies if uses_verifier(s) and s.verifier_key() == verifier), None)
    pool_n = max((build_strategy(s).pool_size() for s in cfg.strategies), default=0)
    if pool_n and source is not None:  # the pool whose scores place a new question, as large as in the fitted run
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


def parameter_count(path: str) -> int:
    """Non-embedding parameters of a model directory or hub id, counted without loading its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return model.num_parameters(exclude_embeddings=True)


def large_answers(records: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each question's (accuracy, inference FLOPs) under the large model: its greedy answer, else pass@1 and the
    mean FLOPs of one sample from its pool."""
    out = {}
    for r in records:
        greedy = [o for o in r["outcomes"] if o["strategy"] == "greedy"]
        if greedy:
            out[r["id"]] = (float(greedy[0]["correct"]), float(greedy[0].get("flops", 0.0)))
        elif (p := pass_at_1(r)) is not None:
            pool = max(r["outcomes"], key=lambda o: o["generation_budget"])
            out[r["id"]] = (p, float(pool.get("flops", 0.0)) / max(1.0, float(pool["generation_budget"])))
    return out


def exchange(
    small_dir: str | Path, large_dir: str | Path, m: float | None = None, ratios=PAPER_RATIOS, seed: int = 0
) -> dict[str, Any]:
    """The pretraining vs test-time exchange per oracle bin of the small model's run: for each R, the small model's
    cross-validated compute-optimal accuracy within X = M + 3(M - 1)/R times the inference FLOPs of the large
    model's greedy (or pass@1) answers, brought to the small model's size, against their accuracy on the same
    questions (in generations where an engine counts no FLOPs). The test-time compute uses the run's binning
    verifier (no gold answer) or none. Writes `small_dir/scaling/exchange.json`."""
    small_cfg, small = load_run(small_dir)
    large_cfg, large = load_run(large_dir)
    if m is None:
        m = parameter_count(large_cfg.model.path) / parameter_count(small_cfg.model.path)
    difficulty_bins(small, small_cfg)
    big = large_answers(large)
    shared = [r for r in small if r["id"] in big]
    if not shared:
        raise ValueError(f"{small_dir} and {large_dir} share no question (or the large run has no greedy/pool)")
    verifier = binning_verifier(small_cfg)  # test-time compute that reads no gold answer, where the run has one
    cv = cross_validate(comparable(shared, verifier), "oracle", seed)
    groups: dict[str, list[str]] = {"all": [r["id"] for r in shared]}
    for r in shared:
        if (b := r["bins"]["oracle"]) is not None:
            groups.setdefault(str(b), []).append(r["id"])
    rows = {}
    for group, ids in sorted(groups.items(), key=lambda item: (item[0] != "all", item[0])):
        if group == "all":
            curve = cv["points"]
        else:
            curve = [{**p, "accuracy": p["accuracy_by_bin"]["oracle"][group],
                      "flops": p["flops_by_bin"]["oracle"][group]}
                     for p in cv["points"] if group in p["accuracy_by_bin"]["oracle"]]
        accuracy, flops = (sum(big[i][k] for i in ids) / len(ids) for k in (0, 1))
        measured = flops > 0 and all(p["flops"] > 0 for p in cv["points"])  # engines that count their FLOPs
        rows[group] = exchange_rows(curve, accuracy, m, ratios, flops if measured else None)
    result = {"small": str(small_dir), "large": str(large_dir), "M": m, "verifier": verifier, "ratios": list(ratios),
              "bins": rows}
    out = Path(small_dir) / "scaling"
    out.mkdir(exist_ok=True)
    atomic.write_text(out / "exchange.json", json.dumps(result, indent=2))
    plot_exchange(result, out / "exchange.png")
    return result


def plot_exchange(result: dict[str, Any], path: Path) -> None:
    """Per R, the small model's accuracy with matched test-time compute minus the large model's, per bin."""
    from matplotlib.figure import Figure

    groups = list(result["bins"])
    figure = Figure(figsize=(6, 3.5))
    ax = figure.subplots()
    width = 0.8 / len(result["ratios"])
    for i, r in enumerate(result["ratios"]):
        gaps = [(row[i]["small"] or 0.0) - row[i]["large"] for row in (result["bins"][g] for g in groups)]
        ax.bar([k + i * width for k in range(len(groups))], gaps, width, label=f"R={r:g}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(groups))], groups)
    ax.set(xlabel="oracle difficulty bin", ylabel="test-time minus pretraining accuracy",
           title=f"FLOPs-matched exchange, M = {result['M']:.1f}")
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)

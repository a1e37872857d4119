"""The revision and compute-optimal experiment on the lab domain (Snell et al. 2024, sections 3 and 6):
`reasonscale lab scaling examples/lab_scaling.yaml`.

1. Train (or reuse) the policy preset.  2. Sample its answers to training questions and fine-tune it into a revision
model on appendix-H trajectories (`reasonscale.lab.revision`).  3. Evaluate the revision model on the test questions:
weighted best-of-N and majority over its parallel samples, and `revise` at every chain length L (P = N / L chains),
at every budget.  4. Bin the questions by difficulty and fit the compute-optimal policy, two-fold cross-validated
(`reasonscale.pipelines.scaling`).  5. Report how accuracy moves along a revision chain, how often a right answer is
revised into a wrong one, which ratio P:L wins per bin, and what budget best-of-N needs to match the policy.
6. With `large` (a bigger preset, e.g. `family-4` against `policy: family-1`, `reasonscale.lab.model`): the
larger model's greedy accuracy on the same questions and the FLOPs-matched exchange per oracle bin.
Every sample is cached and every model reused, so a re-run makes no model call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from reasonscale import atomic
from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, Section, StrategyConfig, TaskConfig
from reasonscale.config_loading import load_config
from reasonscale.engines import Engine, build_engine
from reasonscale.lab.revision import (
    RevisionStageConfig,
    revision_data,
    train_revision_model,
    train_revision_verifier,
)
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.pipelines.scaling import exchange, fit
from reasonscale.pipelines.search_experiment import model_path


class LabScalingConfig(Section):
    policy: str = Field("weak", description="lab preset to train or reuse, or a model directory")
    preset_budget_s: float | None = Field(None, gt=0, description="training time cap of lab presets trained here")
    device: str = "auto"
    max_batch_size: int = Field(256, ge=1)
    task: TaskConfig = Field(default_factory=lambda: TaskConfig(name="lab"))
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.8, max_tokens=160))
    revision: RevisionStageConfig = Field(default_factory=RevisionStageConfig)
    budgets: list[int] = Field(default_factory=lambda: [1, 4, 16, 64], min_length=1)
    lengths: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16], min_length=1, description="chain lengths L")
    verifier: str = Field("oracle", description="verifier of weighted best-of-N and revise (oracle, prm:PATH)")
    large: str | None = Field(None, description="a larger lab preset or model directory for the FLOPs exchange")
    output_dir: str = "runs/lab-scaling"


def strategies(cfg: LabScalingConfig, orm: str | None = None) -> list[StrategyConfig]:
    """Weighted best-of-N and majority over parallel samples, and revise at each chain length (each reported at
    the budgets its length divides); with a trained revision verifier (`orm`), weighted best-of-N and revise with
    it as well."""
    verifiers = [{"verifier": cfg.verifier}] + ([{"verifier": "orm", "verifier_path": orm}] if orm else [])
    out = []
    for verifier in verifiers:  # the first strategy is weighted best-of-N with the main verifier
        out.append(StrategyConfig(name="weighted_best_of_n", budgets=cfg.budgets, **verifier))
        for length in cfg.lengths:
            budgets = [b for b in cfg.budgets if b % min(length, b) == 0 and b >= length]
            if budgets:
                out.append(StrategyConfig(name="revise", length=length, window=cfg.revision.window,
                                          budgets=budgets, **verifier))
    return [*out, StrategyConfig(name="majority", budgets=cfg.budgets)]


def revision_chain_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """From the longest chains at the largest budget: accuracy of the k-th attempt (k = 0: the first, unrevised),
    and the share of right attempts whose next revision is wrong."""
    chains = []
    for record in records:
        revise = [o for o in record["outcomes"] if o["strategy"] == "revise"]
        if revise:
            top = max(revise, key=lambda o: (o["settings"]["length"], o["budget"]))
            chains += top["details"]["correct"]
    if not chains:
        return {}
    length = max(len(c) for c in chains)
    by_k = [[c[k] for c in chains if len(c) > k] for k in range(length)]
    pairs = [(c[k], c[k + 1]) for c in chains for k in range(len(c) - 1)]
    right = [b for a, b in pairs if a]
    wrong = [b for a, b in pairs if not a]
    return {
        "chains": len(chains),
        "accuracy_by_revision": [sum(v) / len(v) for v in by_k],
        "right_to_wrong": (sum(1 - b for b in right) / len(right)) if right else None,
        "wrong_to_right": (sum(wrong) / len(wrong)) if wrong else None,
    }


def ratio_table(summary: dict[str, Any], verifier: tuple[str, str | None]) -> dict[str, dict[str, Any]]:
    """Per budget and oracle bin, the accuracy of each chain length L (P = N / L) with `verifier` (kind, path), and
    the winner."""
    table: dict[str, dict[str, Any]] = {}
    for curve in summary["strategies"]:
        settings = curve["settings"]
        if curve["strategy"] != "revise" or (settings["verifier"], settings["verifier_path"]) != verifier:
            continue
        for p in curve["points"]:
            length = min(curve["settings"]["length"], p["budget"])
            ratio = f"{p['budget'] // length}:{length}"
            for b, acc in p["accuracy_by_bin"].get("oracle", {}).items():
                table.setdefault(str(p["budget"]), {}).setdefault(b, {})[ratio] = acc
    for bins in table.values():
        for row in bins.values():
            row["best"] = max((k for k in row if k != "best"), key=lambda k: row[k])
    return table


def verifier_table(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Accuracy of every verifier-selected strategy (weighted best-of-N, revise at each L) per budget, by label:
    the oracle, a PRM and the revision ORM side by side."""
    return {c["label"]: {str(p["budget"]): p["accuracy"] for p in c["points"]}
            for c in summary["strategies"] if c["settings"].get("verifier")}


def run_lab_scaling(
    config_path: str | Path,
    overrides: list[str] | None = None,
    show_progress: bool = True,
    engine_factory: Callable[[ModelConfig], Engine] = build_engine,
) -> dict[str, Any]:
    """Run (or resume) the experiment; writes `output_dir/scaling.json` and `report.md`; returns the results.
    `engine_factory` builds the policy engine that samples the revision data (tests script it)."""
    cfg = load_config(config_path, overrides, model=LabScalingConfig)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = model_path(cfg.policy, cfg, show_progress)  # type: ignore[arg-type]
    model = ModelConfig(path=policy, device=cfg.device, max_batch_size=cfg.max_batch_size)
    data, data_stats, data_calls = revision_data(cfg.revision, model, cfg.task, out, engine_factory)
    trained = train_revision_model(cfg.revision, policy, data, out / "revision-model", progress=show_progress)
    orm, orm_stats, calls = None, None, {"revision_data": data_calls}
    if cfg.revision.verifier.enabled:
        orm, orm_stats = train_revision_verifier(cfg.revision, str(trained.path), cfg.task, cfg.revision.temperature,
                                                 out, cfg.device)
        calls["revision_verifier"] = orm_stats.pop("model_calls")
    run_cfg = RunConfig(
        model=model.model_copy(update={"path": str(trained.path)}),
        task=cfg.task,
        sampling=cfg.sampling,
        strategies=strategies(cfg, None if orm is None else str(orm)),
        output_dir=str(out / "eval"),
    )
    summary = run_evaluation(run_cfg, show_progress=show_progress)
    main = run_cfg.strategies[0]
    records = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    result = {
        "revision_data": data_stats,
        "revision_model": {"path": str(trained.path), "trained": trained.trained, "steps": trained.info.get("steps"),
                           "final": trained.info.get("final")},
        "revision_verifier": orm_stats,
        "model_calls": {**calls, "evaluation": summary["usage"]["model_calls"]},
        "chains": revision_chain_stats(records),
        "ratios_by_oracle_bin": ratio_table(summary, (main.verifier, main.verifier_path)),
        "verifiers": verifier_table(summary),
        "compute_optimal": fit(out / "eval"),
    }
    if cfg.large:
        large_path = model_path(cfg.large, cfg, show_progress)  # type: ignore[arg-type]
        large = RunConfig(
            model=model.model_copy(update={"path": large_path}),
            task=cfg.task,
            sampling=cfg.sampling,
            strategies=[StrategyConfig(name="greedy")],
            output_dir=str(out / "large"),
        )
        result["model_calls"]["large"] = run_evaluation(large, show_progress=show_progress)["usage"]["model_calls"]
        result["exchange"] = exchange(out / "eval", out / "large")
    atomic.write_text(out / "scaling.json", json.dumps(result, indent=2))
    write_lab_report(out, result)
    return result


def write_lab_report(out: Path, result: dict[str, Any]) -> None:
    """report.md with the revision statistics, the ratio table and the cross-validated policy vs best-of-N, and a
    plot of accuracy along the revision chain."""
    from matplotlib.figure import Figure

    chains, data = result["chains"], result["revision_data"]
    lines = ["# Revisions and compute-optimal scaling on the lab domain", "",
             f"Revision data: {data['examples']} examples from {data['questions']} questions "
             f"({data['dropped_without_answer']} answers without a final answer dropped); previous attempts per "
             f"example: {data['previous_attempts']}; nearest incorrect attempt shares the first step with the correct "
             f"one: {data.get('nearest_shares_first_step')}.", ""]
    if chains:
        acc = ", ".join(f"{a:.3f}" for a in chains["accuracy_by_revision"])
        lines += [f"Accuracy of the k-th attempt (k = 0..): {acc}. Right attempts revised into wrong ones: "
                  f"{chains['right_to_wrong']}; wrong into right: {chains['wrong_to_right']}.", "",
                  "![accuracy along the chain](revisions.png)", ""]
        figure = Figure(figsize=(5, 3.5))
        ax = figure.subplots()
        ax.plot(range(len(chains["accuracy_by_revision"])), chains["accuracy_by_revision"], marker="o")
        ax.set(xlabel="revision k", ylabel="accuracy", title="accuracy along the revision chain", ylim=(-0.02, 1.02))
        figure.tight_layout()
        figure.savefig(out / "revisions.png", dpi=100)
    lines += ["## Verifiers (accuracy per budget N)", ""]
    lines += [f"- {label}: " + ", ".join(f"N={n} {acc:.3f}" for n, acc in points.items())
              for label, points in result["verifiers"].items()]
    lines += [""]
    lines += ["## Sequential vs parallel (accuracy per ratio P:L, per oracle bin)", "", "![ratios](ratios.png)", ""]
    plot_ratios(result["ratios_by_oracle_bin"], out / "ratios.png")
    for budget, bins in result["ratios_by_oracle_bin"].items():
        for b, row in sorted(bins.items()):
            cells = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "best")
            lines.append(f"- N={budget}, bin {b}: {cells}; best {row['best']}")
    plot_compute_optimal(result["compute_optimal"], out / "compute_optimal.png")
    lines += ["", "## Compute-optimal (two-fold cross-validated) vs weighted best-of-N", "",
              "![compute-optimal vs best-of-N](compute_optimal.png)", "",
              "Each policy chooses among the strategies that use its verifier or none, and is measured against "
              "best-of-N weighted by the same verifier.", "",
              "| verifier | bins | budget | accuracy | best-of-N | difference (paired) "
              "| best-of-N budget to match (log-interpolated) | saving |", "|---|---|---|---|---|---|---|---|"]
    for entry in result["compute_optimal"]["policies"]:
        baseline = {p["generation_budget"]: p["accuracy"] for p in entry["baseline"]}
        for kind, cv in entry["cross_validated"].items():
            for p in cv["points"]:
                cells = [_short(entry["verifier"]), kind, f"{p['generation_budget']:g}",
                         f"{p['accuracy']:.3f} ± {p['accuracy_se']:.3f}", _cell(baseline.get(p["generation_budget"])),
                         _cell(p.get("vs_baseline"), p.get("vs_baseline_se")), _cell(p["baseline_budget"], digits=3),
                         _saving(p)]
                lines.append("| " + " | ".join(cells) + " |")
    if "exchange" in result:
        lines += exchange_lines(result["exchange"])
    atomic.write_text(out / "report.md", "\n".join(lines) + "\n")


def plot_ratios(table: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per budget: accuracy per oracle bin, one line per ratio P:L."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * max(1, len(table)), 3.5))
    for ax, (budget, bins) in zip(figure.subplots(1, max(1, len(table)), squeeze=False)[0], table.items()):
        ratios = list(dict.fromkeys(k for row in bins.values() for k in row if k != "best"))
        order = sorted(bins, key=int)
        for ratio in ratios:
            ax.plot(order, [bins[b].get(ratio, float("nan")) for b in order], marker="o", label=f"P:L {ratio}")
        ax.set(xlabel="oracle bin (1 easiest)", ylabel="accuracy", title=f"N = {budget}", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_compute_optimal(fitted: dict[str, Any], path: Path) -> None:
    """Accuracy against generation budget: weighted best-of-N and the cross-validated policy per kind of bin."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5))
    ax = figure.subplots()
    for entry in fitted["policies"]:
        name, base = _short(entry["verifier"]), entry["baseline"]
        ax.plot([p["generation_budget"] for p in base], [p["accuracy"] for p in base], marker="o",
                label=f"weighted BoN [{name}]")
        for kind, cv in entry["cross_validated"].items():
            points = cv["points"]
            ax.plot([p["generation_budget"] for p in points], [p["accuracy"] for p in points], marker="s",
                    linestyle="--", label=f"compute-optimal [{name}, {kind} bins]")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="generation budget", ylabel="accuracy", title="compute-optimal vs best-of-N (cross-validated)",
           ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _cell(value: float | None, se: float | None = None, digits: int | None = None) -> str:
    """A report cell: "-" for nothing, a signed value with its standard error, or a value (`digits` significant)."""
    if value is None:
        return "-"
    if se is not None:
        return f"{value:+.3f} ± {se:.3f}"
    return f"{value:.{digits}g}" if digits else f"{value:.3f}"


def _saving(point: dict[str, Any]) -> str:
    """How many times the policy's budget best-of-N needs to match it ("> 4.00x": not even at its largest)."""
    if point["saving"] is not None:
        return f"{point['saving']:.2f}x"
    return f"> {point['saving_above']:.2f}x" if point.get("saving_above") else "-"


def _short(verifier: str | None) -> str:
    """A verifier key as a report shows it: its kind (`orm:/path/...` is `orm`)."""
    return "any" if verifier is None else verifier.split(":")[0].split("{")[0]


def exchange_lines(ex: dict[str, Any]) -> list[str]:
    lines = ["", f"## FLOPs exchange (M = {ex['M']:.2f}, large model greedy; test-time compute verified by "
             f"{_short(ex.get('verifier'))})", "",
             "The small model may spend X times the FLOPs it would take to write the large model's answers "
             "(policy and verifier FLOPs, re-sent context included, as measured).", "",
             "| bin | R | X | small FLOPs allowed | budget used | small + test-time | large | winner |",
             "|---|---|---|---|---|---|---|---|"]
    for group, rows in ex["bins"].items():
        for row in rows:
            small = "-" if row["small"] is None else f"{row['small']:.3f}"
            beyond = " (beyond the curve)" if row["beyond_curve"] else ""
            lines.append(f"| {group} | {row['R']:g} | {row['X']:.1f} | {row['limit']:.3g}{beyond} | "
                         f"{row['budget_used'] or '-'} | {small} | {row['large']:.3f} | {row['winner']} |")
    return [*lines, "", "![exchange](eval/scaling/exchange.png)"]

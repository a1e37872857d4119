"""The report of `reasonscale lab solar`: solar_report.md (the methods at the largest budget, the curve over every
budget, the targets, the reward models and the tuning set) and solar_curve.png (accuracy vs generated tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from reasonscale import atomic
from reasonscale.data.tag import SEGMENTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from reasonscale.report import tick_text  # noqa: E402

PLOT = "solar_curve.png"
NAN = float("nan")


def write_report(summary: dict[str, Any], out: Path) -> None:
    """solar_report.md and, next to it, the plot of the curve."""
    plot_curve(summary["curve"], out / PLOT)
    atomic.write_text(out / "solar_report.md", solar_report(summary))


def plot_curve(curve: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Accuracy (mean over seeds, the seed spread as an error bar) against generated tokens per question, one line
    per method, one point per budget."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (method, points) in enumerate(curve.items()):
        xs = [max(p["generated_tokens"], 1.0) for p in points]
        ys = [p["accuracy"] for p in points]
        spread = [p["seed_spread"] / 2 for p in points]
        style = "--" if any(arm in method for arm in ("matched", "oracle", "best-topology")) else "-"
        ax.errorbar(xs, ys, yerr=spread, linestyle=style, marker="osD^v<>p"[i % 8], markersize=4, capsize=2,
                    elinewidth=0.8, color=plt.cm.tab10(i % 10), label=method)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(tick_text))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: tick_text(v) if f"{v:e}"[0] in "25" else ""))
    ax.set_xlabel("generated tokens per question")
    ax.set_ylabel("accuracy (mean over seeds; bar: the seed spread)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def solar_report(summary: dict[str, Any]) -> str:
    methods, budgets = summary["methods"], summary["budgets"]
    levels = sorted({lvl for m in methods.values() for lvl in m["accuracy_by_level"]})
    head = ["method", "N", "accuracy", "seed spread", *(f"L{lvl}" for lvl in levels), *SEGMENTS, "tokens"]
    lines = ["# SOLAR on the lab", "", f"At the largest budget, N = {budgets[-1]}:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for name, m in methods.items():
        cells = [f"{m['accuracy_by_level'].get(lvl, NAN):.3f}" for lvl in levels]
        cells += [f"{m['accuracy_by_segment'].get(s, NAN):.3f}" for s in SEGMENTS]
        first = f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['seed_spread']:.3f} | "
        lines.append(first + " | ".join(cells) + f" | {m['generated_tokens']:.0f} |")
    lines += ["", "N: responses per question (chains, or topology runs); accuracy: mean over the seeds; seed spread: "
              "best minus worst seed; levels and segments: every seed's questions; tokens: generated per question. "
              "`-matched`: N chains at the generated tokens of rewarding (base policy) or hybrid (tuned); "
              "`chains-oracle`: those chains chosen by the oracle verifier the nested topologies use; "
              "`best-topology`: N responses of the training questions' best single topology alone, at those tokens, "
              "chosen by the same reward model.", "",
              "Targets (at the largest budget): "
              + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in summary["targets"].items()) + ".", ""]  # fmt: skip
    lines += curve_table(summary["curve"]) + ["", *reward_table(summary["reward_models"])]
    for label, training in summary["trainings"].items():
        stages = ", ".join(f"{s['stage']} {s['in']} -> {s['out']}" for s in training["tuning"]["filters"])
        lines.append(f"Tuning set ({label}): {stages}.")
    lines += ["", "Mean generated tokens of one chain per segment:", "", "| policy | " + " | ".join(SEGMENTS) + " |",
              "|---|---|---|---|"]  # fmt: skip
    for policy, by in summary["length_by_segment"].items():
        lines.append(f"| {policy} | " + " | ".join(f"{by.get(s, NAN):.1f}" for s in SEGMENTS) + " |")
    return "\n".join(lines) + "\n"


def curve_table(curve: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every method at every budget: its N, accuracy (mean, each seed's, spread) and generated tokens."""
    lines = [f"Accuracy vs budget (plot: {PLOT}); a matched arm's point at budget B is its N chains (or responses "
             "of the best topology) at the tokens of the topological method at B:", "",
             "| method | budget | N | accuracy | by seed | seed spread | tokens |", "|---|---|---|---|---|---|---|"]
    for method, points in curve.items():
        for p in points:
            seeds = ", ".join(f"{v:.3f}" for v in p["accuracy_by_seed"].values())
            lines.append(f"| {method} | {p['budget']} | {p['n']} | {p['accuracy']:.3f} | {seeds} | "
                         f"{p['seed_spread']:.3f} | {p['generated_tokens']:.0f} |")  # fmt: skip
    return lines


def reward_table(reward: dict[str, Any]) -> list[str]:
    """The reward models' held-out metrics (mean over trainings, ± the standard error over questions; with several
    trainings, the spread and each training's), then the M-TRM's paired selection gain over each other model."""
    several = len(reward["by_training"]) > 1
    header = "| model | selection accuracy | within-question AUC | Spearman |"
    lines = ["Reward models on the test questions" + (" (mean over the trainings):" if several else ":"), "",
             header + (" spread | by training |" if several else ""),
             "|---|---|---|---|" + ("---|---|" if several else "")]  # fmt: skip
    for name, metric in reward["metrics"].items():
        row = f"| {name} | {_with_se(metric, 'selection_accuracy')} | {_with_se(metric, 'within_auc')} | "
        row += f"{metric.get('spearman', NAN):.3f} |"
        if several:
            spread = reward["spread"][name]
            each = [t[name] for t in reward["by_training"].values()]
            row += (f" {spread.get('selection_accuracy', NAN):.3f} / {spread.get('spearman', NAN):.3f} | "
                    + ", ".join(f"{e.get('selection_accuracy', NAN):.3f} / {e.get('spearman', NAN):.3f}" for e in each)
                    + " |")  # fmt: skip
        lines.append(row)
    m_trm = reward["metrics"].get("m-trm", {})
    gains = [f"{key[len('selection_minus_'):]} {_with_se(m_trm, key, signed=True)}" for key in m_trm
             if key.startswith("selection_minus_") and not key.endswith("_se")]  # fmt: skip
    if gains:
        lines += ["", "M-TRM selection accuracy minus (paired over questions): " + ", ".join(gains) + "."]
    return lines + [""]


def _with_se(metric: dict[str, float], key: str, signed: bool = False) -> str:
    """`0.412 ± 0.045` (the value and its standard error, if the metric has them)."""
    value = metric.get(key, NAN)
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text + (f" ± {metric[key + '_se']:.3f}" if key + "_se" in metric else "")

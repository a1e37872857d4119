"""The run report: a plot of accuracy vs budget per level and a Markdown page with the tables."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def split_label(label: str) -> tuple[str, int]:
    """'majority@16' -> ('majority', 16)."""
    name, _, budget = label.rpartition("@")
    return name, int(budget)


def curves(accuracy: dict[str, float]) -> dict[str, list[tuple[int, float]]]:
    """Accuracy against budget for every strategy."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for label, value in accuracy.items():
        name, budget = split_label(label)
        out[name].append((budget, value))
    return {name: sorted(points) for name, points in out.items()}


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    """One panel per level (and one for all problems): accuracy vs number of samples, a line per strategy."""
    panels = {"all": summary["accuracy"], **{f"level {k}": v for k, v in summary["accuracy_by_level"].items()}}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, (title, accuracy) in zip(axes[0], panels.items()):
        for name, points in curves(accuracy).items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.set_xlabel("samples N")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(summary: dict[str, Any]) -> str:
    levels = list(summary["accuracy_by_level"])
    head = "| strategy | all | " + " | ".join(f"level {lvl}" for lvl in levels) + " | tokens/problem |"
    rows = [head, "|" + "---|" * (len(levels) + 3)]
    for label, value in summary["accuracy"].items():
        per_level = [summary["accuracy_by_level"][lvl].get(label, float("nan")) for lvl in levels]
        tokens = summary["cost_per_problem"].get(label, {}).get("tokens", 0.0)
        cells = " | ".join(f"{v:.3f}" for v in [value, *per_level])
        rows.append(f"| {label} | {cells} | {tokens:.0f} |")
    return "\n".join(rows)


def write_report(out_dir: Path, summary: dict[str, Any]) -> Path:
    """Write report.md and accuracy.png into `out_dir`; returns the Markdown path."""
    plot_accuracy(summary, out_dir / "accuracy.png")
    model = summary["config"]["model"]["path"]
    task = summary["config"]["task"]["name"]
    usage = summary["usage"]
    text = "\n\n".join(
        [
            f"# reasonscale run: {task} with {model}",
            f"{summary['problems']} problems. Model calls this invocation: {usage['model_calls']}, "
            f"cache hits: {usage['cache_hits']}, prompt tokens: {usage['prompt_tokens']}, "
            f"completion tokens: {usage['completion_tokens']}.",
            "## Accuracy by strategy and budget",
            markdown_table(summary),
            "![accuracy vs samples](accuracy.png)",
        ]
    )
    path = out_dir / "report.md"
    path.write_text(text + "\n")
    return path

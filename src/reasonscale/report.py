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


def line_style(name: str, bases: list[str]) -> dict[str, Any]:
    """One colour per strategy and one line style per verifier, so 'beam[oracle]' and 'beam[prm]' pair up."""
    base, _, verifier = name.partition("[")
    verifier = verifier.rstrip("]").split(",")[0]
    dashes = {"": "-", "oracle": "-", "prm": "--", "orm": ":"}
    return {"color": plt.cm.tab10(bases.index(base) % 10), "linestyle": dashes.get(verifier, "-.")}


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    """One panel per level (and one for all problems): accuracy vs budget N, a line per strategy."""
    panels = {"all": summary["accuracy"], **{f"level {k}": v for k, v in summary["accuracy_by_level"].items()}}
    names = list(curves(summary["accuracy"]))
    bases = list(dict.fromkeys(n.partition("[")[0] for n in names))
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), sharey=True, squeeze=False)
    for ax, (title, accuracy) in zip(axes.flat, panels.items()):
        for name, points in curves(accuracy).items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name, **line_style(name, bases))
        ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.set_xlabel("budget N (samples or beams)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // 6) / rows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(summary: dict[str, Any]) -> str:
    """Accuracy per level, and the tokens per problem: generated, and billed (prompts re-sent by step-wise search
    count again there, though an engine with a prefix cache does not recompute them)."""
    levels = list(summary["accuracy_by_level"])
    columns = ["strategy", "all", *(f"level {lvl}" for lvl in levels), "generated tokens", "billed tokens"]
    head = "| " + " | ".join(columns) + " |"
    rows = [head, "|" + "---|" * len(columns)]
    for label, value in summary["accuracy"].items():
        per_level = [summary["accuracy_by_level"][lvl].get(label, float("nan")) for lvl in levels]
        cost = summary["cost_per_problem"].get(label, {})
        cells = " | ".join(f"{v:.3f}" for v in [value, *per_level])
        rows.append(f"| {label} | {cells} | {cost.get('generated_tokens', 0.0):.0f} | {cost.get('tokens', 0.0):.0f} |")
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

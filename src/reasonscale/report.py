"""The run report: a plot of accuracy against compute per level and a Markdown page with the tables.

The plot's x-axis is the mean number of generated tokens per problem, the compute each strategy really spent
(lookahead's rollouts and a tree search's finishing calls included), so curves compare at equal compute; the
tables give each point's budget N, its generation budget (N in full generations' worth, N x (k + 1) for
lookahead) and its FLOPs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from reasonscale import atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

DASHES = {None: "-", "oracle": "-", "prm": "--", "orm": ":"}
MARKERS = "osD^v<>"


def line_styles(curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One colour per strategy name, one line style per verifier kind, one marker per variant of the same
    strategy and verifier (e.g. two beam widths)."""
    names = list(dict.fromkeys(c["strategy"] for c in curves))
    seen: dict[tuple[str, Any], int] = {}
    styles = []
    for c in curves:
        verifier = c["settings"].get("verifier")
        variant = seen[c["strategy"], verifier] = seen.get((c["strategy"], verifier), -1) + 1
        styles.append(
            {
                "color": plt.cm.tab10(names.index(c["strategy"]) % 10),
                "linestyle": DASHES.get(verifier, "-."),
                "marker": MARKERS[variant % len(MARKERS)],
            }
        )
    return styles


def tick_text(value: float, _position: object = None) -> str:
    """A token count as a tick label: 20, 500, 2k, 50k, 1M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    """One panel per level (and one for all problems): accuracy (± one standard error, as error bars) against
    generated tokens per problem."""
    curves = summary["strategies"]
    panels = ["all", *summary["problems_by_level"]]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), sharey=True, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for curve, style in zip(curves, line_styles(curves)):
            points = [p for p in curve["points"] if panel == "all" or panel in p["accuracy_by_level"]]
            xs = [max(p["cost"]["generated_tokens"], 1.0) for p in points]
            ys = [p["accuracy"] if panel == "all" else p["accuracy_by_level"][panel] for p in points]
            ses = [p.get("accuracy_se") if panel == "all" else p.get("accuracy_se_by_level", {}).get(panel)
                   for p in points]
            errors = None if None in ses else ses
            ax.errorbar(xs, ys, yerr=errors, markersize=3, capsize=2, elinewidth=0.8, label=curve["label"], **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(tick_text))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: tick_text(v) if f"{v:e}"[0] in "25" else ""))
        ax.set_title(panel if panel == "all" else f"level {panel}")
        ax.set_xlabel("generated tokens per problem")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncol = max(1, min(len(labels), 2 * columns))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // ncol) / rows, 1, 1))
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)


def flops_text(value: float) -> str:
    """FLOPs in a few characters: 3.2e9."""
    return f"{value:.1e}".replace("e+0", "e").replace("e+", "e") if value else "0"


def with_se(value: float, se: float | None) -> str:
    """An accuracy and its standard error: 0.412 ± 0.022 (the value alone without one)."""
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def accuracy_cells(point: dict[str, Any], levels: list[str]) -> list[str]:
    """A summary point's accuracy overall and at each level, each ± its standard error where it has one."""
    se_by_level = point.get("accuracy_se_by_level", {})
    cells = [with_se(point["accuracy"], point.get("accuracy_se"))]
    for lvl in levels:
        value = point["accuracy_by_level"].get(lvl)
        cells.append("-" if value is None else with_se(value, se_by_level.get(lvl)))
    return cells


def markdown_table(summary: dict[str, Any]) -> str:
    """Accuracy ± standard error overall and per level and the compute per problem of every strategy at every
    budget N: its generation budget, generated tokens, billed tokens (prompts re-sent by step-wise search count
    again there) and FLOPs (prompt tokens only where the engine recomputes them, verifier FLOPs included)."""
    levels = list(summary["problems_by_level"])
    columns = ["strategy@N", "generation budget", "all", *(f"level {lvl}" for lvl in levels)]
    columns += ["generated tokens", "billed tokens", "FLOPs"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for curve in summary["strategies"]:
        for p in curve["points"]:
            cost = p["cost"]
            cells = [f"{curve['label']}@{p['budget']}", f"{p['generation_budget']:g}", *accuracy_cells(p, levels)]
            cells += [f"{cost['generated_tokens']:.0f}", f"{cost['tokens']:.0f}", flops_text(cost["flops"])]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def bin_table(summary: dict[str, Any], kind: str) -> str:
    """Accuracy of every strategy at every budget per difficulty bin of one kind (oracle, predicted)."""
    bins = list(summary.get("problems_by_bin", {}).get(kind, {}))
    if not bins:
        return ""
    counts = ", ".join(f"bin {b}: {n}" for b, n in summary["problems_by_bin"][kind].items())
    rows = [f"{kind.capitalize()} difficulty bins, 1 the easiest ({counts}):", "",
            "| strategy@N | " + " | ".join(f"bin {b}" for b in bins) + " |", "|" + "---|" * (len(bins) + 1)]
    for curve in summary["strategies"]:
        for p in curve["points"]:
            by_bin = p.get("accuracy_by_bin", {}).get(kind, {})
            se = p.get("accuracy_se_by_bin", {}).get(kind, {})
            rows.append(f"| {curve['label']}@{p['budget']} | " + " | ".join(
                with_se(by_bin[b], se.get(b)) if b in by_bin else "-" for b in bins) + " |")
    return "\n".join(rows)


def se_note(summary: dict[str, Any]) -> str:
    """What the accuracies and their ± mean (a mean over sampling seeds when the summary has several)."""
    seeds = summary.get("seeds") or []
    if len(seeds) > 1:
        return (f"Accuracy is the mean over sampling seeds {', '.join(map(str, seeds))}; ± is its standard error "
                "over problems, each problem counted by its mean over the seeds.")
    return "± is the standard error of the accuracy over problems."


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
            f"cache hits: {usage['cache_hits']}; model calls over all invocations of this run: "
            f"{usage.get('run_model_calls', usage['model_calls'])}. Compute charged to the run: {usage['generations']:.0f} generations, "
            f"{usage['prompt_tokens']:.0f} prompt tokens, {usage['generated_tokens']:.0f} generated tokens, "
            f"{usage['verifier_tokens']:.0f} verifier tokens, {flops_text(usage['flops'])} FLOPs.",
            "## Accuracy by strategy and budget",
            se_note(summary),
            markdown_table(summary),
            "![accuracy vs generated tokens per problem](accuracy.png)",
            *(["## Accuracy by difficulty bin"] if summary.get("problems_by_bin") else []),
            *filter(None, (bin_table(summary, kind) for kind in ("oracle", "predicted"))),
        ]
    )
    path = out_dir / "report.md"
    atomic.write_text(path, text + "\n")
    return path

"""Terminal tables of results: accuracy per strategy and level, TAG, the compute-optimal policy, weak-to-strong."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def results_table(summary: dict[str, Any]) -> Table:
    """Accuracy ± its standard error over problems of every strategy at every budget N, overall and per level, with
    its compute per problem: the generation budget N stands for (N x (k + 1) for lookahead), generated tokens and
    FLOPs."""
    from reasonscale.report import accuracy_cells, flops_text

    levels = list(summary["problems_by_level"])
    counts = ", ".join(f"L{level}: {summary['problems_by_level'][level]}" for level in levels)
    table = Table(title=f"{summary['problems']} problems ({counts})", padding=(0, 1, 0, 0))
    table.add_column("strategy@N", overflow="fold", min_width=14)  # numbers never shrink; a long name folds
    for header in ["all", *(f"L{level}" for level in levels), "gens", "tokens", "FLOPs"]:  # compute per problem
        table.add_column(header, justify="right", no_wrap=True, min_width=4)
    for curve in summary["strategies"]:
        for p in curve["points"]:
            cost = p["cost"]
            table.add_row(
                escape(f"{curve['label']}@{p['budget']}"),
                *accuracy_cells(p, levels),
                f"{p['generation_budget']:g}",
                f"{cost['generated_tokens']:.0f}",
                flops_text(cost["flops"]),
            )
    return table


def w2s_table(summary: dict[str, Any]) -> Table:
    """Accuracy and performance gap recovered of every model, then the size and label accuracy of every data set."""
    table = Table(title="weak-to-strong", padding=(0, 1, 0, 0))
    for header in ("model", "accuracy", "PGR"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for name, m in summary["models"].items():
        table.add_row(escape(name), f"{m['accuracy']:.3f}", "-" if m["pgr"] is None else f"{m['pgr']:.3f}")
    for name, d in summary["data"].items():
        accuracy = " ".join(
            f"{k.removeprefix('accuracy_')} {v:.3f}"
            for k, v in d.items()
            if k.startswith("accuracy_") and v is not None
        )
        table.add_row(escape(f"data {name} (n={d['size']})"), accuracy or "-", "")
    return table


def tag_table(tag: dict[str, Any]) -> Table:
    """Per topology variant: accuracy overall and per level, win rate and generated tokens per response."""
    levels = sorted({lvl for v in tag["variants"].values() for lvl in v["accuracy_by_level"]})
    segments = ", ".join(f"{k}: {v}" for k, v in tag["segments"].items())
    title = (
        f"{tag['questions']} questions ({segments}); best topology per question "
        f"{tag['oracle_topology_accuracy']:.3f} vs best single {tag['best_single']['accuracy']:.3f}"
    )
    table = Table(title=title, padding=(0, 1, 0, 0))
    table.add_column("topology", overflow="fold", min_width=14)
    for header in ["acc", "vs best", *(f"L{lvl}" for lvl in levels), "win", "tokens"]:
        table.add_column(header, justify="right", no_wrap=True, min_width=4)
    for label, v in tag["variants"].items():
        cells = [f"{v['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        win, tokens = f"{v['win_rate']:.3f}", f"{v['generated_tokens']:.0f}"
        accuracy = f"{v['accuracy']:.3f} ± {v['accuracy_se']:.3f}" if "accuracy_se" in v else f"{v['accuracy']:.3f}"
        gap = f"{v['vs_best']:+.3f} ± {v['vs_best_se']:.3f}" if "vs_best" in v else "-"
        table.add_row(escape(label), accuracy, gap, *cells, win, tokens)
    return table


def scaling_table(result: dict[str, Any]) -> Table:
    """Cross-validated compute-optimal accuracy per verifier, budget and kind of bin, against best-of-N weighted
    by the same verifier."""
    table = Table(title=f"compute-optimal policy (two-fold cross-validated), {result['run']}", padding=(0, 1, 0, 0))
    kinds = list(dict.fromkeys(k for entry in result["policies"] for k in entry["cross_validated"]))
    for header in ("verifier", "budget", "weighted BoN", *(f"{k} bins" for k in kinds), "BoN budget to match"):
        table.add_column(header, justify="right")
    for entry in result["policies"]:
        baseline = {p["generation_budget"]: p["accuracy"] for p in entry["baseline"]}
        curves = [entry["cross_validated"][k]["points"] for k in kinds if k in entry["cross_validated"]]
        for i, point in enumerate(curves[0] if curves else []):
            budget = point["generation_budget"]
            matched = [f"{b:.3g}" if (b := c[i]["baseline_budget"]) is not None else "-" for c in curves]
            table.add_row(
                escape(str(entry["verifier"] or "any")),
                f"{budget:g}",
                f"{baseline[budget]:.3f}" if budget in baseline else "-",
                *(f"{c[i]['accuracy']:.3f}" for c in curves),
                " / ".join(matched),
            )
    return table
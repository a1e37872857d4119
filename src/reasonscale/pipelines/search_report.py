"""The lab search experiment's verifier sections of the Markdown report: the PRM (its training data and its measures
per level) and every verifier side by side on the evaluation's sample pools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonscale.report import with_se


def verifier_comparison(found: dict[str, dict]) -> list[str]:
    """A Markdown table with one row per verifier: its AUCs and, at every budget, weighted vote against majority."""
    budgets = list(next(iter(found.values()))["all"]["selection"]) if found else []
    head = ["verifier", "step AUC (first error)", "within-problem AUC", *(f"weighted - majority @{n}" for n in budgets)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, m in found.items():
        a = m["all"]
        gains = [_gain(a["selection"].get(n)) for n in budgets]
        cells = [key, _fmt(a["step_auc_first_error"]), _within(a["within_problem_auc"]), *gains]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


SELECTOR_NAMES = {
    "best_of_n": "top-scored",
    "weighted": "weighted vote",
    "majority": "majority",
    "oracle_best": "oracle best",
}


def verifier_rows(found: dict[str, Any]) -> list[str]:
    """A Markdown table of the verifier measures: one row per measure, one column for all problems and per level."""
    blocks = {"all": found["all"], **{f"level {lvl}": b for lvl, b in found["by_level"].items()}}
    rows = ["| measure | " + " | ".join(blocks) + " |", "|" + "---|" * (len(blocks) + 1)]

    def row(name: str, cell: Any) -> None:
        rows.append(f"| {name} | " + " | ".join(cell(b) for b in blocks.values()) + " |")

    row("problems", lambda b: str(b["problems"]))
    row("step AUC, first error (pooled)", lambda b: _fmt(b["step_auc_first_error"]))
    row("step AUC, all steps (pooled)", lambda b: _fmt(b["step_auc_all_steps"]))
    row("solution AUC (pooled)", lambda b: _fmt(b["solution_auc"]))
    row("within-problem AUC (problems)", lambda b: _within(b["within_problem_auc"]))
    for n in found["all"]["selection"]:
        for key, name in SELECTOR_NAMES.items():
            row(f"{name} @{n}", lambda b: _selected(b["selection"].get(n), key))
        row(f"weighted - majority @{n}", lambda b: _gain(b["selection"].get(n)))
    return rows


def _within(auc: dict[str, Any]) -> str:
    return f"{with_se(auc['mean'], auc['se'])} ({auc['problems']})" if auc["problems"] else "n/a"


def _selected(point: dict[str, Any] | None, key: str) -> str:
    return "n/a" if point is None else with_se(point[key]["accuracy"], point[key]["se"])


def _gain(point: dict[str, Any] | None) -> str:
    if point is None:
        return "n/a"
    gain = point["weighted_minus_majority"]
    return f"{gain['mean']:+.3f} ± {gain['se']:.3f}"


def _label_source(m: dict[str, Any], training: dict[str, Any]) -> str:
    if training.get("labels") == "oracle":
        return "Each step labelled by the exact oracle (first-error labels): the label-quality upper bound."
    source = f"Each step labelled by {m['rollouts']} rollouts of `{m['completer']}`. "
    if m["completer_is_policy"]:
        return source + (
            "They come from the policy being searched, as in Snell et al. (2024): a label is the step's value under "
            "that policy."
        )
    return source + (
        "They do not come from the policy: a label is the step's value under that model (as Math-Shepherd's "
        "completer), not under the policy being searched."
    )


def append_prm_section(report: Path, summary: dict[str, Any]) -> None:
    """Add the PRM measurements to the run's Markdown report."""
    m, t = summary["prm"], summary["prm"]["training"]
    lines = [
        "## Process reward model",
        "",
        f"Trained on {m['train_solutions']} policy solutions ({m['train_steps']} steps, policy accuracy "
        f"{m['train_solution_accuracy']:.3f}); {t['steps']} optimizer steps in {t['seconds']:.0f} s. "
        + _label_source(m, t),
        "",
        f"Monte-Carlo labels vs oracle, step ROC AUC (first-error labels): {_fmt(m['mc_label_auc'])}.",
    ]
    if "verifier" in m:
        seeds = summary.get("seeds") or []
        pooled = f", pools of seeds {', '.join(map(str, seeds))} together" if len(seeds) > 1 else ""
        lines += [
            "",
            f"The PRM on the evaluation's sample pools (final score: `{m['verifier']['aggregate']}` step{pooled}). "
            "Pooled AUCs mix problems (easy problems score high and are right more often); the within-problem AUC "
            "ranks the samples of one problem, as selection does (mean over problems with right and wrong samples, "
            "their count in brackets). Selection accuracy at N is over disjoint groups of N samples of each pool; "
            "oracle best is any sample of the group right (pass@N). ± is the standard error over problems.",
            "",
            *verifier_rows(m["verifier"]),
        ]
    if summary.get("verifiers"):
        lines += [
            "",
            "## Every verifier on the pools",
            "",
            "Each with the final score its strategies use; weighted - majority is the paired gain of the verifier-"
            "weighted vote over majority on the same samples, ± its standard error over problems.",
            "",
            *verifier_comparison(summary["verifiers"]),
        ]
    with report.open("a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")

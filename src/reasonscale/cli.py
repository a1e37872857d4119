"""The `reasonscale` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from reasonscale.config import ConfigError, load_config

app = typer.Typer(help="Spend compute wisely to make language models reason better.", no_args_is_help=True)
console = Console(stderr=True)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def results_table(summary: dict[str, Any]) -> Table:
    """Accuracy of every strategy@budget, overall and per level."""
    levels = list(summary["accuracy_by_level"])
    table = Table(title=f"{summary['problems']} problems")
    table.add_column("strategy")
    table.add_column("all", justify="right")
    for level in levels:
        table.add_column(f"L{level} ({summary['problems_by_level'][level]})", justify="right")
    table.add_column("tokens/problem", justify="right")
    for label, value in summary["accuracy"].items():
        cells = [f"{summary['accuracy_by_level'][lvl].get(label, float('nan')):.3f}" for lvl in levels]
        tokens = summary["cost_per_problem"].get(label, {}).get("tokens", 0.0)
        table.add_row(label, f"{value:.3f}", *cells, f"{tokens:.0f}")
    return table


def run_safely(job, *args, **kwargs):
    """Run a job, turning expected user errors into one clear message."""
    try:
        return job(*args, **kwargs)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        fail(str(error))


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML run config")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set sampling.temperature=0.6")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Evaluate a model on a task with the configured strategies (resumes a stopped run)."""
    from reasonscale.pipelines.evaluate import run_evaluation

    cfg = run_safely(load_config, config, set_)
    summary = run_safely(run_evaluation, cfg, show_progress=not quiet)
    Console().print(results_table(summary))
    console.print(f"results in {cfg.output_dir}/ (results.jsonl, summary.json, report.md)")


@app.command()
def grade(
    file: Annotated[Path, typer.Argument(help="JSONL with `reference` and `prediction` fields")],
    task: Annotated[str, typer.Option(help="gsm8k or math")] = "math",
    out: Annotated[Path | None, typer.Option(help="write graded lines here instead of stdout")] = None,
) -> None:
    """Grade predictions against references; adds `correct` and `extracted` to each line."""
    from reasonscale.grading.grade_file import grade_jsonl

    count, accuracy = run_safely(grade_jsonl, file, task, out)
    console.print(f"accuracy: {accuracy:.4f} ({count} items)")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory with summary.json")]) -> None:
    """Rebuild a run's report (report.md and plots) from its summary.json."""
    from reasonscale.report import write_report

    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        fail(f"no summary.json in {run_dir}")
    summary = json.loads(summary_path.read_text())
    console.print(f"wrote {write_report(run_dir, summary)}")
    Console().print(results_table(summary))


def main() -> None:  # pragma: no cover - console entry for `python -m reasonscale`
    app(prog_name="reasonscale")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

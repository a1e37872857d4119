"""The `reasonscale` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
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
    counts = ", ".join(f"L{level}: {summary['problems_by_level'][level]}" for level in levels)
    table = Table(title=f"{summary['problems']} problems ({counts})", padding=(0, 1, 0, 0))
    table.add_column("strategy", overflow="fold", min_width=16)  # numbers never shrink; a long name folds
    for header in ["all", *(f"L{level}" for level in levels), "generated"]:  # tokens per problem
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for label, value in summary["accuracy"].items():
        cells = [f"{summary['accuracy_by_level'][lvl].get(label, float('nan')):.3f}" for lvl in levels]
        tokens = summary["cost_per_problem"].get(label, {}).get("generated_tokens", 0.0)
        table.add_row(escape(label), f"{value:.3f}", *cells, f"{tokens:.0f}")
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


lab_app = typer.Typer(help="The synthetic lab domain: data, tiny models, demo and search experiment.")
app.add_typer(lab_app, name="lab")


@lab_app.command("train")
def lab_train(
    preset: Annotated[str, typer.Option(help="weak, default or strong")] = "default",
    budget_s: Annotated[
        float | None, typer.Option(help="cap on this call's training seconds; a run left unfinished resumes next call")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Train a lab model preset to its last step (resumes from its last checkpoint; reuses a finished one)."""
    from reasonscale.lab.train import train_preset

    path = run_safely(train_preset, preset, budget_s=budget_s, progress=not quiet)
    console.print(f"model ready: {path}")


@lab_app.command("demo")
def lab_demo(
    preset: Annotated[str, typer.Option(help="lab model preset")] = "default",
    per_level: Annotated[int, typer.Option(help="test problems per level")] = 40,
    n: Annotated[int, typer.Option(help="largest number of samples per problem")] = 16,
    output_dir: Annotated[str, typer.Option(help="run directory")] = "runs/lab-demo",
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """The main job: train or reuse the lab model, then greedy vs majority vs best-of-N for N = 1..n, per level."""
    from reasonscale.pipelines.lab_demo import run_demo

    cfg, summary = run_safely(run_demo, preset, output_dir, per_level, n, show_progress=not quiet)
    Console().print(results_table(summary))
    console.print(f"report: {cfg.output_dir}/report.md")


@lab_app.command("export")
def lab_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    per_level: Annotated[int, typer.Option(help="problems per level")] = 40,
    seed: Annotated[int, typer.Option(help="sampling seed within the split")] = 0,
) -> None:
    """Write lab problems (problem, answer, level, graph) as JSONL."""
    from reasonscale.lab.splits import export_jsonl, load_problems

    problems = run_safely(load_problems, split, [1, 2, 3, 4, 5], per_level, seed)
    console.print(f"wrote {len(problems)} problems to {export_jsonl(problems, out)}")


@lab_app.command("search")
def lab_search(
    config: Annotated[Path, typer.Argument(help="search experiment YAML, e.g. examples/lab_search.yaml")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set budgets=[1,4]")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Verifier-guided search on the lab domain: train a PRM from rollouts, compare strategies per level."""
    from reasonscale.pipelines.search_experiment import run_search_experiment

    summary = run_safely(run_search_experiment, config, set_, show_progress=not quiet)
    Console().print(results_table(summary))


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="model directory or Hugging Face id")],
    host: Annotated[str, typer.Option(help="address to bind (loopback unless --allow-remote)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    allow_remote: Annotated[bool, typer.Option(help="allow binding a non-loopback address")] = False,
    token_env: Annotated[str | None, typer.Option(help="env var holding a bearer token clients must send")] = None,
    model_name: Annotated[str | None, typer.Option(help="name clients use (default: the model fingerprint; the path also works)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
    max_batch_size: Annotated[int, typer.Option(help="rows per generate call")] = 64,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (completions, chat completions, models)."""
    import os

    from reasonscale.serve import serve as serve_model

    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            fail(f"--token-env {token_env}: that environment variable is empty or unset")
    run_safely(
        serve_model,
        model,
        host=host,
        port=port,
        token=token,
        allow_remote=allow_remote,
        model_name=model_name,
        device=device,
        max_batch_size=max_batch_size,
    )


def main() -> None:  # pragma: no cover - console entry for `python -m reasonscale`
    app(prog_name="reasonscale")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

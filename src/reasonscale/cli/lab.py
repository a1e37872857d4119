"""`reasonscale lab ...`: the synthetic lab domain's models, demo and experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reasonscale.cli.common import console, run_safely
from reasonscale.config_loading import load_config
from reasonscale.tables import results_table, scaling_table, w2s_table

lab_app = typer.Typer(help="The synthetic lab domain: data, tiny models, demo and search experiment.")


@lab_app.command("train")
def lab_train(
    preset: Annotated[str, typer.Option(help="weak, default, strong, or family-1..4 (increasing size)")] = "default",
    budget_s: Annotated[
        float | None, typer.Option(help="cap on this call's training seconds; a run left unfinished resumes next call")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
    revision: Annotated[bool, typer.Option(help="also fine-tune its revision model (Snell et al. App. H)")] = False,
) -> None:
    """Train a lab model preset to its last step (resumes from its last checkpoint; reuses a finished one)."""
    from reasonscale.lab.train import train_preset

    path = run_safely(train_preset, preset, budget_s=budget_s, progress=not quiet)
    if revision:
        from reasonscale.lab.revision import train_revision_preset

        console.print(f"model ready: {path}")
        path = run_safely(train_revision_preset, preset, budget_s=budget_s, progress=not quiet)
        console.print(f"revision model ready: {path}")
        return
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


@lab_app.command("scaling")
def lab_scaling(
    config: Annotated[Path, typer.Argument(help="experiment YAML, e.g. examples/lab_scaling.yaml")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set budgets=[1,4]")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Revision model, sequential vs parallel per difficulty bin and the cross-validated compute-optimal policy."""
    from reasonscale.pipelines.lab_scaling import run_lab_scaling

    result = run_safely(run_lab_scaling, config, set_, show_progress=not quiet)
    Console().print(scaling_table(result["compute_optimal"]))
    chains = result["chains"]
    if chains:
        console.print("accuracy of revision k: " + ", ".join(f"{a:.3f}" for a in chains["accuracy_by_revision"]))
        console.print(f"right attempts revised into wrong ones: {chains['right_to_wrong']}")
    console.print(f"report: {Path(result['compute_optimal']['run']).parent / 'report.md'}")


@lab_app.command("solar")
def lab_solar(
    config: Annotated[Path, typer.Argument(help="SOLAR experiment YAML, e.g. examples/lab_solar.yaml")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set evaluate.n=8")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """SOLAR on the lab: TAG, reward models, topological tuning; base vs tuning vs rewarding vs hybrid."""
    from reasonscale.pipelines.solar_lab import SolarConfig, run_solar

    cfg = run_safely(load_config, config, set_, SolarConfig)
    run_safely(run_solar, cfg, show_progress=not quiet)
    console.print(f"report: {cfg.output_dir}/solar_report.md")


@lab_app.command("w2s")
def lab_w2s(
    config: Annotated[Path, typer.Argument(help="lab weak-to-strong YAML, e.g. examples/lab_w2s.yaml")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set stage2.rounds=1")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Weak-to-strong on the lab: train (or reuse) the weak and strong lab models, then run every stage."""
    from reasonscale.pipelines.lab_w2s import run_lab_w2s

    summary = run_safely(run_lab_w2s, config, set_, progress=not quiet)
    Console().print(w2s_table(summary))

"""The `reasonscale` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from reasonscale.cli.common import console, fail, run_safely
from reasonscale.cli.lab import lab_app
from reasonscale.config_loading import load_config
from reasonscale.tables import results_table, scaling_table, tag_table, w2s_table

app = typer.Typer(help="Spend compute wisely to make language models reason better.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")


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


@app.command()
def annotate(
    config: Annotated[Path, typer.Argument(help="TAG YAML, e.g. examples/lab_tag.yaml")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set responses=2")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """TAG (SOLAR): answer every question with every topology, label, rank and segment; export the data set."""
    from reasonscale.pipelines.annotate import AnnotateConfig, run_annotation

    cfg = run_safely(load_config, config, set_, AnnotateConfig)
    summary = run_safely(run_annotation, cfg, show_progress=not quiet)
    Console().print(tag_table(summary["tag"]))
    console.print(f"annotations in {cfg.output_dir}/ (annotations.jsonl, dataset/, tag_summary.json)")


@app.command()
def w2s(
    config: Annotated[Path, typer.Argument(help="weak-to-strong YAML (see docs/w2s.md)")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set stage2.rounds=2")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Weak-to-strong reasoning: consistency-filtered SFT, then confidence-filtered DPO, iterated, with baselines."""
    from reasonscale.pipelines.w2s import run_w2s
    from reasonscale.pipelines.w2s_config import W2SConfig

    cfg = run_safely(load_config, config, set_, W2SConfig)
    summary = run_safely(run_w2s, cfg, progress=not quiet)
    Console().print(w2s_table(summary))
    console.print(f"report: {cfg.output_dir}/report.md")


scaling_app = typer.Typer(help="Difficulty bins and the compute-optimal policy (Snell et al. 2024).")
app.add_typer(scaling_app, name="scaling")


@scaling_app.command("fit")
def scaling_fit(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (results.jsonl, summary.json)")],
    seed: Annotated[int, typer.Option(help="seed of the split into halves")] = 0,
) -> None:
    """Select the best strategy per difficulty bin and budget, cross-validated; write the policy as a run config."""
    from reasonscale.pipelines.scaling import fit

    result = run_safely(fit, run_dir, seed)
    Console().print(scaling_table(result))
    console.print(f"details: {run_dir / 'scaling' / 'scaling.json'}")
    if "policy" in result:
        policy = run_dir / "scaling" / "policy.yaml"
        console.print(f"policy (routes by predicted bin): reasonscale run {policy}", soft_wrap=True)
    else:
        console.print("no predicted bins (the run has no verifier-scored sample pool): no policy written")


@scaling_app.command("exchange")
def scaling_exchange(
    small_run: Annotated[Path, typer.Argument(help="finished run of the small model (several strategies/budgets)")],
    large_run: Annotated[Path, typer.Argument(help="finished run of the larger model on the same questions")],
    m: Annotated[float | None, typer.Option(help="parameter ratio (default: counted from the two models)")] = None,
) -> None:
    """Pretraining vs test-time compute at matched FLOPs, per oracle difficulty bin, for R = 0.16, 0.79, 22."""
    from reasonscale.pipelines.scaling import exchange

    result = run_safely(exchange, small_run, large_run, m)
    table = Table(title=f"M = {result['M']:.2f}: small + test-time compute vs large greedy", padding=(0, 1, 0, 0))
    for header in ("bin", "R", "X", "small may spend", "budget used", "small", "large", "winner"):
        table.add_column(header, justify="right")
    for group, rows in result["bins"].items():
        for row in rows:
            small = "-" if row["small"] is None else f"{row['small']:.3f}"
            used = "-" if row["budget_used"] is None else f"{row['budget_used']:g}"
            limit = f"{row['limit']:.3g} {'FLOPs' if row['compute'] == 'flops' else 'generations'}"
            table.add_row(group, f"{row['R']:g}", f"{row['X']:.1f}", limit, used, small, f"{row['large']:.3f}",
                          str(row["winner"]))
    Console().print(table)
    console.print(f"details: {small_run / 'scaling' / 'exchange.json'}, plot: exchange.png")


solar_app = typer.Typer(help="SOLAR's topological scaling: topological tuning and topological reward models.")
app.add_typer(solar_app, name="solar")


@solar_app.command("tune")
def solar_tune(
    config: Annotated[Path, typer.Argument(help="tuning YAML (a TAG export, the task, the model, filters)")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set filters.top_k=1")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Topological tuning: build the tuning set from a TAG export (every filter's sizes) and LoRA-SFT the model."""
    from reasonscale.pipelines.solar import TuneConfig, run_tune

    cfg = run_safely(load_config, config, set_, TuneConfig)
    summary = run_safely(run_tune, cfg, progress=not quiet)
    for stage in summary["filters"]:
        console.print(f"{stage['stage']}: {stage['in']} -> {stage['out']} ({stage['questions_out']} questions)")
    console.print(f"model {'trained' if summary['trained'] else 'reused (identical run)'}: {summary['model']}")


@solar_app.command("trm")
def solar_trm(
    config: Annotated[Path, typer.Argument(help="TRM YAML (a TAG export, the task, the backbone)")],
    set_: Annotated[list[str], typer.Option("--set", help="override, e.g. --set held_out=0.2")] = [],
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Topological reward models: the M-TRM (and single-task ones), measured on held-out questions."""
    from reasonscale.pipelines.solar import TRMRunConfig, run_trm

    cfg = run_safely(load_config, config, set_, TRMRunConfig)
    summary = run_safely(run_trm, cfg, progress=not quiet)
    for name, metric in summary["metrics"].items():
        console.print(f"{name}: {summary['models'][name]} {json.dumps(metric)}")


train_app = typer.Typer(help="Fine-tune models over TRL + PEFT: SFT, DPO, reward models and PRMs, one config for all.")
app.add_typer(train_app, name="train")


def _train(method: str, config: Path, overrides: list[str], quiet: bool) -> None:
    from reasonscale.train import TRAINERS, load_train_config

    cfg = run_safely(load_train_config, method, config, overrides)
    result = run_safely(TRAINERS[method], cfg, progress=not quiet)
    final = {k: v for k, v in result.info.get("final", {}).items() if k in ("step", "loss")}
    console.print(f"model {'trained' if result.trained else 'reused (identical run)'}: {result.path} {final}")


TrainOverrides = Annotated[list[str], typer.Option("--set", help="override, e.g. --set optim.max_steps=100")]
TrainQuiet = Annotated[bool, typer.Option(help="no progress output")]


@train_app.command("sft")
def train_sft(
    config: Annotated[Path, typer.Argument(help="training YAML")],
    set_: TrainOverrides = [],
    quiet: TrainQuiet = False,
) -> None:
    """Supervised fine-tuning on prompt/completion JSONL (loss on completion tokens only)."""
    _train("sft", config, set_, quiet)


@train_app.command("dpo")
def train_dpo(
    config: Annotated[Path, typer.Argument(help="training YAML")],
    set_: TrainOverrides = [],
    quiet: TrainQuiet = False,
) -> None:
    """Direct preference optimisation on prompt/chosen/rejected JSONL."""
    _train("dpo", config, set_, quiet)


@train_app.command("reward")
def train_reward(
    config: Annotated[Path, typer.Argument(help="training YAML")],
    set_: TrainOverrides = [],
    quiet: TrainQuiet = False,
) -> None:
    """A scalar reward model on preference pairs (or labelled responses), usable as an `orm` verifier."""
    _train("reward", config, set_, quiet)


@train_app.command("prm")
def train_prm(
    config: Annotated[Path, typer.Argument(help="training YAML")],
    set_: TrainOverrides = [],
    quiet: TrainQuiet = False,
) -> None:
    """A process reward model on step-labelled JSONL (as `prm_data.jsonl`), usable as a `prm` verifier."""
    _train("prm", config, set_, quiet)


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
    max_model_len: Annotated[
        int | None, typer.Option(help="prompt + completion tokens per request (default: the model's context)")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body accepted")] = 1 << 20,
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
        max_model_len=max_model_len,
        max_body_bytes=max_body_bytes,
    )


def main() -> None:  # pragma: no cover - console entry for `python -m reasonscale.cli`
    app(prog_name="reasonscale")

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
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def results_table(summary: dict[str, Any]) -> Table:
    """Accuracy of every strategy at every budget N, overall and per level, with its compute per problem: the
    generation budget N stands for (N x (k + 1) for lookahead), generated tokens and FLOPs."""
    from reasonscale.report import flops_text

    levels = list(summary["problems_by_level"])
    counts = ", ".join(f"L{level}: {summary['problems_by_level'][level]}" for level in levels)
    table = Table(title=f"{summary['problems']} problems ({counts})", padding=(0, 1, 0, 0))
    table.add_column("strategy@N", overflow="fold", min_width=14)  # numbers never shrink; a long name folds
    for header in ["all", *(f"L{level}" for level in levels), "gens", "tokens", "FLOPs"]:  # compute per problem
        table.add_column(header, justify="right", no_wrap=True, min_width=4)
    for curve in summary["strategies"]:
        for p in curve["points"]:
            cells = [f"{p['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
            cost = p["cost"]
            table.add_row(
                escape(f"{curve['label']}@{p['budget']}"),
                f"{p['accuracy']:.3f}",
                *cells,
                f"{p['generation_budget']:g}",
                f"{cost['generated_tokens']:.0f}",
                flops_text(cost["flops"]),
            )
    return table


# Raised by engines and graders for conditions a user fixes (a server that does not answer, a missing extra).
EXPECTED_RUNTIME_ERRORS = frozenset({"ServerError", "VLLMUnavailable", "GraderStartupError", "RunLocked"})


def run_safely(job, *args, **kwargs):
    """Run a job, turning expected failures (bad config or data, missing files, unreachable servers, unusable
    output paths) into one clear message and exit code 2; finished work is already stored by then."""
    try:
        return job(*args, **kwargs)
    except (ConfigError, ValueError) as error:
        fail(escape(str(error)))
    except RuntimeError as error:
        if type(error).__name__ not in EXPECTED_RUNTIME_ERRORS:
            raise
        fail(escape(str(error)))
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        fail(escape(f"{where}{error.strerror or error}"))


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
    for header in ["acc", *(f"L{lvl}" for lvl in levels), "win", "tokens"]:
        table.add_column(header, justify="right", no_wrap=True, min_width=4)
    for label, v in tag["variants"].items():
        cells = [f"{v['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        win, tokens = f"{v['win_rate']:.3f}", f"{v['generated_tokens']:.0f}"
        table.add_row(escape(label), f"{v['accuracy']:.3f}", *cells, win, tokens)
    return table


lab_app = typer.Typer(help="The synthetic lab domain: data, tiny models, demo and search experiment.")
app.add_typer(lab_app, name="lab")


@lab_app.command("train")
def lab_train(
    preset: Annotated[str, typer.Option(help="weak, default or strong")] = "default",
    budget_s: Annotated[float | None, typer.Option(help="wall-time cap in seconds (default: the preset's)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Train a lab model preset from scratch (resumes from its last checkpoint; reuses a finished one)."""
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


train_app = typer.Typer(help="Fine-tune models over TRL + PEFT: SFT, DPO and reward models, one config for all.")
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


def main() -> None:  # pragma: no cover - console entry for `python -m reasonscale`
    app(prog_name="reasonscale")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Quality of the lab presets: train fully (or reuse from the cache) weak and default (= strong), then print by
level greedy accuracy, sampled pass@1 (temperature 0.8, mean over 16 samples) and pass@16 on the default test
mix, and the default-minus-weak gap in greedy accuracy.

    python benchmarks/bench_lab_quality.py [--presets weak default] [--per-level 40] [--samples 16]

Targets (docs/lab.md): default pass@1 in [0.25, 0.75], pass@16 >= pass@1 + 0.20, greedy and pass@1 falling
with level, no level saturated (greedy <= 0.90 on every level), and default ahead of weak by at least 10 points
of greedy accuracy. Training speed (steps/s in this run) is printed with the load average, since it depends on
both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import torch

from reasonscale.config import LabTaskConfig, TaskConfig
from reasonscale.engines.hf import HFEngine
from reasonscale.lab.model import get_preset
from reasonscale.lab.train import STATE_FILE, preset_dir, train_preset
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem, SamplingParams

MAX_TOKENS = 192
Table = dict[str, dict[str, float]]  # row ("L1".."L5", "all") -> column ("greedy", "pass@1", "pass@N") -> value


def correctness(task: LabTask, engine: HFEngine, problems: list[Problem], params: SamplingParams) -> list[list[bool]]:
    """For each problem, whether each of its `params.n` samples is right."""
    outputs = engine.generate([task.format_prompt(p) for p in problems], params)
    return [
        task.grade([p] * len(outs), [task.extract_answer(o.text) for o in outs]) for p, outs in zip(problems, outputs)
    ]


def evaluate(model_dir: Path, task: LabTask, problems: list[Problem], samples: int) -> Table:
    """Greedy accuracy, pass@1 and pass@`samples` per level and overall ("all")."""
    engine = HFEngine(str(model_dir), device="cpu", max_batch_size=128)
    greedy = correctness(task, engine, problems, SamplingParams(n=1, temperature=0.0, max_tokens=MAX_TOKENS))
    sampled = correctness(task, engine, problems, SamplingParams(n=samples, temperature=0.8, max_tokens=MAX_TOKENS))
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for p, g, s in zip(problems, greedy, sampled):
        figures = (float(g[0]), sum(s) / len(s), float(any(s)))
        rows[f"L{p.level}"].append(figures)
        rows["all"].append(figures)
    names = ("greedy", "pass@1", f"pass@{samples}")
    return {key: {n: sum(f[i] for f in figs) / len(figs) for i, n in enumerate(names)} for key, figs in rows.items()}


def print_table(name: str, table: Table) -> None:
    columns = list(next(iter(table.values())))
    print(f"\n{name}")
    print(f"{'level':<7}" + "".join(f"{c:>10}" for c in columns))
    for key in sorted(table, key=lambda k: (k == "all", k)):
        print(f"{key:<7}" + "".join(f"{table[key][c]:>10.3f}" for c in columns))


def falls_with_level(table: Table, column: str) -> bool:
    """Whether no level scores above the level before it."""
    levels = [table[k][column] for k in sorted(k for k in table if k != "all")]
    return all(a >= b for a, b in itertools.pairwise(levels))


def print_targets(results: dict[str, Table], samples: int) -> None:
    """Whether the measured figures meet the quality targets (for the presets that were evaluated)."""
    checks = []
    if "default" in results:
        overall = results["default"]["all"]
        level_rows = results["default"].values()
        checks += [
            ("default pass@1 in [0.25, 0.75]", 0.25 <= overall["pass@1"] <= 0.75),
            (f"default pass@{samples} >= pass@1 + 0.20", overall[f"pass@{samples}"] >= overall["pass@1"] + 0.20),
            ("default greedy accuracy falls with level", falls_with_level(results["default"], "greedy")),
            ("default pass@1 falls with level", falls_with_level(results["default"], "pass@1")),
            ("no default level saturated (greedy <= 0.90)", max(r["greedy"] for r in level_rows) <= 0.9),
        ]
    if {"weak", "default"} <= results.keys():
        gap = results["default"]["all"]["greedy"] - results["weak"]["all"]["greedy"]
        print(f"\ndefault - weak greedy accuracy: {gap:+.3f}")
        checks.append(("default beats weak by >= 0.10 greedy accuracy", gap >= 0.10))
    print()
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


def _steps_done(name: str) -> int:
    """Steps already trained in the preset's directory (0 when none)."""
    path = preset_dir(get_preset(name)) / STATE_FILE
    return json.loads(path.read_text())["step"] if path.is_file() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["weak", "default"])
    parser.add_argument("--per-level", type=int, default=LabTaskConfig().per_level)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models generate fastest on one thread, and it spares a shared machine
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(per_level=args.per_level)))
    problems = task.load()
    results: dict[str, Table] = {}
    by_dir: dict[Path, Table] = {}
    for name in dict.fromkeys(args.presets):
        before = _steps_done(name)
        started = time.perf_counter()
        model_dir = train_preset(name)
        took = time.perf_counter() - started
        state = json.loads((model_dir / STATE_FILE).read_text())
        speed = f", {(state['step'] - before) / took:.2f} steps/s" if state["step"] > before else ""
        print(
            f"[{name}] {model_dir}: {state['step']} steps, {state['tokens']} tokens, {state['parameters']} "
            f"parameters, {state['elapsed_s']:.0f}s of training in all, {took:.0f}s in this run{speed} "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        if model_dir not in by_dir:
            started = time.perf_counter()
            by_dir[model_dir] = evaluate(model_dir, task, problems, args.samples)
            print(f"[{name}] evaluated in {time.perf_counter() - started:.0f}s")
        results[name] = by_dir[model_dir]
        print_table(f"{name} ({get_preset(name).model})", results[name])
    print_targets(results, args.samples)


if __name__ == "__main__":
    main()

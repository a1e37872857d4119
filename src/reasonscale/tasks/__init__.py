"""Tasks: data sets with prompting, step splitting, answer extraction and grading, built from a TaskConfig."""

from __future__ import annotations

from reasonscale.config import TaskConfig
from reasonscale.tasks.base import Task


def build_task(cfg: TaskConfig) -> Task:
    """The task the config names (modules import lazily)."""
    if cfg.name == "gsm8k":
        from reasonscale.tasks.gsm8k import GSM8KTask

        return GSM8KTask(cfg)
    if cfg.name == "math":
        from reasonscale.tasks.math import MathTask

        return MathTask(cfg)
    if cfg.name == "jsonl":
        from reasonscale.tasks.jsonl import JsonlTask

        return JsonlTask(cfg)
    if cfg.name == "lab":
        from reasonscale.tasks.lab import LabTask

        return LabTask(cfg)
    raise ValueError(f"unknown task '{cfg.name}'")


__all__ = ["Task", "build_task"]

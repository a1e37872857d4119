"""Progress display for long work: problems finished and samples generated, with rich progress bars."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Two bars (problems, fresh samples); a no-op when disabled. Use as a context manager."""

    def __init__(self, enabled: bool = True, label: str = "problems"):
        self.label = label
        self.bars = (
            RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            if enabled
            else None
        )
        self._problems = self._samples = None

    def __enter__(self) -> Progress:
        if self.bars:
            self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars:
            self.bars.__exit__(*exc)

    def start(self, total: int, done: int = 0) -> None:
        if self.bars:
            self._problems = self.bars.add_task(self.label, total=total, completed=done)
            self._samples = self.bars.add_task("samples generated", total=None)

    def problems(self, count: int) -> None:
        if self.bars and self._problems is not None:
            self.bars.advance(self._problems, count)

    def samples(self, count: int) -> None:
        if self.bars and self._samples is not None:
            self.bars.advance(self._samples, count)

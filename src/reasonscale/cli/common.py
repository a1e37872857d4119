"""What every command shares: the error console and turning expected failures into one line and exit code 2."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from reasonscale.config import ConfigError

console = Console(stderr=True)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


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

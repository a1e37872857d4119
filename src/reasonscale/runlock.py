"""One writer per run directory: an advisory lock held for as long as a process writes a run's outputs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory; the message names it and the holder's pid."""


@contextmanager
def run_lock(out_dir: str | Path) -> Iterator[None]:
    """Hold `out_dir/.lock` (created with the directory) or fail at once, naming the process that holds it.

    The lock is the operating system's (flock), so it is released when its process ends, even by SIGKILL.
    Processes that only share a sample cache need no lock: the store's claims keep them from duplicating work.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = (out_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLocked(
                f"{out_dir}: another reasonscale process (pid {holder}) is writing this run; wait for it to finish, "
                "or give another output_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()

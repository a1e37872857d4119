"""Math-Verify in worker processes with a hard per-item wall timeout and an input size cap.

Workers are plain subprocesses (`python -m reasonscale.grading.worker`) speaking JSON lines: they never import the
caller's main module, never fork a parent that runs threads, and can always be killed. They start lazily, are
reused across calls, and one that overruns an item's deadline is killed and replaced. POSIX only.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reasonscale.grading.latex import normalize_latex
from reasonscale.grading.verdict import Verdict

STARTUP_LIMIT_S = 120.0


class GraderStartupError(RuntimeError):
    """A worker could not start (a broken installation, not a bad input); its stderr says why."""


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ready: bool = False
    item: int = -1
    deadline: float = field(default_factory=lambda: time.monotonic() + STARTUP_LIMIT_S)

    def send(self, gold: str, prediction: str, seconds: float) -> None:
        request = {"gold": gold, "prediction": prediction, "seconds": seconds}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def receive(self) -> dict | None:
        """The worker's next message, or None when it has died."""
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        return json.loads(line) if line else None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()  # type: ignore[union-attr]
        self.process.stdout.close()  # type: ignore[union-attr]


def _launch(memory_mb: int) -> _Worker:
    """Start a worker that imports this same copy of reasonscale."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "reasonscale.grading.worker", str(memory_mb)]
    return _Worker(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))


class MathVerifyPool:
    """Compare LaTeX answers in up to `workers` processes, each item in at most `timeout` seconds of wall time.

    Inputs longer than `max_chars` are not parsed (incorrect, with a reason). `memory_mb` caps each worker's
    address space (0: no cap), so a huge number fails with MemoryError instead of swapping. Thread-safe.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, max_chars: int = 2000, memory_mb: int = 4096):
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.timeout = timeout
        self.max_chars = max_chars
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def verify(self, pairs: Sequence[tuple[str, str]], timeout: float | None = None) -> list[Verdict]:
        """A Verdict per (gold, prediction) pair, every one computed by a worker (no fast path)."""
        limit = self.timeout if timeout is None else timeout
        verdicts: list[Verdict | None] = [self._size_verdict(g, p) for g, p in pairs]
        todo = deque(i for i, v in enumerate(verdicts) if v is None)
        with self._lock:
            if os.getpid() != self._pid:  # a forked copy of the pool: the workers belong to the parent
                self._idle, self._pid = [], os.getpid()
            busy: list[_Worker] = []
            try:
                while todo or busy:
                    while todo and len(busy) < self.workers:
                        busy.append(self._start_item(todo.popleft(), pairs, limit))
                    self._collect(busy, verdicts, pairs, limit)
            finally:
                for worker in busy:  # interrupted: their late replies must not reach the next call
                    worker.stop()
        return verdicts  # type: ignore[return-value]  # every slot is filled by now

    def _size_verdict(self, gold: str, prediction: str) -> Verdict | None:
        for side, text in (("reference", gold), ("prediction", prediction)):
            if len(text) > self.max_chars:
                return Verdict(False, f"{side} longer than {self.max_chars} characters")
        return None

    def _checkout(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.poll() is None:
                return worker
            worker.stop()
        return _launch(self.memory_mb)

    def _start_item(self, item: int, pairs: Sequence[tuple[str, str]], limit: float) -> _Worker:
        worker = self._checkout()
        try:
            return self._assign(worker, item, pairs, limit)
        except OSError:  # it died since it was checked: a fresh worker takes the item once ready
            worker.stop()
            return self._assign(_launch(self.memory_mb), item, pairs, limit)

    @staticmethod
    def _assign(worker: _Worker, item: int, pairs: Sequence[tuple[str, str]], limit: float) -> _Worker:
        """Give the worker an item; it is sent now, or once the worker reports ready."""
        worker.item = item
        if worker.ready:
            worker.send(str(pairs[item][0]), str(pairs[item][1]), limit)
            worker.deadline = time.monotonic() + limit
        return worker

    def _collect(
        self, busy: list[_Worker], verdicts: list[Verdict | None], pairs: Sequence[tuple[str, str]], limit: float
    ) -> None:
        """Wait for the first message or deadline; record verdicts; kill workers past their deadline."""
        wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        readable, _, _ = select.select([w.process.stdout for w in busy], [], [], wait)
        for worker in list(busy):
            if worker.process.stdout in readable:
                message = worker.receive()
                if message is not None and message.get("ready"):
                    worker.ready = True
                    self._assign(worker, worker.item, pairs, limit)
                    continue
                verdicts[worker.item] = self._finish(worker, message)
            elif time.monotonic() >= worker.deadline:
                verdicts[worker.item] = self._expire(worker, limit)
            else:
                continue
            busy.remove(worker)

    def _finish(self, worker: _Worker, message: dict | None) -> Verdict:
        if message is None:
            worker.stop()
            if not worker.ready:
                raise GraderStartupError(f"grader worker exited on startup (code {worker.process.returncode})")
            return Verdict(False, f"grader worker died (exit code {worker.process.returncode})")
        self._idle.append(worker)
        return Verdict(message["equal"], message["reason"])

    @staticmethod
    def _expire(worker: _Worker, limit: float) -> Verdict:
        worker.stop()
        if not worker.ready:
            raise GraderStartupError(f"grader worker not ready after {STARTUP_LIMIT_S:g} s")
        return Verdict(False, f"timed out after {limit:g} s")

    def close(self) -> None:
        """Stop the idle workers (a later call starts new ones)."""
        with self._lock:
            while self._idle:
                self._idle.pop().stop()

    def __enter__(self) -> MathVerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: MathVerifyPool | None = None
_default_lock = threading.Lock()


def default_pool() -> MathVerifyPool:
    """The process-wide pool (created on first use, closed at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MathVerifyPool()
            atexit.register(_default.close)
        return _default


def equivalent_many(
    pairs: Sequence[tuple[str, str]], timeout: float | None = None, pool: MathVerifyPool | None = None
) -> list[Verdict]:
    """A Verdict per (gold, prediction) pair: equal normal forms are equal at once, the rest go to the pool."""
    pool = pool or default_pool()
    same = [_same_form(g, p, pool.max_chars) for g, p in pairs]
    verdicts = iter(pool.verify([pair for pair, s in zip(pairs, same) if not s], timeout))
    return [Verdict(True) if s else next(verdicts) for s in same]


def _same_form(gold: str, prediction: str, max_chars: int) -> bool:
    if len(gold) > max_chars or len(prediction) > max_chars:
        return False
    form = normalize_latex(gold)
    return bool(form) and form == normalize_latex(prediction)

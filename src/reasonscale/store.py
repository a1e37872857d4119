"""SQLite run store: the generation cache and finished per-problem results, written transactionally (WAL).

A kill at any moment loses at most the batch in flight: every finished batch of generations and every finished
problem is committed, so re-running the same config recomputes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from reasonscale.types import Completion, SamplingParams

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    stop TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_calls (
    run TEXT PRIMARY KEY,
    model_calls INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run, problem_id)
);
"""


CLAIM_TTL_S = 3600.0  # a claim older than this is taken over even when its owner's liveness cannot be checked


class StoreError(ValueError):
    """The store file cannot be used; the message names it."""


def generation_key(model_id: str, prompt: str, params: SamplingParams, index: int) -> str:
    """Content key of one sample. Greedy samples are all the same, so their index is dropped."""
    payload = {
        "model": model_id,
        "prompt": prompt,
        "params": params.cache_fields(),
        "index": index if params.temperature > 0 else 0,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Store:
    """One SQLite file; safe against SIGKILL thanks to WAL journaling and one transaction per write."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path}: the store must be a file, and this is a folder (check cache_path)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            _while_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self.db.execute("PRAGMA synchronous=NORMAL")
            _while_locked(lambda: self.db.executescript(_SCHEMA))
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a reasonscale store ({error}); give another cache_path") from None

    def get_generations(self, keys: Iterable[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT key, text, finish_reason, stop, prompt_tokens, completion_tokens "
                f"FROM generations WHERE key IN ({marks})",
                chunk,
            )
            for key, text, finish, stop, ptok, ctok in rows:
                found[key] = Completion(text, finish, ptok, ctok, stop=stop, cached=True)
        return found

    def put_generations(self, model_id: str, items: Iterable[tuple[str, Completion]]) -> None:
        rows = [
            (k, model_id, c.text, c.finish_reason, c.stop, c.prompt_tokens, c.completion_tokens) for k, c in items
        ]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def count_generations(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def put_result(self, run: str, problem_id: str, position: int, record: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                (run, problem_id, position, json.dumps(record)),
            )

    def get_results(self, run: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT problem_id, record FROM results WHERE run = ? ORDER BY position", (run,))
        return {pid: json.loads(rec) for pid, rec in rows}

    def add_run_calls(self, run: str, count: int) -> None:
        """Add `count` fresh model calls to run `run`'s total over all its invocations."""
        with self.db:
            self.db.execute(
                "INSERT INTO run_calls VALUES (?, ?) ON CONFLICT(run) DO UPDATE SET model_calls = model_calls + ?",
                (run, count, count),
            )

    def run_calls(self, run: str) -> int:
        row = self.db.execute("SELECT model_calls FROM run_calls WHERE run = ?", (run,)).fetchone()
        return row[0] if row else 0

    def claim(self, keys: Iterable[str], owner: str, stale_after_s: float = CLAIM_TTL_S) -> set[str]:
        """Claim the samples `keys` for `owner` so that processes sharing this store never generate one twice.

        Returns the keys `owner` holds now: those free, already its own, or held by a claim that went stale (its
        process is gone from this host, or it is older than `stale_after_s`)."""
        keys = list(dict.fromkeys(keys))
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for key, holder, since in self._claims_on(keys):
                if holder != owner and (since < now - stale_after_s or not owner_alive(holder)):
                    self.db.execute("DELETE FROM claims WHERE key = ?", (key,))
            self.db.executemany("INSERT OR IGNORE INTO claims VALUES (?, ?, ?)", [(k, owner, now) for k in keys])
            return {key for key, holder, _ in self._claims_on(keys) if holder == owner}

    def release(self, keys: Iterable[str], owner: str) -> None:
        with self.db:
            self.db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", [(k, owner) for k in keys])

    def _claims_on(self, keys: list[str]) -> list[tuple[str, str, float]]:
        rows = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(f"SELECT key, owner, since FROM claims WHERE key IN ({marks})", chunk).fetchall()
        return rows

    def close(self) -> None:
        self.db.close()


def _while_locked(step: Callable[[], object], wait_s: float = 60.0) -> None:
    """Run `step`, retrying while another process holds the file: switching a new file to WAL ignores SQLite's
    busy timeout, so two processes opening one fresh store at once would otherwise see "database is locked"."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def new_owner() -> str:
    """A claim owner name for this process: host, pid and a random part (one per CachedEngine)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only when the owner ran on this host and its process is gone."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

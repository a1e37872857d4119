"""Fair batching for `reasonscale serve`: concurrent requests share engine batches, and no request starves the rest.

Each request is cut into slices of at most `slice_rows` rows (prompt copies). The batcher runs rounds: a round takes
the next slice of every waiting request, in arrival order, and generates the slices that share sampling settings as
one engine call. A large request thus gets one slice per round, and a request that arrives behind it waits for at
most one round, not for the whole of it. Every row is sampled from its own noise stream, so slicing and batching
change no sample.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from reasonscale.engines.hf import HFEngine
from reasonscale.types import Completion, SamplingParams


class GenerationError(RuntimeError):
    """Generation failed for a batch; every request in it gets this error."""


@dataclass(eq=False)  # jobs are compared by identity
class Job:
    """One slice of a request: rows waiting for a batch, and the future their completions go to."""

    prompts: list[str]
    seeds: list[int]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Runs generation jobs on the engine one round at a time, merging the jobs of a round that share settings.

    Clients that keep requests in flight answer each finished round with as many new requests, so a round waits (at
    most `max_wait` seconds) for that burst on top of the requests that queued up while the last round ran, and then
    for as long as further requests keep arriving less than `gap` seconds apart.
    """

    def __init__(self, engine: HFEngine, slice_rows: int, max_wait: float = 0.05, gap: float = 0.002):
        self.engine = engine
        self.slice_rows = slice_rows
        self.max_wait = max_wait
        self.gap = gap
        self.finished = 1  # requests whose last slice ran in the last round
        self.waiting: deque[deque[Job]] = deque()  # per waiting request, its slices still to run
        self.arrived = asyncio.Event()

    async def submit(self, prompts: list[str], seeds: list[int], params: SamplingParams) -> list[Completion]:
        """Completions of `prompts` (row k sampled from noise stream `seeds[k]`), once all their slices have run."""
        loop = asyncio.get_running_loop()
        cut = self.slice_rows
        slices = [
            Job(prompts[i : i + cut], seeds[i : i + cut], params, loop.create_future())
            for i in range(0, len(prompts), cut)
        ]
        self.waiting.append(deque(slices))
        self.arrived.set()
        try:
            parts = await asyncio.gather(*(job.future for job in slices))
        finally:
            self._drop(slices)  # the request failed or its client went away: its other slices need not run
        return [completion for part in parts for completion in part]

    async def run(self) -> None:
        """Forever: collect a round, group its jobs by sampling settings, generate each group in a thread."""
        while True:
            groups: dict[SamplingParams, list[Job]] = {}
            for job in await self._collect():
                groups.setdefault(job.params, []).append(job)
            for params, group in groups.items():
                await self._run_group(params, group)

    async def _collect(self) -> list[Job]:
        """The next round: one slice per waiting request, after waiting briefly for the burst the last one brings."""
        while not self.waiting:
            await self._arrival(None)
        target = len(self.waiting) + self.finished
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while (remaining := deadline - loop.time()) > 0:
            if not await self._arrival(min(remaining, self.gap) if len(self.waiting) >= target else remaining):
                break
        return self._take_round()

    async def _arrival(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: forever) for a new request; whether one came."""
        self.arrived.clear()
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _take_round(self) -> list[Job]:
        """The next slice of every waiting request; requests with slices left go to the back, in the same order."""
        jobs = []
        self.finished = 0
        for _ in range(len(self.waiting)):
            slices = self.waiting.popleft()
            jobs.append(slices.popleft())
            if slices:
                self.waiting.append(slices)
            else:
                self.finished += 1
        return jobs

    def _drop(self, slices: list[Job]) -> None:
        for job in slices:
            job.future.cancel()  # no effect on a finished job
        for pending in list(self.waiting):
            if pending and pending[0] in slices:
                self.waiting.remove(pending)

    async def _run_group(self, params: SamplingParams, group: list[Job]) -> None:
        group = [job for job in group if not job.future.done()]  # a cancelled request's slices are skipped
        if not group:
            return
        prompts = [p for job in group for p in job.prompts]
        seeds = [s for job in group for s in job.seeds]
        try:
            made = await asyncio.to_thread(self.engine.complete_seeded, prompts, seeds, params)
        except Exception as error:  # noqa: BLE001 - whatever failed, it fails these requests, not the server
            failure = GenerationError(f"{type(error).__name__}: {error}")
            for job in group:
                if not job.future.done():
                    job.future.set_exception(failure)
            return
        start = 0
        for job in group:
            if not job.future.done():  # the client may have gone away
                job.future.set_result(made[start : start + len(job.prompts)])
            start += len(job.prompts)

"""The Engine protocol: every backend turns (prompt, sample index) requests into completions.

A strategy calls `generate(prompts, params)` and never knows which backend runs it. Backends implement
`complete(requests, params)`, one completion per request, where a request names its sample index so that
sample i of a prompt has its own seed (`sample_seed`) and can be cached, resumed or re-run on its own.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from reasonscale.types import Completion, SamplingParams


class SampleRequest(NamedTuple):
    """Sample number `index` of `prompt`."""

    prompt: str
    index: int


def sample_seed(seed: int, prompt: str, index: int) -> int:
    """A 63-bit seed for one sample that depends only on the run seed, the prompt and the sample index."""
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Cut `text` before the earliest stop string (the longest one where several start at the same place);
    return the kept text and the stop that matched."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        pos = text.find(stop) if stop else -1
        if pos >= 0 and (best is None or (pos, -len(stop)) < best[:2]):
            best = (pos, -len(stop), stop)
    if best is None:
        return text, None
    return text[: best[0]], best[2]


class Engine(ABC):
    """A text generator. `model_id` identifies the model in cache keys; `num_parameters` (non-embedding) feeds FLOP
    counts; `caches_prefixes` says whether prompt prefixes seen before are reused instead of recomputed, so FLOP
    counts charge prompt tokens only where they are computed again."""

    model_id: str = "unknown"
    num_parameters: int = 0
    caches_prefixes: bool = False
    preferred_batch: int = 64  # requests per `complete` call that keep it busy (the cache chunks work by it)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """Sample `params.n` completions for each prompt; a prompt may end in a partial answer to continue."""
        requests = [SampleRequest(p, i) for p in prompts for i in range(params.n)]
        flat = self.complete(requests, params) if requests else []
        return [flat[k * params.n : (k + 1) * params.n] for k in range(len(prompts))]

    @abstractmethod
    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order. `params.n` is ignored here: each request is one sample."""

    def close(self) -> None:
        """Release resources (processes, servers, GPU memory)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A caching wrapper over any engine: samples already in the store are never generated again."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.store import Store, generation_key, new_owner
from reasonscale.types import Completion, SamplingParams


class CachedEngine(Engine):
    """Looks every sample up by content key, generates only the missing ones, and commits them chunk by chunk.

    A chunk is the wrapped engine's `preferred_batch`, so caching never starves it of work.
    `on_generated(k)` is called after each committed chunk of k fresh samples (progress bars hook in here).
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        chunk_size: int | None = None,
        on_generated: Callable[[int], None] | None = None,
    ):
        self.engine = engine
        self.store = store
        self.chunk_size = chunk_size or engine.preferred_batch
        self.on_generated = on_generated
        self.model_id = engine.model_id
        self.num_parameters = engine.num_parameters
        self.caches_prefixes = engine.caches_prefixes
        self.hits = 0
        self.misses = 0
        self.owner = new_owner()  # claims samples so processes sharing the store never generate one twice
        self.poll_s = 0.5

    @property
    def preferred_batch(self) -> int:
        return self.chunk_size

    def __getattr__(self, name: str):
        return getattr(self.engine, name)  # render_chat, tokenizer... of the wrapped engine

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        keys = [generation_key(self.model_id, r.prompt, params, r.index) for r in requests]
        found = self.store.get_generations(keys)
        missing: dict[str, SampleRequest] = {}
        for key, request in zip(keys, requests):
            if key not in found:
                missing.setdefault(key, request)
        fresh: dict[str, Completion] = {}
        while missing:
            mine = self.store.claim(missing, self.owner)
            if mine:
                fresh.update(self._generate([(k, missing.pop(k)) for k in list(missing) if k in mine], params))
            else:  # all held by another process sharing this store: wait for them to land (or their claims to lapse)
                time.sleep(self.poll_s)
            arrived = self.store.get_generations(missing)
            found.update(arrived)
            for key in arrived:
                missing.pop(key)
        self.misses += len(fresh)
        self.hits += len(requests) - len(fresh)
        return [fresh.get(k) or found[k] for k in keys]

    def _generate(self, pending: list[tuple[str, SampleRequest]], params: SamplingParams) -> dict[str, Completion]:
        """Generate claimed samples chunk by chunk, committing each chunk; claims are released however it ends."""
        fresh: dict[str, Completion] = {}
        try:
            for start in range(0, len(pending), self.chunk_size):
                chunk = pending[start : start + self.chunk_size]
                made = self.engine.complete([r for _, r in chunk], params)
                self.store.put_generations(self.model_id, [(k, c) for (k, _), c in zip(chunk, made)])
                fresh.update((k, c) for (k, _), c in zip(chunk, made))
                if self.on_generated:
                    self.on_generated(len(chunk))
        finally:
            self.store.release([k for k, _ in pending], self.owner)
        return fresh

    def close(self) -> None:
        self.engine.close()

"""A bounded LRU cache of the keys and values of token sequences a model has run (the hf engine's prefix cache)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, each (heads, tokens, head_dim)


class PrefixCache:
    """Keys and values of token sequences the model has run, so that a prompt extending one encodes only the rest.

    A token's keys and values depend only on the tokens before it and its position in its own sequence (padding
    does not count), so they can be reused in any later batch: the next step of a search re-sends its prefix.
    Least recently used entries are dropped once the stored tensors pass `max_bytes` (0 disables the cache).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self.lengths: Counter[int] = Counter()  # how many entries have each length

    def __contains__(self, ids: tuple[int, ...]) -> bool:
        return ids in self.entries

    def longest_prefix(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """The longest stored sequence that `ids` starts with: its length and its keys and values."""
        for n in sorted((n for n in self.lengths if n <= len(ids)), reverse=True):
            key = tuple(ids[:n])
            if key in self.entries:
                self.entries.move_to_end(key)
                return n, self.entries[key]
        return 0, None

    def add(self, ids: tuple[int, ...], kv: KV) -> None:
        size = _nbytes(kv)
        if ids in self.entries or size > self.max_bytes:
            return
        self.entries[ids] = kv
        self.lengths[len(ids)] += 1
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            old, old_kv = self.entries.popitem(last=False)
            self.lengths[len(old)] -= 1
            if not self.lengths[len(old)]:
                del self.lengths[len(old)]
            self.nbytes -= _nbytes(old_kv)

    def clear(self) -> None:
        self.entries.clear()
        self.lengths.clear()
        self.nbytes = 0


def _nbytes(kv: KV) -> int:
    return sum(k.nbytes + v.nbytes for k, v in kv)

"""The prompt-encoding cache: the text encoder's output for a batch of token ids, reused (per process, LRU).

The key is the whole batch of padded token ids (with the device and dtype): a hit returns exactly the
tensors the encoder gave for those ids, so the pixels are the same with and without the cache (a per-row
cache would encode rows in other batch shapes, whose matrix kernels may differ in the last bit). With
one pipeline call per image (the backend's batch_invariant default) a batch is [prompt, ""], so a
prompt made again (any seed) skips the encoder. The weights are taken as frozen: a pipeline whose
encoder is trained in place must call `clear()`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import torch

Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class PromptCache:
    def __init__(self, max_items: int = 128):
        self.max_items = max(0, max_items)
        self._items: OrderedDict[Hashable, Encoded] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(t.numel() * t.element_size() for entry in self._items.values() for t in entry)

    def get(self, key: Hashable) -> Encoded | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
            return found

    def put(self, key: Hashable, encoded: Encoded) -> None:
        if not self.max_items:
            return
        with self._lock:
            self._items[key] = tuple(t.detach() for t in encoded)  # type: ignore[assignment]
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

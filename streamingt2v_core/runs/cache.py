"""The in-memory fast path in front of the run store: finished chunks by (scope, digest), LRU by bytes."""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch

__all__ = ["ChunkCache"]


class ChunkCache:
    """Finished chunks (uint8 ``[n, H, W, 3]``) in memory, least recently used dropped past ``max_bytes``.

    Keys are ``(scope, digest)``: the scope is the run folder (or "" without a store), so every
    run folder holds every chunk its video uses, and a run named anew really samples anew.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._mem: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.stores = 0

    def get(self, scope: str, digest: str) -> torch.Tensor | None:
        with self._lock:
            frames = self._mem.get((scope, digest))
            if frames is not None:
                self._mem.move_to_end((scope, digest))
                self.hits += 1
            return frames

    def put(self, scope: str, digest: str, frames: torch.Tensor) -> None:
        frames = frames.detach().to("cpu", torch.uint8)
        key = (scope, digest)
        with self._lock:
            self.stores += 1
            if key in self._mem:
                self._mem.move_to_end(key)
                return
            self._mem[key] = frames
            self._bytes += frames.numel()
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._bytes -= old.numel()

    def __len__(self) -> int:
        return len(self._mem)

    @property
    def bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0

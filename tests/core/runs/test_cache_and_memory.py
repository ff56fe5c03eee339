"""The in-memory fast path and the RAM estimates."""
from __future__ import annotations

import sys

import torch

from streamingt2v_core.runs import ChunkCache
from streamingt2v_core.runs.memory import (available_ram_bytes, fits_in_ram, float_video_bytes, format_bytes,
                                           release_free_memory)


def test_cache_is_an_lru_bounded_by_bytes_and_scoped_by_run():
    chunk = torch.zeros(8, 4, 4, 3, dtype=torch.uint8)
    cache = ChunkCache(max_bytes=3 * chunk.numel())
    for i in range(5):
        cache.put("run-a", f"d{i}", chunk + i)
    assert len(cache) == 3 and cache.bytes == 3 * chunk.numel()
    assert cache.get("run-a", "d0") is None and torch.equal(cache.get("run-a", "d4"), chunk + 4)
    assert cache.get("run-b", "d4") is None  # another run folder samples (and stores) its own chunks


def test_float_video_estimate_and_fit():
    assert float_video_bytes(2000, 256, 256) == 2000 * 256 * 256 * 3 * 4
    assert fits_in_ram(10, available=100) and not fits_in_ram(90, available=100)
    assert fits_in_ram(10**15, available=0)  # unknown: not refused
    assert available_ram_bytes() > 0
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3.0 GiB"


def test_free_heap_pages_go_back_to_the_os_on_linux():
    assert release_free_memory() is sys.platform.startswith("linux")

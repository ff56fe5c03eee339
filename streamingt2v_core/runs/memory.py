"""RAM estimates for whole-video outputs, checked before any work starts.

A ComfyUI IMAGE is float32 ``[T, H, W, 3]``: 1200 frames at 256x256 are 0.9 GiB, 20000 frames are
15 GiB. The nodes compare what an output needs with the memory the OS says is available and
refuse early, naming the input, instead of running for an hour and dying at the end.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["float_video_bytes", "uint8_video_bytes", "available_ram_bytes", "fits_in_ram", "format_bytes",
           "release_free_memory"]

#: Fraction of the available memory an output may take (the rest is for the model, the host, the OS).
DEFAULT_HEADROOM = 0.8


def float_video_bytes(frames: int, height: int, width: int, channels: int = 3) -> int:
    """Bytes of a float32 IMAGE ``[frames, height, width, channels]``."""
    return int(frames) * int(height) * int(width) * int(channels) * 4


def uint8_video_bytes(frames: int, height: int, width: int, channels: int = 3) -> int:
    return int(frames) * int(height) * int(width) * int(channels)


def available_ram_bytes() -> int:
    """Memory available to new allocations (psutil when installed, else /proc/meminfo; 0 if unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fits_in_ram(needed: int, available: int | None = None, headroom: float = DEFAULT_HEADROOM) -> bool:
    """True when ``needed`` bytes fit in ``headroom`` of the available memory (or it is unknown)."""
    available = available_ram_bytes() if available is None else available
    return available <= 0 or needed <= headroom * available


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


_malloc_trim = None


def release_free_memory() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``); False where there is no such call.

    A long extension interleaves long-lived chunk frames with large short-lived float buffers; glibc
    then keeps the freed buffers' pages mapped between the live chunks, and RSS grows by hundreds of
    MiB beyond what is alive (bench/bench_run_memory.py measured 490 MiB over 1000 frames at
    256x256). Trimming after each chunk keeps RSS at the live memory.
    """
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = False
        if sys.platform.startswith("linux"):
            try:
                _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):
                pass
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True

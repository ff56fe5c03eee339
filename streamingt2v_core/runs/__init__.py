"""The persistent, verified run store of long extensions (plain Python + PyTorch, no ComfyUI).

:mod:`.store` (run folders, chunk files, verification), :mod:`.manifest` (the JSON manifest),
:mod:`.files` (atomic writes, file locks), :mod:`.chunkfile` (one chunk file and its metadata),
:mod:`.rebuild` (a lost manifest rebuilt from the chunk files), :mod:`.timelines` (the videos of a
run, by id), :mod:`.names` (run names and
``<run>@<timeline>`` references), :mod:`.cache` (the in-memory fast path),
:mod:`.memory` (RAM estimates), :mod:`.errors` (what can go wrong, naming run and chunk).
"""
from .cache import ChunkCache
from .errors import (ChunkCorruptError, ChunkError, ChunkFailedError, ChunkWriteError, ManifestDamagedError,
                     RunFolderError, RunStoreError)
from .manifest import FORMAT, VERSION, ChunkRecord, Manifest, Timeline
from .names import RESERVED_NAMES, split_ref, timeline_id
from .store import Run, RunInfo, RunStore, auto_run_name, chunk_file_name, slugify, validate_run_name, video_frames

__all__ = [
    "ChunkCache",
    "ChunkCorruptError",
    "ChunkError",
    "ChunkFailedError",
    "ChunkWriteError",
    "ManifestDamagedError",
    "RunFolderError",
    "RunStoreError",
    "FORMAT",
    "VERSION",
    "ChunkRecord",
    "Manifest",
    "Timeline",
    "Run",
    "RunInfo",
    "RunStore",
    "auto_run_name",
    "chunk_file_name",
    "slugify",
    "validate_run_name",
    "video_frames",
    "RESERVED_NAMES",
    "split_ref",
    "timeline_id",
]

"""Errors of the run store, each naming the run (and the chunk) it is about.

Callers catch them by kind: a :class:`RunFolderError` is a folder we must not touch (foreign,
older or newer format, another run's name) and stops before any work; a :class:`ChunkCorruptError`
is a stored chunk that failed verification (it was moved aside and must be made again); a
:class:`ChunkWriteError` is a chunk that could not be written (disk full, read-only), whose frames
the caller still holds; a :class:`ChunkFailedError` is chunk ``k`` that could not be made at all.
"""
from __future__ import annotations

__all__ = [
    "RunStoreError",
    "RunFolderError",
    "ManifestDamagedError",
    "ChunkError",
    "ChunkCorruptError",
    "ChunkWriteError",
    "ChunkFailedError",
]


class RunStoreError(RuntimeError):
    """Anything the run store refuses or cannot do; ``run`` is the run's name (or folder)."""

    def __init__(self, run: str, message: str) -> None:
        super().__init__(message)
        self.run = run


class RunFolderError(RunStoreError):
    """A run folder that is not ours to use: foreign, another format version, another run's name."""


class ManifestDamagedError(RunFolderError):
    """``manifest.json`` is missing, not JSON or has malformed fields (but is not another program's or
    another version's): the run can be rebuilt from its verified chunk files, when it has some."""


class ChunkError(RunStoreError):
    """Something about chunk ``index`` of run ``run``; ``reason`` is the short cause."""

    def __init__(self, run: str, index: int, reason: str, message: str | None = None) -> None:
        super().__init__(run, message or f"run {run!r}, chunk {index}: {reason}")
        self.index = index
        self.reason = reason


class ChunkCorruptError(ChunkError):
    """A stored chunk failed verification (missing, truncated, altered, wrong shape); ``moved_to``
    is where its file was put aside (None when there was no file)."""

    def __init__(self, run: str, index: int, reason: str, moved_to: str | None = None) -> None:
        where = f"; its file was moved aside to {moved_to}" if moved_to else ""
        super().__init__(run, index, reason, f"run {run!r}, chunk {index}: stored chunk failed verification "
                                             f"({reason}){where}")
        self.moved_to = moved_to


class ChunkWriteError(ChunkError):
    """Chunk ``index`` could not be written to the store (``errno`` from the OS when known)."""

    def __init__(self, run: str, index: int, reason: str, errno: int | None = None) -> None:
        super().__init__(run, index, reason, f"run {run!r}, chunk {index}: could not be written to the run "
                                             f"store ({reason})")
        self.errno = errno


class ChunkFailedError(ChunkError, ValueError):
    """Chunk ``index`` could not be made (e.g. the sampler returned NaN or the wrong shape).

    Also a ``ValueError``: it is bad output, and the extension loop's callers catch it as such.
    ``run`` may be empty when the loop runs without a store.
    """

    def __init__(self, index: int, reason: str, run: str = "") -> None:
        prefix = f"run {run!r}, " if run else ""
        ChunkError.__init__(self, run, index, reason, f"{prefix}chunk {index} failed: {reason}")

    def in_run(self, run: str) -> "ChunkFailedError":
        """The same failure, naming ``run``."""
        return ChunkFailedError(self.index, self.reason, run)

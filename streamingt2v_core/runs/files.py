"""Crash- and concurrency-safe file operations of the run store.

* :func:`write_atomic`: write a temp file in the same folder, flush + fsync it, ``os.replace`` it
  over the target and fsync the folder; a reader sees the old file or the new one, never half of
  one, even after a crash or a power cut.
* :func:`locked`: an OS file lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on a lock file
  in the run folder, held around every read-modify-write of the manifest, so two processes (two
  ComfyUI servers on one network share) never lose each other's updates.
* :func:`move_aside`: a file that failed verification is renamed, never deleted.

The low-level writes go through :func:`_open_new`, :func:`_write_all` and :func:`_open_lock`, so tests
can simulate a full disk (``ENOSPC``) or a read-only one (``EROFS``/``EACCES``) by replacing them.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["LOCK_NAME", "write_atomic", "temp_path_for", "commit_temp", "fsync_dir", "locked", "move_aside"]

#: The lock file in every run folder (empty; only its lock matters).
LOCK_NAME = ".lock"

_counter = 0
_counter_lock = threading.Lock()


def _unique() -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    return f"{os.getpid()}-{threading.get_ident() % 100000}-{n}"


def temp_path_for(path: str, suffix: str = ".tmp") -> str:
    """A fresh temp name next to ``path`` (same folder, so the final rename is atomic)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{_unique()}{suffix}")


def _open_new(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)


def _open_lock(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_temp(temp: str, path: str) -> None:
    """Move a finished, fsynced temp file over ``path`` and fsync the folder."""
    os.replace(temp, path)
    fsync_dir(os.path.dirname(path) or ".")


def write_atomic(path: str, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder).

    On any error the temp file (ours, incomplete) is removed and the error re-raised; ``path``
    is then untouched.
    """
    temp = temp_path_for(path)
    fd = _open_new(temp)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        commit_temp(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


@contextlib.contextmanager
def locked(folder: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the exclusive OS lock of ``folder`` (its ``.lock`` file) for the ``with`` block.

    Works across processes and across threads of one process (each call opens its own
    descriptor). Raises ``TimeoutError`` if the lock cannot be had within ``timeout_s``.
    """
    fd = _open_lock(os.path.join(folder, LOCK_NAME))
    try:
        _acquire(fd, timeout_s, folder)
        try:
            yield
        finally:
            _release(fd)
    finally:
        os.close(fd)


try:  # POSIX
    import fcntl

    def _acquire(fd: int, timeout_s: float, folder: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the lock of {folder} was held by another process for more than "
                                       f"{timeout_s:.0f} s") from None
                time.sleep(0.01)

    def _release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _acquire(fd: int, timeout_s: float, folder: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the lock of {folder} was held by another process for more than "
                                       f"{timeout_s:.0f} s") from None
                time.sleep(0.01)

    def _release(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def move_aside(path: str, tag: str = "corrupt") -> str:
    """Rename ``path`` to ``<path>.<tag>-<UTC time>[-n]`` (never overwriting) and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.{tag}-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.{tag}-{stamp}-{n}"
    os.replace(path, target)
    fsync_dir(os.path.dirname(path) or ".")
    return target

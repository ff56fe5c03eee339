"""A cheap look at a file: is it one of our checkpoint formats? (for file lists such as the Model Loader's).

Only the index of a file is read, never its tensors:

* ``.safetensors`` (any name): the JSON header, whose length is the file's first 8 bytes;
* PyTorch zip checkpoints (what ``torch.save`` writes since PyTorch 1.6): only the pickled index ``data.pkl`` of
  the zip, with an unpickler that imports and calls nothing (every class and function it names becomes an inert
  stub, tensors become empty placeholders, storages are never opened). ``torch.load(mmap=True)`` would do too, but
  it rebuilds every tensor view: ~0.5 s for a 1,500-tensor checkpoint against a few ms here.

Everything else (legacy pre-zip pickles, which can only be read whole, and any other file) is "not checked" and
counts as not ours. Answers are cached by (path, size, modification time), so listing a folder again re-reads only
the files that changed.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .detection import classify

__all__ = ["ScanResult", "scan_checkpoint", "clear_scan_cache", "SAFETENSORS_MAX_HEADER"]

#: The safetensors format's own limit on the header size.
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

_cache: dict[tuple[str, int, int], "ScanResult"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ScanResult:
    """``format``: one of our formats, or None; ``description``: what the file looks like (for messages)."""

    format: str | None
    description: str

    @property
    def ours(self) -> bool:
        return self.format is not None


def _safetensors_index(path: Path) -> tuple[list[str], dict[str, str]] | None:
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            return None
        (length,) = struct.unpack("<Q", head)
        if not 1 < length <= SAFETENSORS_MAX_HEADER:
            return None
        first = handle.read(1)
        if first != b"{":
            return None
        header = json.loads(first + handle.read(length - 1))
    if not isinstance(header, dict):
        return None
    metadata = header.pop("__metadata__", None) or {}
    return list(header), {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


class _Stub:
    """Whatever a pickled index names besides dicts: accepts any construction and state, runs nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass


class _TensorStub(_Stub):
    pass


class _IndexUnpickler(pickle.Unpickler):
    """Reads a ``data.pkl`` index without importing or calling anything the pickle names."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name.startswith("_rebuild"):
            return _TensorStub
        return _Stub

    def persistent_load(self, pid: object) -> None:
        return None  # a storage reference: never opened


def _torch_zip_index(path: Path) -> list[str] | None:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if not names:
            return None
        with archive.open(min(names, key=len)) as handle:
            obj = _IndexUnpickler(handle).load()
    state = obj.get("state_dict") if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    if not isinstance(state, dict):
        return None
    return [k for k, v in state.items() if isinstance(k, str) and isinstance(v, _TensorStub)]


def _scan_uncached(path: Path) -> ScanResult:
    try:
        index = _safetensors_index(path)
        if index is None and zipfile.is_zipfile(path):
            keys = _torch_zip_index(path)
            index = (keys, {}) if keys else None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        return ScanResult(None, f"unreadable as a checkpoint ({str(error).splitlines()[0][:200]})")
    if index is None:
        return ScanResult(None, "not a safetensors or PyTorch zip checkpoint")
    keys, metadata = index
    fmt, description = classify(keys, metadata)
    return ScanResult(fmt, description)


def scan_checkpoint(path: str | os.PathLike) -> ScanResult:
    """Whether ``path`` holds one of our formats, from its index only (cached by path, size and mtime)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        return ScanResult(None, f"cannot be read ({error.strerror or error})")
    if not path.is_file():
        return ScanResult(None, "not a file")
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    result = _scan_uncached(path)
    with _lock:
        _cache[key] = result
    return result


def clear_scan_cache() -> None:
    """Forget every cached answer (tests, benchmarks)."""
    with _lock:
        _cache.clear()

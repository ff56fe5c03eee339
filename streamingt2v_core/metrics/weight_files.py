"""Which weight files in a folder the metric nodes can use, told from their tensor names only.

The metric nodes' dropdowns list only files that can work: a full open_clip ViT checkpoint (image
and text towers) for the CLIP score, a torchvision RAFT-large state dict for MAWE. Deciding that
must stay cheap however large the files are, so only the names of the tensors are read:

* ``.safetensors``: the JSON header (its length is the file's first 8 bytes); no tensor is read.
* torch zip checkpoints (``.pt``/``.pth``/``.bin``/``.ckpt``, the format ``torch.save`` writes
  since PyTorch 1.6): ``torch.load(weights_only=True, mmap=True)`` unpickles the small
  ``data.pkl`` index and maps the tensor data without reading it; pickled objects other than
  tensors and plain containers are refused by ``weights_only``.

Anything else (legacy pickles, unreadable files) is "not usable". Answers are cached by
(path, size, modification time), so a dropdown refresh re-reads only files that changed.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from typing import Callable

__all__ = [
    "tensor_names",
    "is_open_clip_checkpoint",
    "is_raft_large_state_dict",
    "usable_files",
    "clear_cache",
]

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit on the header size
TORCH_ZIP_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model")

_cache: dict[tuple, bool] = {}
_lock = threading.Lock()


def _safetensors_names(path: str) -> list[str] | None:
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            return None
        (length,) = struct.unpack("<Q", head)
        if length <= 0 or length > SAFETENSORS_MAX_HEADER:
            return None
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        return None
    return [k for k in header if k != "__metadata__"]


def _torch_zip_names(path: str) -> list[str] | None:
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        return None  # a legacy (pre-1.6) pickle: mmap cannot read it, and reading it is not cheap
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for wrapper in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        return None
    return [k for k in state if isinstance(k, str)]


def tensor_names(path: str | os.PathLike) -> list[str] | None:
    """The tensor names of a weight file, read without reading the tensors; None when the file is
    not a safetensors or torch zip checkpoint (or cannot be read)."""
    path = os.fspath(path)
    try:
        if path.endswith((".safetensors", ".sft")):
            names = _safetensors_names(path)
        elif path.endswith(TORCH_ZIP_SUFFIXES):
            names = _torch_zip_names(path)
        else:
            return None
    except Exception:  # noqa: BLE001 - unreadable or foreign: simply not usable
        return None
    if names and all(n.startswith("module.") for n in names):
        names = [n[len("module."):] for n in names]
    return names


def is_open_clip_checkpoint(names: list[str]) -> bool:
    """A full open_clip (or OpenAI CLIP) ViT checkpoint: a ViT image tower *and* a text tower.

    A text-encoder-only file (the SD2 text encoder the host's text_encoders folder holds) or a
    vision-only CLIP-vision file cannot compute a text-image score.
    """
    keys = set(names)
    vision = "visual.conv1.weight" in keys and "visual.positional_embedding" in keys
    text = ("token_embedding.weight" in keys or "text.token_embedding.weight" in keys)
    projection = "text_projection" in keys or "text.text_projection" in keys
    return vision and text and projection


def _raft_large_keys() -> frozenset[str]:
    global _RAFT_KEYS
    if _RAFT_KEYS is None:
        from torchvision.models.optical_flow import raft_large

        _RAFT_KEYS = frozenset(raft_large(weights=None, progress=False).state_dict())
    return _RAFT_KEYS


_RAFT_KEYS: frozenset[str] | None = None


def is_raft_large_state_dict(names: list[str]) -> bool:
    """Exactly the tensor names of torchvision's ``raft_large`` (RAFT-small and other flow
    networks have other names)."""
    return set(names) == _raft_large_keys()


def _usable(path: str, test: Callable[[list[str]], bool]) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (path, stat.st_size, stat.st_mtime_ns, test.__name__)
    with _lock:
        if key in _cache:
            return _cache[key]
    names = tensor_names(path)
    usable = bool(names) and test(names)
    with _lock:
        _cache[key] = usable
    return usable


def usable_files(candidates: list[tuple[str, str]], test: Callable[[list[str]], bool]) -> list[str]:
    """The names among ``(name, full path)`` pairs whose tensor names pass ``test``, in order."""
    return [name for name, path in candidates if _usable(path, test)]


def clear_cache() -> None:
    with _lock:
        _cache.clear()

"""One chunk file: safetensors (never pickle) holding uint8 frames ``[n, H, W, 3]`` and, in its metadata,
everything a lost or damaged manifest needs to be rebuilt from the chunk files alone (see :mod:`.rebuild`).

The metadata is one JSON entry with sorted keys and only values that follow from the chunk's digest (its index,
parent, frame range, seed, prompt, settings; for chunk 0 the run's identity and base), never times or writers:
the same chunk must give the same bytes in every process and every run folder (content addressing, concurrent
writers, hashes compared across runs). ``frames_sha256`` (of the raw frame bytes) lets a rebuild verify a file
that no manifest describes any more.
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .manifest import FORMAT

__all__ = ["TENSOR_KEY", "META_KEY", "CHUNK_FILE_RE", "chunk_file_name", "encode_chunk", "decode_chunk",
           "chunk_metadata", "frames_sha256", "sha256"]

TENSOR_KEY = "frames"
META_KEY = "streamingt2v"
#: ``chunk_<index>_<digest[:16]>.safetensors``
CHUNK_FILE_RE = re.compile(r"^chunk_(\d{5,})_([0-9a-z]{1,16})\.safetensors$")
_MAX_HEADER = 1 << 20


def chunk_file_name(index: int, digest: str) -> str:
    return f"chunk_{index:05d}_{digest[:16]}.safetensors"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frames_sha256(frames: torch.Tensor) -> str:
    """SHA-256 of the raw bytes of uint8 frames (C order)."""
    return hashlib.sha256(frames.detach().to("cpu").contiguous().numpy().tobytes()).hexdigest()


def encode_chunk(frames: torch.Tensor, index: int, digest: str, meta: dict[str, Any] | None = None) -> bytes:
    """The safetensors bytes of a chunk (uint8 ``[n, H, W, 3]``), with its index, digest, the hash of its frames
    and ``meta`` (JSON values that follow from the digest) as metadata."""
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"chunk {index}: expected uint8 frames [n, H, W, C], got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    frames = frames.detach().to("cpu").contiguous()
    # One metadata entry: safetensors writes several in a random order (see the module docstring).
    entry = {**(meta or {}), "format": FORMAT, "index": index, "digest": digest,
             "frames_sha256": frames_sha256(frames)}
    return st_save({TENSOR_KEY: frames}, metadata={META_KEY: json.dumps(entry, sort_keys=True)})


def decode_chunk(data: bytes) -> torch.Tensor:
    tensors = st_load(data)
    if set(tensors) != {TENSOR_KEY}:
        raise ValueError(f"expected one tensor {TENSOR_KEY!r}, found {sorted(tensors)}")
    return tensors[TENSOR_KEY]


def chunk_metadata(data: bytes) -> dict[str, Any] | None:
    """The run-store metadata of a chunk file's bytes (its header only), or None when it has none (not a
    safetensors file, or not one of ours)."""
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or len(data) < 8 + n:
        return None
    try:
        header = json.loads(data[8:8 + n])
        meta = json.loads(header["__metadata__"][META_KEY])
    except (ValueError, KeyError, TypeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def read_header(path: str) -> dict[str, Any] | None:
    """:func:`chunk_metadata` of the file at ``path``, reading its header only (None when unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                return None
            return chunk_metadata(head + f.read(n))
    except OSError:
        return None

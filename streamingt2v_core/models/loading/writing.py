"""Conversion and writing: our converted safetensors, streamed one tensor at a time."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .kinds import KINDS, check_kind, config_class
from .plans import inspect_checkpoint, mapped_shape
from .records import DTYPE_TO_SAFETENSORS, FORMAT_VERSION, CheckpointInfo, parse_dtype
from .strict import iter_state, strict_check

__all__ = ["SafetensorsStreamWriter", "save_converted", "convert_checkpoint"]


class SafetensorsStreamWriter:
    """Write a safetensors file tensor by tensor.

    The header (names, dtypes, shapes, offsets) is written first from ``specs``; :meth:`write` then appends each
    tensor's bytes in the same order, so the caller never holds more than one tensor. The result is an ordinary
    safetensors file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        specs: list[tuple[str, tuple[int, ...], torch.dtype]],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._order: list[tuple[str, tuple[int, ...], torch.dtype, int]] = []
        for name, shape, dtype in specs:
            if dtype not in DTYPE_TO_SAFETENSORS:
                raise ValueError(f"specs: tensor {name!r} has unsupported dtype {dtype}")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {
                "dtype": DTYPE_TO_SAFETENSORS[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            self._order.append((name, tuple(shape), dtype, nbytes))
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        self._path = Path(path)
        self._tmp = self._path.with_name(self._path.name + ".partial")
        self._file = open(self._tmp, "wb")
        self._file.write(struct.pack("<Q", len(encoded)))
        self._file.write(encoded)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._order):
            raise ValueError(f"name: all tensors already written, got {name!r}")
        expected_name, shape, dtype, nbytes = self._order[self._next]
        if name != expected_name or tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ValueError(
                f"tensor: expected {expected_name} {list(shape)} {dtype}, got {name} {list(tensor.shape)} "
                f"{tensor.dtype}"
            )
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        if data.numel() != nbytes:
            raise AssertionError("byte count mismatch")
        if nbytes:
            self._file.write(memoryview(data.numpy()))
        self._next += 1

    def close(self) -> None:
        if self._file.closed:
            return
        complete = self._next == len(self._order)
        self._file.close()
        if not complete:
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"only {self._next} of {len(self._order)} tensors were written; file discarded")
        os.replace(self._tmp, self._path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "SafetensorsStreamWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _converted_metadata(kind: str, config: Any) -> dict[str, str]:
    return {
        "streamingt2v_kind": kind,
        "streamingt2v_config": json.dumps(config.to_dict(), sort_keys=True),
        "format_version": FORMAT_VERSION,
    }


def save_converted(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    kind: str,
    config: Any,
    path: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Save our module's weights as safetensors with the metadata :func:`load_model` reads back.

    Args:
        model_or_state: our module, or its ``state_dict()`` (our key names).
        kind: one of :data:`KINDS`.
        config: the module's config (stored as JSON).
        path: output ``.safetensors`` path.
        dtype: convert floating tensors to this dtype (None keeps each tensor's dtype).
    """
    check_kind(kind)
    if kind is None:
        raise ValueError("kind: expected one of " + ", ".join(KINDS))
    if not isinstance(config, config_class(kind)):
        expected = config_class(kind).__name__
        raise ValueError(f"config: expected a {expected} for kind={kind}, got {type(config).__name__}")
    target = parse_dtype(dtype)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state

    def out_dtype(t: torch.Tensor) -> torch.dtype:
        return target if (target is not None and t.is_floating_point()) else t.dtype

    names = sorted(state)
    specs = [(k, tuple(state[k].shape), out_dtype(state[k])) for k in names]
    with SafetensorsStreamWriter(path, specs, _converted_metadata(kind, config)) as writer:
        for k in names:
            writer.write(k, state[k].to(out_dtype(state[k])))
    return Path(path)


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
    kind: str | None = None,
) -> CheckpointInfo:
    """Convert any supported checkpoint into our safetensors (strict key check first; streams tensor by tensor).

    Only the parts the pack needs are read; the source stays memory-mapped (``.ckpt``/``.pth``) or is read one
    tensor at a time (safetensors), and only one converted tensor is in memory at a time.
    """
    target = parse_dtype(dtype)
    source, plan, info = inspect_checkpoint(src, kind)
    try:
        if Path(dst).resolve() == Path(info.path).resolve():
            raise ValueError("dst: must differ from the source file")
        strict_check(plan, source, info.path)
        names = sorted(plan.entries)

        def out_dtype(key: str) -> torch.dtype:
            dt = source.dtype(plan.entries[key][0])
            return target if (target is not None and dt.is_floating_point) else dt

        specs = [(k, mapped_shape(source, *plan.entries[k]), out_dtype(k)) for k in names]
        with SafetensorsStreamWriter(dst, specs, _converted_metadata(plan.kind, plan.config)) as writer:
            for key, tensor in iter_state(plan, source, target):
                writer.write(key, tensor)
                del tensor
    finally:
        source.close()
    return info

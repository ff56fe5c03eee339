"""Strict loading: the file's keys and shapes must be exactly our module's; then the module gets the tensors."""

from __future__ import annotations

import logging
import os
from typing import Iterator

import torch
from torch import nn

from .kinds import build_model
from .plans import LoadPlan, inspect_checkpoint, mapped_shape
from .records import CheckpointError, CheckpointInfo, LoadedModel, parse_dtype
from .sources import TensorSource

__all__ = ["strict_check", "iter_state", "load_state_dict", "load_model"]

logger = logging.getLogger(__name__)


def strict_check(plan: LoadPlan, source: TensorSource, path: str, meta_model: nn.Module | None = None) -> nn.Module:
    """Compare the file's keys and shapes with our module's; returns the meta-device module it built."""
    if meta_model is None:
        meta_model = build_model(plan.kind, plan.config, device="meta")
    expected = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    missing = [plan.to_file_key(k) for k in sorted(set(expected) - set(plan.entries))]
    unexpected = sorted(plan.unexpected) + sorted(plan.entries[k][0] for k in set(plan.entries) - set(expected))
    mismatched = []
    for key in sorted(set(expected) & set(plan.entries)):
        file_key, transform = plan.entries[key]
        shape = mapped_shape(source, file_key, transform)
        if shape != expected[key]:
            mismatched.append(f"{file_key}: file {list(source.shape(file_key))}, expected {list(expected[key])}")
    if missing or unexpected or mismatched:
        lines = [
            f"{path}: detected format {plan.format} (kind {plan.kind}, config {plan.config_source}), "
            f"but its keys do not match: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} with a wrong shape"
        ]
        if missing:
            lines.append("first missing keys: " + ", ".join(missing[:8]))
        if unexpected:
            lines.append("first unexpected keys: " + ", ".join(unexpected[:8]))
        if mismatched:
            lines.append("first shape mismatches: " + "; ".join(mismatched[:5]))
        raise CheckpointError("\n".join(lines), format=plan.format, missing=missing, unexpected=unexpected)
    return meta_model


def iter_state(plan: LoadPlan, source: TensorSource, dtype: torch.dtype | None) -> Iterator[tuple[str, torch.Tensor]]:
    """Our (key, tensor) pairs, read and converted one tensor at a time."""
    for key in sorted(plan.entries):
        file_key, transform = plan.entries[key]
        tensor = source.get(file_key)
        if transform is not None:
            tensor = transform(tensor)
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        yield key, tensor


def _file_dtype(plan: LoadPlan, source: TensorSource) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for file_key, _ in plan.entries.values():
        dt = source.dtype(file_key)
        if dt.is_floating_point:
            counts[dt] = counts.get(dt, 0) + 1
    return max(counts, key=counts.get) if counts else torch.float32  # type: ignore[arg-type]


def _load_checked(
    path: str | os.PathLike, kind: str | None, dtype: torch.dtype | str | None
) -> tuple[dict[str, torch.Tensor], CheckpointInfo, nn.Module]:
    dtype = parse_dtype(dtype)
    source, plan, info = inspect_checkpoint(path, kind)
    try:
        meta_model = strict_check(plan, source, info.path)
        target = dtype or _file_dtype(plan, source)
        return dict(iter_state(plan, source, target)), info, meta_model
    finally:
        source.close()


def load_state_dict(
    path: str | os.PathLike, kind: str | None = None, dtype: torch.dtype | str | None = None
) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The strictly checked state dict of our module (our key names), and the file's :class:`CheckpointInfo`.

    Tensors from a zip ``.ckpt``/``.pth`` stay memory-mapped when no dtype conversion is needed.
    """
    state, info, _ = _load_checked(path, kind, dtype)
    return state, info


def load_model(
    path: str | os.PathLike,
    kind: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """Load a checkpoint of any supported format into our module.

    Args:
        path: checkpoint file or diffusers folder.
        kind: ``"base_unet3d"``, ``"extender"``, ``"refiner_unet"`` or None (take what the file holds).
        dtype: weight dtype (``torch.float16``, ``"bf16"``...); None keeps the file's dtype.
        device: where the module ends up.

    The module is built on the meta device and receives the file's tensors directly (``assign=True``), so no
    random initialisation runs and no second copy of the weights exists. Skipped parts (encoders, optimizer
    states) are counted in ``skipped_parts`` and never read.

    Raises:
        CheckpointError: wrong, truncated or foreign file, kind mismatch, or keys/shapes that do not match.
    """
    state, info, model = _load_checked(path, kind, dtype)
    for note in info.assumptions:
        logger.warning("StreamingT2V: %s: %s", info.path, note)
    if info.foreign_objects:
        logger.warning("StreamingT2V: %s: holds Python objects outside its weights (%s); read as inert stand-ins, "
                       "nothing of them was run", info.path, ", ".join(info.foreign_objects))
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        # A module with non-persistent buffers cannot be filled from a state dict alone: build it for real.
        model = build_model(info.kind, info.config)
        model.load_state_dict(state, strict=True)
        floating = [t.dtype for t in state.values() if t.is_floating_point()]
        if floating:
            model.to(floating[0])
    del state
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        kind=info.kind,
        format=info.format,
        config=info.config,
        model=model,
        skipped_parts=dict(info.skipped_parts),
        info=info,
    )

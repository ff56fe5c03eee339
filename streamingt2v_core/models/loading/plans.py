"""Load plans: for each key of our module, which file tensor it is read from and how it is reshaped.

:func:`inspect_checkpoint` opens a file, detects its format, resolves the kind, infers the config and builds the
plan; :func:`detect_checkpoint_format` returns only what it found (no tensor data read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import RefinerUNetConfig, UNet3DConfig
from ..key_maps import (
    OFFICIAL_EXTENDER_PARTS,
    OFFICIAL_SKIPPED_PARTS,
    REPACK_PREFIX_TO_OFFICIAL,
    REPACK_SKIPPED_PARTS,
    UNetKeyMap,
    official_to_repack_key,
)
from .detection import EXPECTED_FOR_KIND, LDM_FORMATS, classify, pick_ldm_format, resolve_kind
from .inference import (
    find_diffusers_config,
    infer_extender_config,
    infer_unet_config,
    infer_unet_fields,
    ldm_layout_from_keys,
    read_diffusers_config,
)
from .kinds import KINDS, check_kind, config_class
from .records import FORMAT_VERSION, CheckpointError, CheckpointInfo, PartInfo
from .sources import TensorSource, open_source, resolve_file

__all__ = ["Transform", "LoadPlan", "build_plan", "mapped_shape", "inspect_checkpoint", "detect_checkpoint_format"]


Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LoadPlan:
    format: str
    kind: str
    config: Any
    config_source: str
    # our key -> (file key, reshape applied to the file tensor or None)
    entries: dict[str, tuple[str, Transform | None]]
    parts: dict[str, PartInfo]
    skipped_parts: dict[str, int]
    unexpected: list[str]
    to_file_key: Callable[[str], str]  # our key -> its name in the file (for "missing" messages)
    assumptions: list[str] = field(default_factory=list)  # hidden settings that were assumed (sentences)
    config_file: str | None = None  # a config file read beside the weights


def _part_of_our_key(kind: str, key: str) -> str:
    if kind == "extender":
        prefix = key.split(".", 1)[0] + "."
        return OFFICIAL_EXTENDER_PARTS.get(prefix, prefix.rstrip("."))
    return "unet"


def build_plan(source: TensorSource, fmt: str, kind: str, path: Path | None = None) -> LoadPlan:
    """How each key of our ``kind`` module is read from ``source`` in format ``fmt`` (``path``: the weights file,
    to find a diffusers config.json beside it)."""
    keys = source.keys()
    assumptions: list[str] = []
    config_file: str | None = None
    entries: dict[str, tuple[str, Transform | None]] = {}
    skipped: dict[str, int] = {}
    unexpected: list[str] = []
    to_file_key: Callable[[str], str] = lambda k: k

    def skip(part: str) -> None:
        skipped[part] = skipped.get(part, 0) + 1

    if fmt == "official_streaming_t2v_ckpt":
        for key in keys:
            prefix = key.split(".", 1)[0] + "."
            if prefix in OFFICIAL_EXTENDER_PARTS:
                entries[key] = (key, None)
            elif prefix in OFFICIAL_SKIPPED_PARTS:
                skip(OFFICIAL_SKIPPED_PARTS[prefix])
            else:
                unexpected.append(key)
        config, config_source = infer_extender_config({k: source.shape(k) for k in entries})
    elif fmt == "community_repack":
        for key in keys:
            prefix = key.split(".", 1)[0] + "."
            if prefix in REPACK_PREFIX_TO_OFFICIAL:
                entries[REPACK_PREFIX_TO_OFFICIAL[prefix] + key[len(prefix):]] = (key, None)
            elif prefix in REPACK_SKIPPED_PARTS:
                skip(REPACK_SKIPPED_PARTS[prefix])
            else:
                unexpected.append(key)
        to_file_key = official_to_repack_key
        config, config_source = infer_extender_config({k: source.shape(v[0]) for k, v in entries.items()})
    elif fmt == "diffusers_unet3d":
        strip = "unet." if all(k.startswith("unet.") for k in keys) else ""
        for key in keys:
            entries[key[len(strip):]] = (key, None)
        to_file_key = lambda k, s=strip: s + k
        cls = RefinerUNetConfig if kind == "refiner_unet" else UNet3DConfig
        shapes = {k: source.shape(v[0]) for k, v in entries.items()}
        # diffusers keeps the group count (and eps) in config.json only; its transformer_in always has 8 heads, so
        # the head size is in the shapes. Without the config the groups are an assumption, and said so.
        known: dict[str, Any] = {}
        found = find_diffusers_config(path) if path is not None else None
        if found is not None:
            known = read_diffusers_config(found, infer_unet_fields(shapes))
            config_file = str(found)
        config, config_source, assumptions = infer_unet_config(
            shapes, cls, known, hidden=("norm_num_groups",), report_preset=True
        )
        if found is not None:
            config_source = f"{found.name} beside the weights"
    elif fmt in LDM_FORMATS:
        key_map = UNetKeyMap(ldm_layout_from_keys(keys))
        for key in keys:
            try:
                ours = key_map.ldm_to_diffusers_key(key)
            except KeyError:
                unexpected.append(key)
                continue
            transform: Transform | None = None
            if key_map.is_conv1d_projection_ldm(key):
                transform = lambda t, k=key, m=key_map: m.ldm_to_diffusers_tensor(k, t)
            entries[ours] = (key, transform)
        to_file_key = key_map.diffusers_to_ldm_key
        shapes = {ours: mapped_shape(source, f, t) for ours, (f, t) in entries.items()}
        # The original ModelScope code hard-codes GroupNorm(32, ...) everywhere; the head size follows from
        # transformer_in's head count, a constructor argument (8 in both published models).
        cls = RefinerUNetConfig if fmt == "ms_vid2vid_xl" else UNet3DConfig
        config, config_source, assumptions = infer_unet_config(
            shapes, cls, _original_code_settings(shapes),
            hidden=("attention_head_dim",), report_preset=False,
        )
    elif fmt == "converted_safetensors":
        meta_kind = source.metadata.get("streamingt2v_kind", "")
        version = source.metadata.get("format_version", "")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"converted file has format_version={version!r}; this version of the pack reads {FORMAT_VERSION!r}",
                format=fmt,
            )
        if meta_kind not in KINDS:
            raise CheckpointError(f"converted file has unknown streamingt2v_kind={meta_kind!r}", format=fmt)
        try:
            config = config_class(meta_kind).from_dict(json.loads(source.metadata.get("streamingt2v_config", "")))
        except (ValueError, TypeError) as error:
            message = f"converted file has an unreadable streamingt2v_config: {error}"
            raise CheckpointError(message, format=fmt) from error
        config_source = "metadata"
        for key in keys:
            entries[key] = (key, None)
    else:
        raise AssertionError(fmt)

    parts: dict[str, PartInfo] = {}
    for ours, (file_key, _) in entries.items():
        parts.setdefault(_part_of_our_key(kind, ours), PartInfo()).add(source.shape(file_key), source.dtype(file_key))
    for name, count in source.extras.items():
        if count:
            skipped["optimizer" if name == "optimizer_states" else name] = count
    return LoadPlan(fmt, kind, config, config_source, entries, parts, skipped, unexpected, to_file_key, assumptions,
                    config_file)


def _original_code_settings(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Settings the original ModelScope code fixes: ``GroupNorm(32, ...)`` everywhere. Widths it could not have
    built (not multiples of 32: only this pack's own tiny test files) fix nothing."""
    widths = infer_unet_fields(dict(shapes))["block_out_channels"]
    return {"norm_num_groups": 32} if all(c % 32 == 0 for c in widths) else {}


def mapped_shape(source: TensorSource, file_key: str, transform: Transform | None) -> tuple[int, ...]:
    shape = source.shape(file_key)
    if transform is None:
        return shape
    return tuple(transform(torch.empty(shape, device="meta")).shape)


def inspect_checkpoint(path: str | os.PathLike, kind: str | None) -> tuple[TensorSource, LoadPlan, CheckpointInfo]:
    check_kind(kind)
    file = resolve_file(Path(path))
    source = open_source(file)
    try:
        keys = source.keys()
        fmt, description = classify(keys, source.metadata)
        if fmt is None:
            expected = EXPECTED_FOR_KIND[kind] if kind else "one of: " + "; ".join(EXPECTED_FOR_KIND.values())
            raise CheckpointError(f"{file}: this looks like {description}; expected {expected}", format=description)
        ldm_note = None
        if fmt in LDM_FORMATS:
            fmt, ldm_note = pick_ldm_format(kind, source.state_dict_location, file)
            description = {
                "ms_vid2vid_xl": "the MS-Vid2Vid-XL UNet (original ModelScope naming with temopral_conv, "
                "non_ema_0035000.pth)",
                "modelscope_t2v": "the original ModelScope text-to-video UNet (text2video_pytorch_model.pth)",
            }[fmt]
        resolved = resolve_kind(fmt, kind, source.metadata, file, description)
        try:
            plan = build_plan(source, fmt, resolved, file)
            if ldm_note:
                plan.assumptions.insert(0, ldm_note)
        except CheckpointError as error:
            raise CheckpointError(
                f"{file} (detected format {fmt}): {error}",
                format=fmt,
                missing=error.missing,
                unexpected=error.unexpected,
            ) from error
    except BaseException:
        source.close()
        raise
    info = CheckpointInfo(
        path=str(file),
        format=fmt,
        container=source.container,
        kind=resolved,
        parts=plan.parts,
        skipped_parts=dict(plan.skipped_parts),
        config=plan.config,
        config_source=plan.config_source,
        metadata=dict(source.metadata),
        unexpected=list(plan.unexpected),
        assumptions=list(plan.assumptions),
        foreign_objects=list(source.foreign_objects),
        config_file=plan.config_file,
    )
    return source, plan, info


def detect_checkpoint_format(path: str | os.PathLike, kind: str | None = None) -> CheckpointInfo:
    """Identify a checkpoint file (or diffusers folder) without reading tensor data.

    Args:
        path: the file (``.ckpt``, ``.pth``, ``.bin``, ``.safetensors``) or a diffusers folder.
        kind: if given, the kind the caller needs; a file of another kind raises :class:`CheckpointError`.

    Returns:
        :class:`CheckpointInfo` with format, container, kind, parts (tensor/parameter counts and dtypes), skipped
        parts and the config (from metadata or inferred from shapes).

    Raises:
        CheckpointError: not a checkpoint, truncated, or not one of our formats (the message says what it looks
        like and what was expected).
    """
    source, _, info = inspect_checkpoint(path, kind)
    source.close()
    return info

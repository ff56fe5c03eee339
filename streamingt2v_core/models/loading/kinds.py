"""What a checkpoint can hold for us (the kinds), their configs and our module for each."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config import ExtenderConfig, RefinerUNetConfig, UNet3DConfig

__all__ = ["KINDS", "config_class", "check_kind", "default_config", "build_model"]


#: What a checkpoint can hold for us.
KINDS = ("base_unet3d", "extender", "refiner_unet")


def config_class(kind: str) -> type:
    return {"base_unet3d": UNet3DConfig, "extender": ExtenderConfig, "refiner_unet": RefinerUNetConfig}[kind]


def check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS} or None, got {kind!r}")


def default_config(kind: str, preset: str = "full") -> Any:
    """The ``full`` or ``tiny`` config of a kind."""
    check_kind(kind)
    if kind is None:
        raise ValueError("kind: expected one of " + ", ".join(KINDS))
    if preset not in ("full", "tiny"):
        raise ValueError(f"preset: expected 'full' or 'tiny', got {preset!r}")
    return getattr(config_class(kind), preset)()


def build_model(kind: str, config: Any, device: torch.device | str | None = None) -> nn.Module:
    """Our module for a kind (randomly initialised; on ``device``, e.g. ``"meta"`` to count without memory)."""
    check_kind(kind)
    if kind == "extender":
        from ..extender import StreamingT2VExtender

        factory: Callable[[Any], nn.Module] = StreamingT2VExtender
    else:
        from ..unet3d import UNet3D

        factory = UNet3D
    if device is None:
        return factory(config)
    with torch.device(device):
        return factory(config)

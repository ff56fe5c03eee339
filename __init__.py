"""StreamingT2V for ComfyUI: long text-to-video (CAM/APM extension, randomized-blend refinement, metrics).

ComfyUI imports this file from `custom_nodes/`. It registers the pack's nodes through the host's
`comfy_api.latest` extension API (`comfy_entrypoint`) and serves `js/` as the pack's web extension.
"""
from __future__ import annotations

import os
import sys

WEB_DIRECTORY = "./js"
MIN_HOST_VERSION = (0, 3, 60)

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
# The core library is imported by its absolute name everywhere (tests, CLI and nodes share one
# copy of each class). A user who copied the pack into custom_nodes without `pip install -e`
# still has it importable through this path entry.
if _PACK_DIR not in sys.path:
    sys.path.insert(0, _PACK_DIR)


class HostNotSupported(ImportError):
    """Raised with a one-line instruction when the host is missing or too old."""


def _check_host() -> None:
    try:
        from comfy_api.latest import ComfyExtension, io  # noqa: F401
    except ImportError as exc:  # not inside ComfyUI, or a ComfyUI without the v3 node API
        raise HostNotSupported(
            "StreamingT2V needs ComfyUI >= 0.3.60 (comfy_api.latest); install the pack into "
            "ComfyUI's custom_nodes/ folder and update ComfyUI"
        ) from exc
    try:
        from comfyui_version import __version__ as host_version
    except ImportError:
        return  # packaged hosts without the version file: the API check above is what matters
    parts = tuple(int(p) for p in host_version.split(".")[:3] if p.isdigit())
    if parts and parts < MIN_HOST_VERSION:
        raise HostNotSupported(
            f"StreamingT2V needs ComfyUI >= {'.'.join(map(str, MIN_HOST_VERSION))}, found {host_version}: update ComfyUI"
        )


async def comfy_entrypoint():
    _check_host()
    from .nodes import StreamingT2VExtension

    return StreamingT2VExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]

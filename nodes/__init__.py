"""ComfyUI nodes of the pack: one module per pipeline stage, each exporting `NODES`.

The nodes are thin: they validate inputs, adapt host types to `streamingt2v_core` calls and
report progress. Registration happens here, in one place.
"""
from __future__ import annotations

import importlib

from comfy_api.latest import ComfyExtension, io

# One module per stage; each exports NODES: list[type[io.ComfyNode]].
NODE_MODULES: list[str] = [
    "loader",
    "initial_chunk",
    "extend",
    "extend_video_model",
    "runs",
    "plan",
    "metrics",
    "metrics_drift",
    "context_blend",
    "refine",
]


def node_classes() -> list[type[io.ComfyNode]]:
    classes: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        classes.extend(module.NODES)
    return classes


class StreamingT2VExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_classes()

"""Test-side names for the in-process host (implemented in scripts/comfy_host.py, shared with the demo)."""
from __future__ import annotations

import gc
import importlib
import sys

from scripts.comfy_host import (  # noqa: F401
    WORKFLOWS_DIR,
    Host,
    PromptExecutionError,
    PromptValidationError,
    boot_host,
    host_dir,
)
from scripts.workflow_format import validate_workflow, workflow_to_api  # noqa: F401

# The pack's own caches of loaded models (nodes/*.py module attributes, keyed by file): released with the host's.
_PACK_MODEL_CACHES = {"metrics": ("_RAFT_CACHE", "_CLIP_CACHE"), "extend": ("_EMBEDS_CACHE",)}


def booted_host() -> Host | None:
    """The host this process booted, or None (never boots one: a core-only run stays host-free)."""
    module = sys.modules.get("scripts.comfy_host")
    return getattr(module, "_HOST", None) if module is not None else None


def pack_module(host: Host, name: str):
    """A module of this pack as the host imported it (custom_nodes/<pack>/nodes/<name>.py)."""
    package = host.node_class("StreamingT2VExtend").__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{name}")


def release_host_models(host: Host, final: bool = False) -> int:
    """Drop what the host holds between test modules; return how many ModelPatchers are still alive.

    The executor's output cache (the last prompt's outputs: loaded checkpoints, CLIP vision encoders), the model
    manager's loaded models, the pack's own model caches and the host's file-list cache. `final` (end of the
    session) also detaches the ModelPatchers that test modules still reference, while the host's modules are alive.
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    host.executor.reset()
    for name, attributes in _PACK_MODEL_CACHES.items():
        try:
            module = pack_module(host, name)
        except (ImportError, KeyError):
            continue
        for attribute in attributes:
            cache = getattr(module, attribute, None)
            if cache is not None:
                cache.clear()
    mm.unload_all_models()
    gc.collect()
    mm.cleanup_models()
    mm.soft_empty_cache()
    host.folder_paths.filename_list_cache.clear()
    alive = [o for o in gc.get_objects() if issubclass(type(o), comfy.model_patcher.ModelPatcher)]
    if final:
        for patcher in alive:
            try:
                patcher.unpin_all_weights()
                patcher.detach(unpatch_all=False)
            except Exception:  # noqa: BLE001 - best effort at exit; the run's result is already decided
                continue
            # Detached now, while the host is alive; a test module's global may still hold it until shutdown, when
            # its own __del__ would detach again with the host's modules half torn down.
            patcher.__class__ = _detached_class(type(patcher))
    return len(alive)


_DETACHED: dict[type, type] = {}


def _detached_class(cls: type) -> type:
    if cls not in _DETACHED:
        _DETACHED[cls] = type(f"Detached{cls.__name__}", (cls,), {"__del__": lambda self: None})
    return _DETACHED[cls]

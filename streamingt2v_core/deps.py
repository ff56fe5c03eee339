"""Optional dependencies, imported when first needed, with a one-line message when missing.

The core's heavy or optional libraries (scenedetect, OpenCV, PyAV, open_clip) are imported inside
the functions that use them, through `require`, so a missing one costs only the feature that
needs it and says what to install instead of failing with a stack trace at import time.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (pip package, what needs it)
KNOWN = {
    "scenedetect": ("scenedetect", "the SCuts metric"),
    "cv2": ("opencv-python-headless", "optical flow (MAWE) and scene detection"),
    "av": ("av", "reading and writing video files"),
    "open_clip": ("open_clip_torch", "the CLIP score metric"),
    "torchvision": ("torchvision", "RAFT optical flow"),
}


class MissingDependency(ImportError):
    """An optional library is not installed; the message is one line saying what to install."""


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import `module` or raise MissingDependency naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, default_purpose = KNOWN.get(module.split(".")[0], (module.split(".")[0], "this feature"))
        raise MissingDependency(
            f"{purpose or default_purpose} needs the Python package '{package}': pip install {package}"
        ) from exc

"""Reading PyTorch pickles safely: ``torch.load(weights_only=True)`` only, never arbitrary code.

A PyTorch checkpoint is a pickle, and a pickle can name any Python function to call while it is read. PyTorch's
``weights_only=True`` allows only tensors and plain containers; everything else is refused. Two kinds of refused
objects occur in real files:

* **bookkeeping next to the weights**: a Lightning checkpoint keeps its hyper-parameters or callback states as
  ordinary Python objects (``argparse.Namespace``, a jsonargparse ``Namespace``, ``pathlib`` paths ...). We never
  need them. Each such class is replaced by an inert stand-in that stores its arguments and runs none of the
  original code, and the replacement is *reported* (:attr:`SafeLoadResult.foreign_objects`), never silent.
* **anything that could run code**: a global from a module such as ``os``, ``subprocess``, ``builtins`` (``eval``,
  ``exec``), ``sys`` or ``socket`` has no business in a weights file. Such a file is refused with
  :class:`UnsafeCheckpointError`, naming the global.

Our messages never repeat PyTorch's advice to retry with ``weights_only=False`` (that would run the pickle's code):
:func:`describe_load_failure` turns any ``torch.load`` error into one sentence that says what was refused, that it
was refused for safety, and which file format to use instead.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = [
    "SAFE_FORMAT_ADVICE",
    "UnsafeCheckpointError",
    "SafeLoadResult",
    "load_weights_only",
    "refused_globals",
    "describe_load_failure",
]

#: What to use instead of a pickle that cannot be read safely.
SAFE_FORMAT_ADVICE = (
    "use a .safetensors file instead (for this pack's UNets: `python -m streamingt2v_core convert IN OUT --dtype "
    "fp16` writes one from any checkpoint it can read safely)"
)

#: Modules whose globals can run code or touch the system: a weights file that names one is refused, not loaded.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket", "importlib", "runpy",
    "code", "codeop", "pty", "ctypes", "multiprocessing", "signal", "webbrowser", "pickle", "marshal", "types",
    "operator", "functools", "inspect", "io", "tempfile", "urllib", "http", "requests", "asyncio", "threading",
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A pickle that names a global which could run code; ``globals`` lists them (``module.name``)."""

    def __init__(self, message: str, refused: Iterable[str]) -> None:
        super().__init__(message)
        self.globals = list(refused)


@dataclass
class SafeLoadResult:
    """What :func:`load_weights_only` read: the unpickled object and the foreign classes it stood in for."""

    obj: Any
    foreign_objects: list[str] = field(default_factory=list)


class _InertGlobal:
    """Stand-in for a class a checkpoint references outside its tensors (e.g. Lightning hyper-parameters held as
    a jsonargparse Namespace). It accepts any construction and state and runs no code of the original class."""

    streamingt2v_stand_in_for = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # for dict subclasses rebuilt with SETITEMS
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # for list subclasses rebuilt with APPENDS
        self.__dict__.setdefault("list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("list", []).extend(values)


def _is_dangerous(name: str) -> bool:
    module = name.rsplit(".", 1)[0] if "." in name else name
    root = module.split(".", 1)[0]
    return root in _DANGEROUS_MODULES


def refused_globals(path: str | Path) -> list[str]:
    """The globals (``module.name``) a PyTorch zip or legacy pickle names beyond what ``weights_only`` allows."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - a legacy pickle or an unreadable file: fall back to the error text
        return []


def _names_in_error(error: BaseException) -> list[str]:
    text = str(error)
    found = re.findall(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    return list(dict.fromkeys(found))


def load_weights_only(path: str | Path, mmap: bool) -> SafeLoadResult:
    """``torch.load(weights_only=True)``; classes outside torch's allow-list become inert, reported stand-ins.

    Raises:
        UnsafeCheckpointError: the pickle names a global that could run code (``os.system``, ``builtins.eval`` ...).
        Exception: whatever ``torch.load`` raises for a truncated or corrupt file (see :func:`describe_load_failure`).
    """
    try:
        return SafeLoadResult(torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap))
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():
            raise
        names = refused_globals(path) or _names_in_error(error)
        dangerous = [n for n in names if _is_dangerous(n)]
        if dangerous or not names:
            shown = ", ".join(dangerous or _names_in_error(error)) or "an object outside tensors and containers"
            raise UnsafeCheckpointError(
                f"refused for safety: the file's pickle names {shown}, which could run code while the file is read "
                f"(a weights file never needs it); nothing from it was run. {SAFE_FORMAT_ADVICE}",
                dangerous,
            ) from None
        # A Lightning checkpoint may carry hyper-parameters or callback states as arbitrary objects. We never need
        # them: replace each such class by an inert stand-in (never importing or running the original) and report it.
        stand_ins = [
            (type(name.rsplit(".", 1)[-1], (_InertGlobal,), {"streamingt2v_stand_in_for": name}), name)
            for name in names
        ]
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        return SafeLoadResult(obj, sorted(names))


def describe_load_failure(error: BaseException) -> str:
    """One sentence for a failed safe ``torch.load``: what was refused and why, or the actual read error.

    PyTorch's own text advises re-running with ``weights_only=False``; that advice is never passed on.
    """
    if isinstance(error, UnsafeCheckpointError):
        return str(error)
    text = " ".join(str(error).split())
    names = _names_in_error(error)
    if isinstance(error, pickle.UnpicklingError) and ("weights only" in text.lower() or names):
        shown = ", ".join(names) or "an object that is not a tensor or a plain container"
        return (f"refused for safety: the file's pickle names {shown}, which a safe (weights_only) read does not "
                f"allow; nothing from it was run. {SAFE_FORMAT_ADVICE}")
    # Other errors (truncated zip, bad magic number ...): keep the first sentence, drop any advice paragraph.
    for marker in (" This file can still be loaded", " In PyTorch 2.6", " Re-running `torch.load`", ". This is"):
        text = text.split(marker)[0]
    return text[:300] or type(error).__name__

"""Reading PyTorch pickles safely: ``torch.load(weights_only=True)`` only, never arbitrary code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = ["load_weights_only"]


class _InertGlobal:
    """Stand-in for a class a checkpoint references outside its tensors (e.g. Lightning hyper-parameters held as
    a jsonargparse Namespace). It accepts any construction and state and runs no code of the original class."""

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


def load_weights_only(path: Path, mmap: bool) -> Any:
    """``torch.load(weights_only=True)``; pickled globals outside torch's allow-list become :class:`_InertGlobal`."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():
            raise
        # A Lightning checkpoint may carry hyper-parameters or callback states as arbitrary objects. We never need
        # them: replace each such global by an inert stand-in (never importing or running the original).
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        stand_ins = [(type(name.rsplit(".", 1)[-1], (_InertGlobal,), {}), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)

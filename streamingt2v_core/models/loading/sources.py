"""File sources: uniform read access to the state dict inside a safetensors or PyTorch file.

Listing keys, shapes and dtypes reads no tensor data: safetensors through ``safe_open`` slices, PyTorch zip files
memory-mapped (``torch.load(weights_only=True, mmap=True)``, see :mod:`.safe_pickle`), so tensors a load never
touches (optimizer moments, encoders) are never read from disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Mapping

import torch

from .records import SAFETENSORS_DTYPES, CheckpointError
from .safe_pickle import SAFE_FORMAT_ADVICE, UnsafeCheckpointError, describe_load_failure, load_weights_only

__all__ = [
    "TensorSource",
    "SafetensorsSource",
    "TorchSource",
    "check_safetensors_header",
    "DIFFUSERS_WEIGHT_NAMES",
    "resolve_file",
    "open_source",
]


class TensorSource:
    """Uniform read access to the state dict inside a file. Listing keys, shapes and dtypes reads no tensor data."""

    container: str = ""
    metadata: dict[str, str]
    # Top-level entries of a torch checkpoint other than the state dict: name -> number of tensors inside.
    extras: dict[str, int]
    # Where the state dict sits in a torch file ("top level" or "state_dict"); "" for safetensors.
    state_dict_location: str = ""
    # Foreign classes read as inert stand-ins (torch files only), see TorchSource.
    foreign_objects: list[str] = []

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SafetensorsSource(TensorSource):
    container = "safetensors"

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        check_safetensors_header(path)
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self._keys = list(self._file.keys())
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(
                f"{path}: not a readable safetensors file (truncated or corrupt?): {error}", format="safetensors"
            ) from error
        self.metadata = dict(self._file.metadata() or {})
        self.extras = {}
        self._slices: dict[str, Any] = {}

    def _slice(self, key: str) -> Any:
        if key not in self._slices:
            self._slices[key] = self._file.get_slice(key)
        return self._slices[key]

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype:
        name = self._slice(key).get_dtype()
        if name not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {key!r} has unsupported dtype {name}")
        return SAFETENSORS_DTYPES[name]

    def get(self, key: str) -> torch.Tensor:
        return self._file.get_tensor(key)

    def close(self) -> None:
        self._slices.clear()
        self._file = None


def check_safetensors_header(path: Path) -> None:
    """Reject a truncated safetensors file with a clear message before safetensors' own (terser) error."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)", format="safetensors")
        (header_len,) = struct.unpack("<Q", head)
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: header needs {header_len} bytes, file has {size}",
                format="safetensors",
            )
        try:
            header = json.loads(f.read(header_len))
        except ValueError as error:
            raise CheckpointError(f"{path}: corrupt safetensors header: {error}", format="safetensors") from error
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file: tensor data needs {8 + header_len + end} bytes, file has {size}",
            format="safetensors",
        )


def _count_tensors(obj: Any, _depth: int = 0) -> int:
    """Number of tensors inside a nested container (touches no tensor data)."""
    if isinstance(obj, torch.Tensor):
        return 1
    if _depth > 20:
        return 0
    if isinstance(obj, Mapping):
        return sum(_count_tensors(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v, _depth + 1) for v in obj)
    return 0


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _stand_ins_in(state: Mapping[Any, Any]) -> list[str]:
    """Names of the foreign classes (inert stand-ins) found among a state dict's values."""
    names = {getattr(v, "streamingt2v_stand_in_for", "") for v in state.values() if not isinstance(v, torch.Tensor)}
    return sorted(n for n in names if n)


class TorchSource(TensorSource):
    def __init__(self, path: Path, zip_container: bool) -> None:
        self.container = "torch_zip" if zip_container else "torch_legacy"
        try:
            result = load_weights_only(path, mmap=zip_container)
        except CheckpointError:
            raise
        except UnsafeCheckpointError as error:
            raise CheckpointError(f"{path}: {error}", format=self.container) from None
        except Exception as error:
            full_text = " ".join(str(error).split())
            text = describe_load_failure(error)
            truncated_signs = ("central directory", "failed reading zip archive", "EOF", "truncated")
            if any(sign in full_text for sign in truncated_signs) or isinstance(error, EOFError):
                raise CheckpointError(
                    f"{path}: truncated or corrupt PyTorch checkpoint: the file ends early ({text})",
                    format=self.container,
                ) from error
            if zip_container and ("data.pkl" in full_text or "not in a subdirectory" in full_text):
                raise CheckpointError(
                    f"{path}: not a checkpoint: a zip archive without a PyTorch pickle (data.pkl) in it",
                    format=self.container,
                ) from error
            raise CheckpointError(
                f"{path}: could not read this PyTorch checkpoint safely (weights_only): {text}",
                format=self.container,
            ) from error
        obj = result.obj
        #: Classes outside tensors and plain containers that were read as inert stand-ins (never run), e.g. a
        #: Lightning checkpoint's hyper-parameters; reported by inspect and the Model Loader.
        self.foreign_objects = list(result.foreign_objects)
        self.metadata = {}
        self.extras = {}
        if _is_tensor_dict(obj):
            self._state: Mapping[str, torch.Tensor] = obj
            self.state_dict_location = "top level"
        elif isinstance(obj, Mapping) and _is_tensor_dict(obj.get("state_dict")):
            self._state = obj["state_dict"]
            self.state_dict_location = "state_dict"
            for name, value in obj.items():
                if name != "state_dict":
                    self.extras[str(name)] = _count_tensors(value)
        else:
            state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
            intruders = _stand_ins_in(state) if isinstance(state, Mapping) else []
            if intruders:
                raise CheckpointError(
                    f"{path}: refused for safety: its state dict holds objects of class {', '.join(intruders)} where "
                    f"tensors belong (read as inert stand-ins, never run); {SAFE_FORMAT_ADVICE}",
                    format=self.container,
                )
            what = type(obj).__name__
            if isinstance(obj, Mapping):
                what += f" with keys {sorted(map(str, obj))[:8]}"
            raise CheckpointError(
                f"{path}: a PyTorch file, but it holds no state dict of tensors (found {what})", format=self.container
            )

    def keys(self) -> list[str]:
        return list(self._state.keys())

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._state[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._state[key]

    def close(self) -> None:
        self._state = {}


DIFFUSERS_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)


def resolve_file(path: Path) -> Path:
    """A diffusers folder (the pipeline's or its ``unet/``) resolves to its weights file."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        for folder in (path, path / "unet"):
            for name in DIFFUSERS_WEIGHT_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(
            f"{path}: a folder without {DIFFUSERS_WEIGHT_NAMES[0]} (or .bin) in it or in unet/; "
            "give the checkpoint file itself"
        )
    return path


def open_source(path: Path) -> TensorSource:
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return TorchSource(path, zip_container=True)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and header_len > 1:
            return SafetensorsSource(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return TorchSource(path, zip_container=False)  # legacy (pre-zip) torch.save / plain pickle
    raise CheckpointError(
        f"{path}: not a checkpoint: neither a safetensors file nor a PyTorch (zip or legacy pickle) file "
        f"(first bytes {head[:8]!r})"
    )

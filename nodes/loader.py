"""StreamingT2V Model Loader: one of our UNets from a file, as a host MODEL.

Files live in ``models/streamingt2v/`` (a model folder this module registers with the host; ``extra_model_paths.yaml``
may add more under the name ``streamingt2v``) or in the host's ``models/diffusion_models/``. The core loader
(``streamingt2v_core.models.loading``) detects the format (official ``streaming_t2v.ckpt``, the community repack,
a diffusers ModelScope UNet, MS-Vid2Vid-XL ``non_ema_0035000.pth``, our converted safetensors) and checks keys
strictly; :mod:`.comfy_model` makes the result a host model.
"""
from __future__ import annotations

import logging
import os

import torch

import comfy.model_management
import folder_paths
from comfy_api.latest import io

from .comfy_model import (
    FP8_DTYPES,
    KIND_BASE_UNET3D,
    KIND_EXTENDER,
    KIND_LABELS,
    KIND_REFINER_UNET,
    store_weights_in,
    wrap_core_model,
)
from .validation import check_model_weights

__all__ = ["MODEL_FOLDER", "register_model_folder", "model_file_list", "resolve_model_file", "load_streamingt2v_model",
           "ModelLoaderNode", "NODES"]

logger = logging.getLogger(__name__)

#: The host model-folder name of our UNet files (``models/streamingt2v``).
MODEL_FOLDER = "streamingt2v"
_ALSO_SEARCHED = "diffusion_models"

_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
           "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
_KINDS = ["auto", KIND_BASE_UNET3D, KIND_EXTENDER, KIND_REFINER_UNET]


def register_model_folder() -> None:
    """Register ``models/streamingt2v`` with the host (idempotent; keeps paths from extra_model_paths.yaml)."""
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    entry = folder_paths.folder_names_and_paths.get(MODEL_FOLDER)
    if entry is None:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default], set(folder_paths.supported_pt_extensions))
        return
    paths, exts = entry
    if default not in paths:
        paths.insert(0, default)
    if isinstance(exts, set):
        exts.update(folder_paths.supported_pt_extensions)


register_model_folder()


def model_file_list() -> list[str]:
    """Names shown by the loader: the files of ``models/streamingt2v`` then of ``models/diffusion_models`` whose
    index says they are one of our formats.

    ``diffusion_models`` holds every other video and image model of a real install (Flux, Wan, SDXL ...), which the
    loader can only refuse; they are hidden rather than listed with a mark, so the list is what can be picked. Only
    the file's index is read (safetensors header, PyTorch zip ``data.pkl``), cached by size and modification time
    (:func:`streamingt2v_core.models.loading.scan.scan_checkpoint`). ``python -m streamingt2v_core inspect FILE``
    says why a file is not listed.
    """
    from streamingt2v_core.models.loading.scan import scan_checkpoint

    names: list[str] = []
    seen: set[str] = set()
    for folder in (MODEL_FOLDER, _ALSO_SEARCHED):
        for name in folder_paths.get_filename_list(folder):
            if name in seen:
                continue
            seen.add(name)
            path = folder_paths.get_full_path(folder, name)
            if path is not None and scan_checkpoint(path).ours:
                names.append(name)
    return names


def resolve_model_file(name: str) -> str:
    """Full path of a name from :func:`model_file_list`; ``ValueError`` naming ``model_name`` if absent."""
    path = folder_paths.get_full_path(MODEL_FOLDER, name) or folder_paths.get_full_path(_ALSO_SEARCHED, name)
    if path is None:
        folders = folder_paths.get_folder_paths(MODEL_FOLDER) + folder_paths.get_folder_paths(_ALSO_SEARCHED)
        raise ValueError(f"model_name: {name!r} not found in {folders}")
    return path


def _default_dtype() -> torch.dtype:
    # What the device computes best (fp16/bf16 on GPUs, fp32 on CPUs), honouring --fp16-unet etc.
    return comfy.model_management.unet_dtype(supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])


def load_streamingt2v_model(path: str, kind: str | None = None, dtype: torch.dtype | None = None):
    """Load one of our checkpoints as a host MODEL; returns ``(model_patcher, loaded)``.

    ``kind`` None detects it; a given kind that does not match the file raises ``ValueError``. ``dtype`` fp8
    (e4m3fn / e5m2) stores the Linear/Conv weights in fp8 and computes in what the host picks for fp8 weights on the
    load device (``unet_manual_cast``: fp16/bf16 on GPUs, fp32 on CPUs), as its UNETLoader does.
    """
    from streamingt2v_core.models.loading import load_model

    if dtype is None:
        dtype = _default_dtype()
    compute_dtype = None
    if dtype in FP8_DTYPES:
        compute_dtype = comfy.model_management.unet_manual_cast(
            dtype, comfy.model_management.get_torch_device(), [torch.float16, torch.bfloat16, torch.float32])
    loaded = load_model(path, kind=kind, dtype=compute_dtype or dtype, device="cpu")
    if kind is not None and loaded.kind != kind:
        raise ValueError(
            f"kind: the file is a {KIND_LABELS.get(loaded.kind, loaded.kind)} ({loaded.format}), not a "
            f"{KIND_LABELS[kind]}"
        )
    if compute_dtype is not None:
        store_weights_in(loaded.model, dtype)
    model = wrap_core_model(loaded.model, loaded.kind, loaded.config, compute_dtype=compute_dtype)
    stat = os.stat(path)
    # What the extender's chunk cache keys on (instead of hashing gigabytes of weights).
    model.model.streamingt2v_source = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, str(dtype), loaded.kind)
    return model, loaded


class ModelLoaderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VModelLoader",
            display_name="StreamingT2V Model Loader",
            category="StreamingT2V/loaders",
            description=(
                "Loads a StreamingT2V UNet (extender, ModelScope text-to-video UNet3D or MS-Vid2Vid-XL refiner UNet) "
                "from models/streamingt2v or models/diffusion_models as a MODEL; the file format is detected."
            ),
            inputs=[
                io.Combo.Input("model_name", options=model_file_list(),
                               tooltip="Checkpoint in models/streamingt2v (or models/diffusion_models): "
                                       "streaming_t2v.ckpt or its repack, the ModelScope T2V UNet "
                                       "(diffusion_pytorch_model.safetensors or the original "
                                       "text2video_pytorch_model.pth), MS-Vid2Vid-XL non_ema_0035000.pth, or a "
                                       "converted .safetensors. Only files whose header shows one of these formats "
                                       "are listed (`python -m streamingt2v_core inspect FILE` tells why a file "
                                       "is not)."),
                io.Combo.Input("weight_dtype", options=list(_DTYPES), default="default",
                               tooltip="Weight and compute dtype; default picks what the device runs best "
                                       "(fp16/bf16 on GPUs, fp32 on CPUs). fp8_e4m3fn / fp8_e5m2 store the "
                                       "Linear/Conv weights in 8 bits (half of fp16's weight memory: refiner "
                                       "1.4 GB, extender 2.1 GB) and compute in fp16/bf16 (fp32 on CPUs), as "
                                       "the host's Load Diffusion Model does; outputs differ from fp16 by the "
                                       "weights' rounding (e4m3fn: 3 mantissa bits, e5m2: 2)."),
                io.Combo.Input("kind", options=_KINDS, default="auto",
                               tooltip="auto detects the model from its keys; pick a kind to refuse any other file."),
            ],
            outputs=[
                io.Model.Output(display_name="model",
                                tooltip="The UNet as a host MODEL (host samplers, LoRA and memory management apply)."),
                io.String.Output("info", display_name="model_info",
                                 tooltip="What was loaded: kind, detected format, config source, dtype, skipped "
                                         "parts, and any setting that was assumed."),
            ],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str = "default", kind: str = "auto") -> io.NodeOutput:
        if weight_dtype not in _DTYPES:
            raise ValueError(f"weight_dtype: expected one of {list(_DTYPES)}, got {weight_dtype!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
        path = resolve_model_file(model_name)
        try:
            model, loaded = load_streamingt2v_model(path, None if kind == "auto" else kind, _DTYPES[weight_dtype])
        except ValueError as err:
            raise ValueError(f"model_name: cannot load {model_name!r} as a StreamingT2V model: {err}") from err
        # Once here, not on every call: NaN/inf weights (a damaged file, or values beyond fp16) would make every
        # sample NaN. One float32 sum per tensor (bench/bench_finite_checks.py).
        check_model_weights(model.model.diffusion_model, model_name, model.model_dtype())
        skipped = ", ".join(f"{k} ({v} tensors)" for k, v in (loaded.skipped_parts or {}).items()) or "none"
        info = (f"{KIND_LABELS.get(loaded.kind, loaded.kind)}\nformat: {loaded.format}\n"
                f"dtype: {model.model_dtype()}\nskipped parts: {skipped}")
        details = loaded.info
        if details is not None:
            info += f"\nconfig: {details.config_source}"
            info += "".join(f"\nassumed: {note}" for note in details.assumptions)
            if details.foreign_objects:
                info += (f"\npython objects outside the weights (read as inert stand-ins, never run): "
                         f"{', '.join(details.foreign_objects)}")
        logger.info("StreamingT2V: loaded %s: %s", model_name, info.replace("\n", "; "))
        return io.NodeOutput(model, info)


NODES: list[type[io.ComfyNode]] = [ModelLoaderNode]

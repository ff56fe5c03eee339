"""Checkpoint loading: detect the format of a file, check its keys strictly, build our module with its weights.

Formats read (``CheckpointInfo.format``):

``official_streaming_t2v_ckpt``
    ``streaming_t2v.ckpt``: a Lightning zip pickle ``{"state_dict": {...}, "optimizer_states": [...], ...}`` with
    prefixes ``base_model.`` / ``unet.`` (CAM) / ``resampler.`` (what we load) and ``image_encoder.`` /
    ``text_encoder.`` / ``vae.`` (skipped: ComfyUI's own loaders provide those encoders). Read with
    ``torch.load(weights_only=True, mmap=True)``: no pickled code runs, and tensors we never touch (optimizer
    moments, encoders) are never read from disk, so the 25.6 GB file needs neither 25 GB of RAM nor trust.
``community_repack``
    The VidXTend-style repack (``unet.`` = base model, ``controlnet.`` = CAM, ``resampler.``), safetensors.
``diffusers_unet3d``
    The stock ModelScope text-to-video UNet (``diffusion_pytorch_model.safetensors`` / ``.bin``, or its folder).
``ms_vid2vid_xl``
    The MS-Vid2Vid-XL UNet ``non_ema_0035000.pth`` (raw dict or under ``state_dict``), LDM names mapped by
    :mod:`.key_maps`.
``modelscope_t2v``
    The original ModelScope text-to-video release's UNet, ``text2video_pytorch_model.pth`` (``UNetSD``): the same
    LDM naming and shapes as MS-Vid2Vid-XL (a bare dict where MS-Vid2Vid-XL wraps its weights in ``state_dict``),
    standard resampling and epsilon prediction; mapped onto our UNet3D by the same key map.
``converted_safetensors``
    Our own files (:func:`save_converted`, ``python -m streamingt2v_core convert``) with metadata
    ``streamingt2v_kind``, ``streamingt2v_config`` (JSON) and ``format_version``.

Without metadata the config (full, tiny or other channel sizes) is inferred from tensor shapes, or read from a
diffusers ``config.json`` beside the weights; settings the shapes do not show and nothing fixes are reported as
assumptions (``CheckpointInfo.assumptions``). Every load checks
keys and shapes strictly; a wrong file raises :class:`CheckpointError` naming what the file looks like and what
was expected. Safetensors are read with ``safe_open`` so that only the tensors a part needs are read.

One job per module:

=============== ====================================================================================================
``records``     formats, :class:`CheckpointError`, dtype names, what a load reports (:class:`CheckpointInfo`)
``kinds``       the kinds a checkpoint can hold, their configs and modules (:func:`build_model`)
``safe_pickle`` ``torch.load(weights_only=True)`` and what is said when a pickle is refused
``sources``     file sources: safetensors / memory-mapped PyTorch zip / legacy pickle, diffusers folders
``detection``   which format a key list is, or what foreign checkpoint it looks like
``inference``   configs from tensor shapes
``plans``       how each of our keys is read from the file; :func:`detect_checkpoint_format`
``strict``      the strict key/shape check and :func:`load_model`
``writing``     :class:`SafetensorsStreamWriter`, :func:`save_converted`, :func:`convert_checkpoint`
``scan``        is a file one of our formats? from its index only, cached (the Model Loader's file list)
=============== ====================================================================================================
"""

from .kinds import KINDS, build_model, default_config
from .plans import detect_checkpoint_format
from .records import (
    FORMAT_DESCRIPTIONS,
    FORMAT_VERSION,
    FORMATS,
    CheckpointError,
    CheckpointInfo,
    LoadedModel,
    PartInfo,
    parse_dtype,
)
from .strict import load_model, load_state_dict
from .writing import SafetensorsStreamWriter, convert_checkpoint, save_converted

__all__ = [
    "KINDS",
    "FORMATS",
    "FORMAT_DESCRIPTIONS",
    "FORMAT_VERSION",
    "CheckpointError",
    "PartInfo",
    "CheckpointInfo",
    "LoadedModel",
    "detect_checkpoint_format",
    "load_model",
    "load_state_dict",
    "save_converted",
    "convert_checkpoint",
    "build_model",
    "default_config",
    "parse_dtype",
    "SafetensorsStreamWriter",
]

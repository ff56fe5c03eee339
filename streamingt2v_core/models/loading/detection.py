"""Format detection: which of our formats a key list is, or what foreign checkpoint it looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..key_maps import LDM_TEMPORAL_CONV_NAME
from .records import CheckpointError

__all__ = [
    "FORMAT_KIND",
    "EXTRA_ALLOWED_KINDS",
    "EXPECTED_FOR_KIND",
    "LDM_FORMATS",
    "describe_foreign",
    "classify",
    "pick_ldm_format",
    "resolve_kind",
]

#: The two formats in the original ModelScope (LDM) naming. Their key names and shapes are identical (the
#: text-to-video ``UNetSD`` and the MS-Vid2Vid-XL ``Vid2VidSDUNet`` share the structure; they differ in the
#: resampling and the prediction type), so the file alone cannot always tell them apart: see
#: :func:`pick_ldm_format`.
LDM_FORMATS = ("ms_vid2vid_xl", "modelscope_t2v")


#: Which kind each format holds (diffusers_unet3d may also be read as a refiner when asked: the layout carries no
#: prediction type).
FORMAT_KIND = {
    "official_streaming_t2v_ckpt": "extender",
    "community_repack": "extender",
    "diffusers_unet3d": "base_unet3d",
    "ms_vid2vid_xl": "refiner_unet",
    "modelscope_t2v": "base_unet3d",
}
EXTRA_ALLOWED_KINDS = {"diffusers_unet3d": ("refiner_unet",)}

EXPECTED_FOR_KIND = {
    "extender": "a StreamingT2V extender checkpoint: streaming_t2v.ckpt (state_dict with base_model./unet./"
    "resampler.), the community repack (unet./controlnet./resampler.) or a file converted by this pack",
    "base_unet3d": "the ModelScope text-to-video UNet3D in diffusers layout (diffusion_pytorch_model.safetensors or "
    ".bin: conv_in, down_blocks.*.temp_convs, transformer_in, ...), the original ModelScope release "
    "(text2video_pytorch_model.pth: input_blocks ... temopral_conv) or a file converted by this pack",
    "refiner_unet": "the MS-Vid2Vid-XL UNet (non_ema_0035000.pth: input_blocks, middle_block, output_blocks with "
    "temopral_conv) or a file converted by this pack",
}


def describe_foreign(keys: list[str], metadata: Mapping[str, str]) -> str | None:
    """A short description of a checkpoint we do not load (image models etc.), or None if it looks like ours."""
    keyset = set(keys)

    def any_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    def any_contains(text: str) -> bool:
        return any(text in k for k in keys)

    if any_prefix("model.diffusion_model."):
        if any_prefix("cross_attention_merger_") or any_contains("cross_attention_merger_input_blocks"):
            return "a StreamingSVD checkpoint (main branch, SVD-based), which this pack does not run"
        if any_contains("time_stack") or any_contains("time_mixer"):
            return "a Stable Video Diffusion checkpoint (model.diffusion_model.* with time_stack layers)"
        if any_prefix("model.diffusion_model.label_emb.") or any_prefix("conditioner.embedders.1."):
            return "a 2-D image-model checkpoint: Stable Diffusion XL (model.diffusion_model.* keys with label_emb)"
        if any_prefix("cond_stage_model.model."):
            return "a 2-D image-model checkpoint: Stable Diffusion 2.x (model.diffusion_model.* keys, OpenCLIP text)"
        return "a 2-D image-model checkpoint: Stable Diffusion 1.x-style LDM (model.diffusion_model.* keys)"
    if "conv_in.weight" in keyset and any_prefix("down_blocks.") and not any_contains("temp_convs"):
        if any_prefix("add_embedding."):
            return "a 2-D image model: diffusers UNet2DConditionModel (SDXL-style, no temporal layers)"
        return "a 2-D image model: diffusers UNet2DConditionModel (e.g. Stable Diffusion; no temp_convs/transformer_in)"
    if any_prefix("input_blocks.") and not any_contains(LDM_TEMPORAL_CONV_NAME):
        if any_prefix("label_emb."):
            return "a 2-D image model: an SDXL UNet in LDM naming (input_blocks without temporal layers)"
        return "a 2-D image model: a Stable Diffusion UNet in LDM naming (input_blocks without temporal layers)"
    if any_prefix("encoder.down.") or any_prefix("decoder.up.") or any_prefix("encoder.down_blocks."):
        return "a VAE (autoencoder) checkpoint"
    if any_prefix("text_model.") or any_prefix("transformer.resblocks.") or any_prefix("visual."):
        return "a CLIP text/vision encoder checkpoint"
    return None


def classify(keys: list[str], metadata: Mapping[str, str]) -> tuple[str | None, str]:
    """(format or None, description)."""
    if "streamingt2v_kind" in metadata:
        return "converted_safetensors", f"a file converted by this pack (kind={metadata['streamingt2v_kind']})"
    foreign = describe_foreign(keys, metadata)
    prefixes = {k.split(".", 1)[0] + "." for k in keys}
    if "base_model." in prefixes:
        return "official_streaming_t2v_ckpt", "the official StreamingT2V checkpoint layout (base_model./unet./...)"
    if "controlnet." in prefixes and ("unet." in prefixes or "resampler." in prefixes):
        return "community_repack", "the community repack layout (unet./controlnet./resampler.)"
    if any(k.startswith("input_blocks.") for k in keys) and any(LDM_TEMPORAL_CONV_NAME in k for k in keys):
        return "ms_vid2vid_xl", "a UNet3D in the original ModelScope naming (input_blocks ... temopral_conv)"
    if foreign is None and "conv_in.weight" in keys and any("temp_convs" in k for k in keys):
        return "diffusers_unet3d", "a ModelScope UNet3D in diffusers layout"
    if foreign is None and prefixes == {"unet."} and any("temp_convs" in k for k in keys):
        return "diffusers_unet3d", "a ModelScope UNet3D in diffusers layout under a unet. prefix"
    if foreign is not None:
        return None, foreign
    sample = ", ".join(sorted(keys)[:5])
    return None, f"an unknown checkpoint ({len(keys)} tensors, e.g. {sample})"


def pick_ldm_format(requested_kind: str | None, state_dict_location: str, path: Path) -> tuple[str, str | None]:
    """Which LDM-named UNet a file is: ``(format, assumption or None)``.

    The published files differ in their wrapping: MS-Vid2Vid-XL's ``non_ema_0035000.pth`` holds its weights under
    ``"state_dict"`` (its loader reads ``load_dict['state_dict']``), the text-to-video ``text2video_pytorch_model.pth``
    is a bare state dict (loaded with ``torch.load`` directly). A bare dict is decided by the kind asked for, then
    by the file name; failing both it is taken as the refiner, and that is reported as an assumption.
    """
    if state_dict_location == "state_dict":
        return "ms_vid2vid_xl", None
    if requested_kind == "base_unet3d":
        return "modelscope_t2v", None
    if requested_kind == "refiner_unet":
        return "ms_vid2vid_xl", None
    name = path.name.lower()
    if "vid2vid" in name or "non_ema" in name or "refiner" in name:
        return "ms_vid2vid_xl", None
    if "text2video" in name or "t2v" in name:
        return "modelscope_t2v", None
    return "ms_vid2vid_xl", (
        "read as the MS-Vid2Vid-XL refiner UNet: the original ModelScope naming (input_blocks ... temopral_conv) is "
        "shared by the text-to-video UNet (text2video_pytorch_model.pth) and the refiner; pick kind base_unet3d "
        "(or keep 'text2video' in the file name) for the text-to-video UNet"
    )


def resolve_kind(fmt: str, requested: str | None, metadata: Mapping[str, str], path: Path, description: str) -> str:
    detected = metadata.get("streamingt2v_kind") if fmt == "converted_safetensors" else FORMAT_KIND[fmt]
    if requested is None or requested == detected:
        return detected  # type: ignore[return-value]
    if requested in EXTRA_ALLOWED_KINDS.get(fmt, ()):
        return requested
    raise CheckpointError(
        f"{path}: kind mismatch: kind={requested!r} was asked for ({EXPECTED_FOR_KIND[requested]}), but this file "
        f"is {description} (format {fmt}, which holds kind={detected!r})",
        format=fmt,
    )

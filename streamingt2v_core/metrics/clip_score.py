"""CLIP score: the mean over frames of ``100 * cos(text embedding, frame embedding)`` (paper, Table 1).

The official repository has no code for it; the paper reports the mean per-frame text-image
similarity. We compute it with open_clip from a local checkpoint the user brings (OpenCLIP
ViT-H-14 by default, e.g. ``open_clip_pytorch_model.bin`` of ``laion2b_s32b_b79k``); nothing is
downloaded: the model is built with ``pretrained=None`` semantics and the file is loaded here,
and open_clip's simple tokenizer ships its BPE vocabulary inside the package. Frames are
preprocessed exactly as open_clip's inference transform does (PIL image, bicubic resize of the
shorter side, centre crop, CLIP mean/std), after quantising them to uint8 like a saved video.

No clamping at 0 is applied (some CLIP-score definitions use ``max(100 cos, 0)``); for real
checkpoints and matching prompts the cosine is positive anyway.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .frames import FrameArray, to_uint8_frames

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "OpenClipBundle",
    "ClipScoreResult",
    "supported_architectures",
    "infer_architecture",
    "load_open_clip",
    "clip_score",
]

DEFAULT_ARCHITECTURE = "ViT-H-14"
"""Preferred architecture when several registered configs fit a checkpoint's shapes."""

METADATA_CONFIG_KEY = "open_clip_config"
"""Optional safetensors metadata entry holding the model config as JSON (``model_cfg``)."""


def _is_supported_config(cfg: dict) -> bool:
    text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    # HF text towers and tokenizers, timm vision towers and CoCa would need downloads or extra
    # packages; ResNet towers have no shape signature below. Plain ViT CLIPs remain.
    return not ("hf_model_name" in text or "hf_tokenizer_name" in text
                or "timm_model_name" in vision or "multimodal_cfg" in cfg
                or not isinstance(vision.get("layers"), int))


def supported_architectures() -> list[str]:
    """open_clip's registered architectures this loader can build offline (plain ViT CLIPs)."""
    return list(_supported_architectures())


@functools.lru_cache(maxsize=1)
def _supported_architectures() -> tuple[str, ...]:
    import open_clip

    names = [n for n in open_clip.list_models() if _is_supported_config(open_clip.get_model_config(n))]
    # Put the default first: the node lists them in this order.
    return tuple(sorted(names, key=lambda n: (n != DEFAULT_ARCHITECTURE, n.lower())))


# --------------------------------------------------------------------------------------------
# Reading the checkpoint and inferring its architecture
# --------------------------------------------------------------------------------------------


def _read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint_path: CLIP checkpoint file not found: {path!r}")
    metadata: dict[str, str] = {}
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(path, framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from streamingt2v_core.safe_load import describe_load_failure

        # Never PyTorch's own text: it advises weights_only=False, which would run the pickle's code.
        reason = describe_load_failure(exc)
        raise ValueError(f"checkpoint_path: cannot read {path!r} as a checkpoint: {reason}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"checkpoint_path: {path!r} does not hold a state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, metadata


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _state_signature(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture-defining sizes read from an open_clip (or OpenAI CLIP) ViT state dict."""
    text = "text." if "text.token_embedding.weight" in state else ""
    needed = ["visual.conv1.weight", "visual.positional_embedding",
              f"{text}token_embedding.weight", f"{text}positional_embedding", f"{text}text_projection"]
    absent = [k for k in needed if k not in state]
    if absent:
        sample = sorted(state)[:3]
        raise ValueError(
            "checkpoint_path: not a full open_clip ViT CLIP checkpoint (image and text towers); "
            f"missing {absent[:3]}; its keys start with {sample}. A text-encoder-only file (such as "
            "the SD2 text encoder in the host's clip folder) or a vision-only CLIP-vision file cannot "
            "compute a text-image score"
        )
    conv = state["visual.conv1.weight"]
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    tokens = int(state["visual.positional_embedding"].shape[0])
    grid = int(round(math.sqrt(tokens - 1)))
    image_size = grid * patch if grid * grid == tokens - 1 else int(round(math.sqrt(tokens))) * patch
    projection = state[f"{text}text_projection"]
    embed_dim = int(projection.shape[-1]) if projection.ndim == 2 else int(projection.shape[0])
    fc = state.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    return {
        "embed_dim": embed_dim,
        "vision_width": width,
        "vision_patch": patch,
        "vision_image_size": image_size,
        "vision_layers": _count_blocks(state, "visual.transformer.resblocks."),
        "vision_mlp": int(fc.shape[0]) if fc is not None else None,
        "text_width": int(state[f"{text}token_embedding.weight"].shape[1]),
        "text_vocab": int(state[f"{text}token_embedding.weight"].shape[0]),
        "text_context": int(state[f"{text}positional_embedding"].shape[0]),
        "text_layers": _count_blocks(state, f"{text}transformer.resblocks."),
    }


def _config_signature(cfg: dict) -> dict[str, Any]:
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    image_size = vision.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    width = vision.get("width", 768)
    return {
        "embed_dim": cfg["embed_dim"],
        "vision_width": width,
        "vision_patch": vision.get("patch_size", 16),
        "vision_image_size": image_size,
        "vision_layers": vision.get("layers", 12),
        "vision_mlp": int(width * vision.get("mlp_ratio", 4.0)),
        "text_width": text.get("width", 512),
        "text_vocab": text.get("vocab_size", 49408),
        "text_context": text.get("context_length", 77),
        "text_layers": text.get("layers", 12),
    }


def infer_architecture(state: dict[str, torch.Tensor]) -> list[str]:
    """Registered open_clip architectures whose tensor shapes fit ``state``, best first.

    Shapes cannot tell GELU from QuickGELU, nor the number of attention heads, so several names
    may fit; the default (ViT-H-14) and plain GELU variants come first.
    """
    import open_clip

    signature = _state_signature(state)
    matches = []
    for name in supported_architectures():
        cfg_sig = _config_signature(open_clip.get_model_config(name))
        if all(signature[k] == v for k, v in cfg_sig.items() if signature[k] is not None):
            matches.append(name)
    return sorted(matches, key=lambda n: (n != DEFAULT_ARCHITECTURE, "quickgelu" in n, n.lower()))


# --------------------------------------------------------------------------------------------
# The loaded model
# --------------------------------------------------------------------------------------------


@dataclass
class OpenClipBundle:
    """An open_clip model ready for scoring, with what it was built from."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    architecture: str
    model_cfg: dict
    checkpoint_path: str
    other_matches: list[str] = field(default_factory=list)


def load_open_clip(
    checkpoint_path: str | os.PathLike,
    architecture: str | dict | None = "auto",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> OpenClipBundle:
    """Build an open_clip model and load a local checkpoint into it (no download).

    Args:
        checkpoint_path: ``.safetensors``, ``.bin``, ``.pt`` or ``.pth`` with an open_clip-layout
            state dict (pickles are read with ``weights_only=True``).
        architecture: ``"auto"``/None (from the file: a ``open_clip_config`` JSON entry in the
            safetensors metadata, else the registered config whose shapes fit), an open_clip
            architecture name (``"ViT-H-14"``), or a model config dict (``embed_dim``,
            ``vision_cfg``, ``text_cfg``, ...) for custom models.
        device, dtype: where and in which precision the model runs.

    Raises:
        ValueError: missing or unreadable file, a file that is not a full CLIP, an unknown or
            unsupported architecture, or keys/shapes that do not fit the architecture.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    path = os.fspath(checkpoint_path)
    state, metadata = _read_state_dict(path)
    other_matches: list[str] = []
    if isinstance(architecture, dict):
        cfg, name = json.loads(json.dumps(architecture)), "custom"
    elif architecture in (None, "auto") and METADATA_CONFIG_KEY in metadata:
        try:
            cfg = json.loads(metadata[METADATA_CONFIG_KEY])
        except json.JSONDecodeError as exc:
            raise ValueError(f"checkpoint_path: bad {METADATA_CONFIG_KEY} metadata in {path!r}: {exc}") from exc
        cfg, name = cfg.get("model_cfg", cfg), "custom (from file metadata)"
    elif architecture in (None, "auto"):
        matches = infer_architecture(state)
        if not matches:
            raise ValueError(
                f"architecture: no registered open_clip architecture fits {path!r} "
                f"(sizes {_state_signature(state)}); choose one, or pass a config dict"
            )
        name, other_matches = matches[0], matches[1:]
        cfg = open_clip.get_model_config(name)
    elif isinstance(architecture, str):
        cfg = open_clip.get_model_config(architecture)
        if cfg is None:
            raise ValueError(f"architecture: unknown open_clip architecture {architecture!r}; "
                             f"known: {supported_architectures()}")
        name = architecture
    else:
        raise ValueError(f"architecture must be 'auto', a name or a config dict, got {architecture!r}")
    if not _is_supported_config(cfg):
        raise ValueError(f"architecture: {name!r} needs HF/timm towers (downloads), not supported offline")

    build_cfg = {k: v for k, v in cfg.items() if k not in ("custom_text", "preprocess_cfg")}
    model_class = open_clip.CustomTextCLIP if cfg.get("custom_text") else open_clip.CLIP
    model = model_class(**build_cfg)
    if cfg.get("custom_text") and "positional_embedding" in state:
        from open_clip.model import convert_to_custom_text_state_dict

        state = convert_to_custom_text_state_dict(state)
    # Older checkpoints store logit_scale with another rank, and carry OpenAI JIT extras.
    for extra in ("input_resolution", "context_length", "vocab_size"):
        state.pop(extra, None)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint_path: {path!r} does not fit architecture {name!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(mismatched)} with other shapes (e.g. {mismatched[:3]})"
        )
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=dtype).eval()

    image_size = model.visual.image_size
    pp = merge_preprocess_dict(PreprocessCfg(), cfg.get("preprocess_cfg", {}))
    pp["size"] = image_size
    preprocess = image_transform_v2(PreprocessCfg(**pp), is_train=False)
    text_cfg = cfg.get("text_cfg", {})
    tokenizer = open_clip.SimpleTokenizer(
        context_length=text_cfg.get("context_length", 77), **text_cfg.get("tokenizer_kwargs", {})
    )
    return OpenClipBundle(model, preprocess, tokenizer, name, cfg, path, other_matches)


# --------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------


@dataclass
class ClipScoreResult:
    """Result of :func:`clip_score`.

    Attributes:
        score: mean over frames of ``100 * cos(text, frame)``.
        per_frame: ``100 * cos`` per frame.
        architecture: open_clip architecture used; checkpoint: its file; prompt: the text.
    """

    score: float
    per_frame: list[float]
    architecture: str
    checkpoint: str
    prompt: str

    def to_report(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        report = asdict(self)
        report["metric"] = "CLIP score"
        report["definition"] = "mean over frames of 100 * cosine(text embedding, image embedding)"
        return report


@torch.no_grad()
def clip_score(
    frames: FrameArray,
    prompt: str,
    model: OpenClipBundle | str | os.PathLike,
    architecture: str | dict | None = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> ClipScoreResult:
    """CLIP text-image score of a video: mean over frames of ``100 * cos``.

    Args:
        frames: ``[T, H, W, 3]`` RGB, float in [0, 1] or uint8.
        prompt: the text the video was generated from (non-empty).
        model: an :class:`OpenClipBundle` from :func:`load_open_clip`, or a checkpoint path
            (loaded with ``architecture`` on ``device``).
        architecture: used only when ``model`` is a path.
        device: where to run (default: where the model is).
        batch_size: frames per image-encoder call.
        progress: called with ``(frames_done, frames_total)``.

    Raises:
        ValueError: empty prompt, bad frames (NaN refused), bad checkpoint, or a model whose embeddings
            come out NaN/inf (never a NaN score).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string (the text the video was made from)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    video = to_uint8_frames(frames, "frames", min_frames=1)
    if not isinstance(model, OpenClipBundle):
        model = load_open_clip(model, architecture, device=device or "cpu")
    from PIL import Image

    net = model.model
    param = next(net.parameters())
    run_device = torch.device(device) if device is not None else param.device
    if param.device != run_device:
        net = net.to(run_device)
    dtype = param.dtype

    tokens = model.tokenizer([prompt]).to(run_device)
    text = net.encode_text(tokens, normalize=True).float()
    # The frames are finite (to_uint8_frames refuses NaN): NaN here is the model's, and a NaN score must not pass.
    broken = ("(broken weights, or an overflow in fp16: run it in fp32)")
    if not bool(torch.isfinite(text).all()):
        raise ValueError(f"model: {model.architecture} from {os.path.basename(model.checkpoint_path)!r} gave a NaN "
                         f"or inf text embedding {broken}")
    per_frame: list[float] = []
    total = video.shape[0]
    for start in range(0, total, batch_size):
        images = torch.stack([model.preprocess(Image.fromarray(frame))
                              for frame in video[start:start + batch_size]])
        image = net.encode_image(images.to(run_device, dtype), normalize=True).float()
        bad = [start + int(i) for i in torch.nonzero(~torch.isfinite(image).all(dim=1)).flatten()]
        if bad:
            raise ValueError(f"model: {model.architecture} from {os.path.basename(model.checkpoint_path)!r} gave NaN "
                             f"or inf image embeddings for frames {bad[:8]} {broken}")
        per_frame += (100.0 * image @ text[0]).tolist()
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return ClipScoreResult(
        score=float(np.mean(per_frame)),
        per_frame=[float(v) for v in per_frame],
        architecture=model.architecture,
        checkpoint=os.path.basename(model.checkpoint_path),
        prompt=prompt,
    )

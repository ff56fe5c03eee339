"""Synthetic videos whose metric values are known, and a tiny CLIP checkpoint, for tests, the
benchmark and the demo (no real weights or footage can be downloaded here).

* :func:`textured_image`: smooth random texture (blurred noise at several scales), rich enough
  for optical flow and distinct enough per seed for scene detection.
* :func:`pan_video`: a window sliding over one texture by a whole number of pixels per frame
  (a camera pan: no cut, known motion).
* :func:`scenes_video`: several distinct textures, each panned for a while (cuts at known frames).
* :func:`write_video`: frames to an H.264 file with PyAV.
* :func:`write_tiny_open_clip_checkpoint`: a small random open_clip model saved as safetensors,
  with its config in the metadata so the loader can build it.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import torch

__all__ = [
    "TINY_OPEN_CLIP_CONFIG",
    "textured_image",
    "pan_video",
    "scenes_video",
    "write_video",
    "write_tiny_open_clip_checkpoint",
    "SAMPLE_VIDEO_NAME",
    "SAMPLE_CLIP_NAME",
    "write_evaluation_video",
    "write_evaluation_assets",
]

SAMPLE_VIDEO_NAME = "streamingt2v_sample.mp4"
"""File name ``workflows/evaluate_video.json`` loads from the host's input folder."""

SAMPLE_CLIP_NAME = "open_clip_model.safetensors"
"""CLIP checkpoint name ``workflows/evaluate_video.json`` selects (the real ViT-H-14 file's name)."""

TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
"""A tiny open_clip ViT config: real tokenizer and context length, everything else shrunk."""


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture ``[height, width, 3]`` uint8 using the full 0..255 range."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((1.5, 0.5), (4.0, 1.0), (12.0, 1.0)):
        noise = rng.standard_normal((height, width, 3)).astype(np.float32)
        texture += weight * cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    texture -= texture.min()
    texture /= max(float(texture.max()), 1e-6)
    # A random colour mix per seed, so different seeds also differ in hue and saturation.
    mix = rng.uniform(0.2, 1.0, (3, 3)).astype(np.float32)
    texture = texture @ mix.T
    texture -= texture.min()
    texture /= max(float(texture.max()), 1e-6)
    return np.rint(texture * 255).astype(np.uint8)


def pan_video(num_frames: int, height: int = 64, width: int = 64, shift: int = 2, seed: int = 0) -> np.ndarray:
    """``[num_frames, height, width, 3]`` uint8: the content moves ``shift`` px left per frame."""
    canvas = textured_image(height, width + shift * max(num_frames - 1, 0), seed)
    return np.stack([canvas[:, i * shift:i * shift + width] for i in range(num_frames)])


def scenes_video(num_scenes: int = 3, frames_per_scene: int = 20, height: int = 64, width: int = 64,
                 shift: int = 1, seed: int = 0) -> np.ndarray:
    """Distinct panned textures back to back; scene ``k`` starts at frame ``k * frames_per_scene``."""
    scenes = [pan_video(frames_per_scene, height, width, shift, seed=seed * 1000 + k)
              for k in range(num_scenes)]
    return np.concatenate(scenes)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> str:
    """Write ``[T, H, W, 3]`` uint8 RGB frames (even sides) to an H.264 file with PyAV."""
    import av

    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_tiny_open_clip_checkpoint(path: str | os.PathLike, seed: int = 0,
                                    config: dict | None = None) -> dict:
    """Save a random open_clip model of ``config`` (default :data:`TINY_OPEN_CLIP_CONFIG`) as
    safetensors with the config in the ``open_clip_config`` metadata entry; returns the config."""
    import open_clip
    from safetensors.torch import save_file

    config = json.loads(json.dumps(config or TINY_OPEN_CLIP_CONFIG))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = open_clip.CLIP(**config)
    finally:
        torch.random.set_rng_state(generator_state)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(path), metadata={"open_clip_config": json.dumps(config)})
    return config


def write_evaluation_video(path: str | os.PathLike) -> str:
    """The sample video ``workflows/evaluate_video.json`` loads: 2 synthetic scenes of 16 frames at
    64x64, 8 fps, one cut at frame 16 (the pack writes it into the host's input folder at start-up)."""
    return write_video(path, scenes_video(num_scenes=2, frames_per_scene=16, height=64, width=64, seed=5), fps=8)


def write_evaluation_assets(input_dir: str | os.PathLike, models_dir: str | os.PathLike,
                            overwrite: bool = False) -> dict[str, str]:
    """What ``workflows/evaluate_video.json`` needs to run on random weights (tests, CI):

    * ``input_dir/streamingt2v_sample.mp4``: 2 synthetic scenes of 16 frames at 64x64, 8 fps
      (one cut, at frame 16);
    * ``models_dir/streamingt2v_metrics/open_clip_model.safetensors``: a tiny random open_clip.

    Existing files are kept unless ``overwrite``. Returns ``{"video": path, "clip": path}``.
    """
    video = os.path.join(os.fspath(input_dir), SAMPLE_VIDEO_NAME)
    clip_dir = os.path.join(os.fspath(models_dir), "streamingt2v_metrics")
    clip = os.path.join(clip_dir, SAMPLE_CLIP_NAME)
    os.makedirs(os.path.dirname(video), exist_ok=True)
    os.makedirs(clip_dir, exist_ok=True)
    if overwrite or not os.path.isfile(video):
        write_evaluation_video(video)
    if overwrite or not os.path.isfile(clip):
        write_tiny_open_clip_checkpoint(clip)
    return {"video": video, "clip": clip}

"""Bad inputs and faults of Refine through the real host (cases and checks: bad_inputs_helpers)."""
from __future__ import annotations

from typing import Callable

import pytest
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    REFINE, Bench, bench, Case, check_case, damaged_vae, little_ram, model_file, spoiled, text_of,
)


REFINE_SETTINGS = dict(width=128, height=80, resize_mode="pad", upscale_method="bilinear", chunk=8, overlap=2,
                       denoise=0.6, steps=1, cfg=7.5, guidance_rescale=0.2, sampler_name="dpmpp_2m_sde",
                       scheduler="streamingt2v_trailing", seed=0, blend_mode="randomized", crop_padding=True,
                       output="images", fps=8.0)


def refine(frames: int = 20, **inputs) -> Callable[[Bench], dict]:
    """Refine: the tiny MS-Vid2Vid-XL UNet, TAESD, 20 frames of 32x32 refined at 128x80 in windows of 8, 1 step."""
    def build(b: Bench) -> dict:
        api = {
            "1": {"class_type": "StreamingT2VModelLoader",
                  "inputs": {"model_name": "tiny_refiner_non_ema_0035000.pth", "weight_dtype": "fp32", "kind": "auto"}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
            "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_h_text.safetensors",
                                                         "type": "stable_diffusion"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a cat surfing a wave"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": ""}},
            "8": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": frames,
                                                         "color": 0x808040}},
            "r": {"class_type": "StreamingT2VRefine", "inputs": dict(
                REFINE_SETTINGS, images=["8", 0], model=["1", 0], vae=["2", 0], positive=["6", 0],
                negative=["7", 0])},
            "p": {"class_type": "PreviewImage", "inputs": {"images": ["r", 0]}},
        }
        for k, v in inputs.items():
            api["r"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


CASES: list[Case] = [
    # Refine
    Case("refine-nan-images", REFINE, "images", "NaN in frames 4-6",
         r"^images: frames 4-6 of 20 hold NaN or inf values", refine(images=lambda api, b: spoiled(
             api, ["8", 0], "nan", "4,5,6"))),
    Case("refine-height", REFINE, "height", "height 700 for MS-Vid2Vid-XL",
         r"^height must be a multiple of 8 .* got 700; it takes heights of 16 \+ a multiple of 64 px; the nearest "
         r"are 656 and 720", refine(height=700)),
    Case("refine-width", REFINE, "width", "width 1000 for MS-Vid2Vid-XL",
         r"^width/height: 1000x720 pixels cannot be taken by this model: width 1000 is refused: it takes widths that "
         r"are multiples of 64 px; the nearest are 960 and 1024", refine(width=1000, height=720)),
    Case("refine-short", REFINE, "images", "6 frames for windows of 8",
         r"^images has 6 frames .*fewer than one chunk", refine(frames=6)),
    Case("refine-overlap", REFINE, "overlap", "overlap 8 with chunk 8",
         r"^overlap must be an integer in \[0, chunk - 1\]", refine(overlap=8)),
    Case("refine-vae", REFINE, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", refine(vae=damaged_vae)),
    Case("refine-nan-text", REFINE, "negative", "NaN in the text embedding",
         r"^negative: the text embedding holds NaN or inf", refine(negative=lambda api, b: (
             api.__setitem__("nc", {"class_type": "TestSpoilConditioning", "inputs": {"conditioning": ["7", 0]}}),
             ["nc", 0])[1])),
    Case("refine-sd15-text", REFINE, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the refiner takes "
         r"1024-wide ones", refine(positive=text_of("sd15"))),
    Case("refine-sdxl-text", REFINE, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         refine(negative=text_of("sdxl"))),
    Case("refine-no-tokens", REFINE, "positive", "text embeddings with 0 tokens",
         r"^positive: the text embedding has 0 tokens", refine(positive=text_of("no_tokens"))),
    Case("refine-255-images", REFINE, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         refine(images=lambda api, b: spoiled(api, ["8", 0], "scale", factor=255.0))),
    Case("refine-ram-output", REFINE, "output", "all frames as IMAGE on a machine with 1 GiB free",
         r"^output: the 20 refined frames at 4096x4096 need .*set output to 'video_file'",
         refine(width=4096, height=4112), patch=little_ram),
    Case("refine-overflow", REFINE, "model", "finite weights whose output overflows at step 1",
         r"^model: the refined latent went NaN or inf at step 1 of 1 in latent frames 0-19 of 20, windows 0-2 of 3 "
         r"\(counted from 0\); .*nothing was written",
         refine(model=model_file("overflow_refiner")), outcome="stopped"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)

"""Bad inputs and faults of Initial Chunk through the real host (cases and checks: bad_inputs_helpers)."""
from __future__ import annotations

from typing import Callable

import pytest
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    INITIAL, Bench, bench, Case, check_case, damaged_vae, model_file, nan_text, taef1_vae, text_of,
)
from test_extend_nodes import SIZE, extend_graph


def initial(**inputs) -> Callable[[Bench], dict]:
    """Initial Chunk: tiny base UNet, 8 frames at 64x64, 1 step, the frames previewed."""
    def build(b: Bench) -> dict:
        api = extend_graph()
        for k in ("2", "5", "8", "9", "10"):
            api.pop(k)
        api["4"] = {"class_type": "StreamingT2VModelLoader",
                    "inputs": {"model_name": "modelscope_t2v_unet.safetensors", "weight_dtype": "fp32", "kind": "auto"}}
        api["11"] = {"class_type": "StreamingT2VInitialChunk", "inputs": {
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "vae": ["3", 0], "width": SIZE,
            "height": SIZE, "frames": 8, "seed": 0, "steps": 1, "cfg": 9.0, "sampler_name": "euler",
            "scheduler": "normal"}}
        api["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
        for k, v in inputs.items():
            api["11"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


CASES: list[Case] = [
    # Initial Chunk
    Case("initial-kind", INITIAL, "model", "the extender instead of the base UNet3D",
         r"^model: ", initial(model=model_file("streaming_t2v.safetensors"))),
    Case("initial-width", INITIAL, "width", "width 100 (not a multiple of 8)",
         r"^width: must be a multiple of 8, got 100", initial(width=100)),
    Case("initial-nan-text", INITIAL, "positive", "NaN in the text embedding",
         r"^positive: the text embedding holds NaN or inf", initial(positive=nan_text)),
    Case("initial-vae", INITIAL, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", initial(vae=damaged_vae)),
    Case("initial-sd15-text", INITIAL, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the ModelScope T2V "
         r"UNet3D takes 1024-wide ones", initial(positive=text_of("sd15"))),
    Case("initial-sdxl-text", INITIAL, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         initial(negative=text_of("sdxl"))),
    Case("initial-no-tokens", INITIAL, "positive", "text embeddings with 0 tokens",
         r"^positive: the text embedding has 0 tokens", initial(positive=text_of("no_tokens"))),
    Case("initial-vae-16ch", INITIAL, "vae", "a 16-channel VAE (Flux's TAEF1)",
         r"^vae makes 16-channel latents but the model expects 4 channels", initial(vae=taef1_vae)),
    Case("initial-overflow", INITIAL, "model", "finite weights whose output overflows at step 1",
         r"^model: the sampled latent went NaN or inf at step 1 of 1 in latent frames 0-7 of 8; .*computes in fp32",
         initial(model=model_file("overflow_base")), outcome="stopped"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)

"""Bad inputs and faults of Extend through the real host (cases and checks: bad_inputs_helpers)."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    _GROUP_RUNS, ENCODED, EXTEND, Bench, bench, Case, check_case, damaged_vae, little_ram, model_file, nan_text,
    run_case, spoiled, taef1_vae, text_of,
)
from test_extend_nodes import SIZE, extend_graph


def extend(**inputs) -> Callable[[Bench], dict]:
    """Extend graph (test_extend_nodes.extend_graph: 16 frames 64x64, 24 frames out, 1 step), inputs changed."""
    def build(b: Bench) -> dict:
        api = extend_graph()
        api["9"]["inputs"].update({k: v for k, v in inputs.items() if not callable(v)})
        for k, v in inputs.items():
            if callable(v):
                api["9"]["inputs"][k] = v(api, b)
        return api
    return build


def spoiled_first_chunk(mode: str, frames: str = "", factor: float = 1.0):
    return lambda api, b: spoiled(api, ["8", 0], mode, frames, factor)


def vit_l_vision(api, b):
    api["cv"] = {"class_type": "TestClipVisionOfWidth", "inputs": {"projection_dim": 768}}
    return ["cv", 0]


def info_line(node: str, output: int, contains: str) -> Callable[[dict, Any], str]:
    """What the user sees for a note: the line of a STRING output that holds ``contains``."""
    def read(outputs: dict, host) -> str:
        text = outputs[node][output]
        return next(line for line in str(text).splitlines() if contains in line)
    return read


#: One Extend run for both notes (cases of one group share one prompt): the TAESD VAE decodes in milliseconds.
EXTEND_NOTES = extend(first_chunk=spoiled_first_chunk("scale", factor=1.5), vae=lambda api, b: (
    api.__setitem__("tv", {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}}), ["tv", 0])[1],
    prompt_schedule="16: a cat walks | 17: a cat jumps", clip=lambda api, b: ["1", 0])

#: A long scheduled prompt (154 tokens: two CLIP windows; the extender takes 77).
LONG_PROMPT = "a cat walks on a long street past red houses, " * 12


def count_encodes(mp: pytest.MonkeyPatch, b: Bench) -> None:
    from test_extend_nodes import pack_module

    extend_module = pack_module(b.host, "extend")
    original = extend_module.encode_text

    def counting(clip, text):
        ENCODED.append(text)
        return original(clip, text)

    mp.setattr(extend_module, "encode_text", counting)


def _anchor_batch(api, b):
    api["an"] = {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 3,
                                                        "color": 0x40C080}}
    return ["an", 0]


#: One Extend run for the quiet changes it names: an RGBA first chunk, an anchor batch of 3, and a schedule of 24
#: entries on a 24-frame video (chunk 1 uses only entry 16, a prompt of 154 tokens).
EXTEND_NOTES_2 = extend(
    first_chunk=spoiled_first_chunk("rgba"), anchor=_anchor_batch, clip=lambda api, b: ["1", 0],
    vae=lambda api, b: (api.__setitem__("tv", {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}}),
                        ["tv", 0])[1],
    prompt_schedule=" | ".join(f"{i}: {LONG_PROMPT if i == 16 else f'scene {i}'}" for i in range(24)))


CASES: list[Case] = [
    # Extend
    Case("extend-short-first-chunk", EXTEND, "first_chunk", "5 frames",
         r"^first_chunk: needs at least 8 frames \(the CAM conditions each chunk on the last 8\), got 5",
         extend(first_chunk=lambda api, b: (api["8"]["inputs"].update(batch_size=5), ["8", 0])[1])),
    Case("extend-nan-first-chunk", EXTEND, "first_chunk", "NaN in frames 3 and 5",
         r"^first_chunk: frames 3, 5 of 16 hold NaN or inf values", extend(first_chunk=spoiled_first_chunk("nan", "3,5"))),
    Case("extend-inf-first-chunk", EXTEND, "first_chunk", "inf in every frame",
         r"^first_chunk: every frame holds NaN or inf values", extend(first_chunk=spoiled_first_chunk("inf"))),
    Case("extend-255-first-chunk", EXTEND, "first_chunk", "0..255 values instead of [0, 1]",
         r"^first_chunk: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         extend(first_chunk=spoiled_first_chunk("scale", factor=255.0))),
    Case("extend-overshoot-first-chunk", EXTEND, "first_chunk", "values up to 1.2 (resampling overshoot)",
         r"^first_chunk: \d+ values from .* to 1\.2\d* were outside \[0, 1\] .*clamped", EXTEND_NOTES,
         outcome="note", read=info_line("9", 1, "first_chunk:"), group="extend-notes"),
    Case("extend-nan-anchor", EXTEND, "anchor", "NaN in the anchor frame",
         r"^anchor: frame 0 holds NaN or inf values .*APM",
         extend(anchor=lambda api, b: spoiled(api, ["8", 0], "nan", "0", node="sa"))),
    Case("extend-total-frames", EXTEND, "total_frames", "10, fewer than the first chunk's 16",
         r"^total_frames: must be >= the first chunk's 16 frames, got 10", extend(total_frames=10)),
    Case("extend-total-frames-max", EXTEND, "total_frames", "200000 (above the widget's maximum)",
         r"total_frames", extend(total_frames=200000), outcome="host"),
    Case("extend-ram", EXTEND, "total_frames", "100000 frames at 64x64 on a machine with 1 GiB free",
         r"^total_frames: 100000 frames at 64x64 need .* of RAM .*'last 16 frames", extend(total_frames=100000),
         patch=little_ram),
    Case("extend-height", EXTEND, "height", "height 100 (not a multiple of 8)",
         r"^height: must be a multiple of 8, got 100", extend(height=100)),
    Case("extend-kind", EXTEND, "model", "the base UNet3D instead of the extender",
         r"^model: ", extend(model=model_file("modelscope_t2v_unet.safetensors"))),
    Case("extend-nan-text", EXTEND, "positive", "NaN in the text embedding",
         r"^positive: the text embedding holds NaN or inf", extend(positive=nan_text)),
    Case("extend-vae", EXTEND, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", extend(vae=damaged_vae)),
    Case("extend-sd15-text", EXTEND, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the extender takes "
         r"1024-wide ones", extend(positive=text_of("sd15"))),
    Case("extend-sdxl-text", EXTEND, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         extend(negative=text_of("sdxl"))),
    Case("extend-no-tokens", EXTEND, "negative", "text embeddings with 0 tokens",
         r"^negative: the text embedding has 0 tokens", extend(negative=text_of("no_tokens"))),
    Case("extend-vae-16ch", EXTEND, "vae", "a 16-channel VAE (Flux's TAEF1)",
         r"^vae makes 16-channel latents but the model expects 4 channels", extend(vae=taef1_vae)),
    Case("extend-clip-vision-vit-l", EXTEND, "clip_vision", "a CLIP ViT-L/14 vision model (768-wide embeddings)",
         r"^clip_vision: this image encoder gives 768-wide image embeddings \(CLIP ViT-L/14\), but the extender's APM "
         r"takes 1024", extend(clip_vision=vit_l_vision)),
    Case("extend-gray-first-chunk", EXTEND, "first_chunk", "grayscale frames (1 channel)",
         r"^first_chunk: expected RGB frames \[frames, height, width, 3\], got \(16, 64, 64, 1\): 1 channel "
         r"\(grayscale\?\)", extend(first_chunk=spoiled_first_chunk("gray"))),
    Case("extend-rgba-first-chunk", EXTEND, "first_chunk", "RGBA frames",
         r"^first_chunk: the frames have 4 channels \(RGBA\); the alpha channel was dropped", EXTEND_NOTES_2,
         outcome="note", read=info_line("9", 1, "RGBA"), group="extend-notes-2", patch=count_encodes),
    Case("extend-anchor-batch", EXTEND, "anchor", "a batch of 3 images",
         r"^anchor: 3 images given; only the first is used", EXTEND_NOTES_2,
         outcome="note", read=info_line("9", 1, "images given"), group="extend-notes-2", patch=count_encodes),
    Case("extend-schedule-long-prompt", EXTEND, "prompt_schedule", "a scheduled prompt of 154 tokens",
         r"^prompt_schedule: the entry '16: a cat walks .*': the prompt is 154 tokens long; the extender uses the "
         r"first 77", EXTEND_NOTES_2, outcome="note", read=info_line("9", 1, "tokens long"), group="extend-notes-2",
         patch=count_encodes),
    Case("extend-schedule-many", EXTEND, "prompt_schedule", "24 entries on a 24-frame video (one chunk to sample)",
         r"^prompt_schedule: 23 of its 24 entries are used by no chunk", EXTEND_NOTES_2, outcome="note",
         read=info_line("9", 1, "entries are used by no chunk"), group="extend-notes-2", patch=count_encodes),
    Case("extend-schedule-syntax", EXTEND, "prompt_schedule", "an entry without a frame number",
         r"^prompt_schedule: expected entries like '0: a cat walks'",
         extend(prompt_schedule="a dog runs", clip=lambda api, b: ["1", 0])),
    Case("extend-schedule-past-end", EXTEND, "prompt_schedule", "an entry at frame 40 of a 24-frame video",
         r"^prompt_schedule: the entry '40: the cat sleeps' starts at frame 40, past the end of the video "
         r"\(total_frames 24",
         extend(prompt_schedule="0: a cat walks | 40: the cat sleeps", clip=lambda api, b: ["1", 0])),
    Case("extend-schedule-unused", EXTEND, "prompt_schedule", "two entries inside one chunk",
         r"^prompt_schedule: the entry '17: a cat jumps' is used by no chunk", EXTEND_NOTES, outcome="note",
         read=info_line("9", 1, "is used by no chunk"), group="extend-notes"),
    Case("extend-schedule-no-clip", EXTEND, "clip", "prompt_schedule without a CLIP",
         r"^clip: prompt_schedule needs a CLIP", extend(prompt_schedule="0: a cat")),
    Case("extend-chunk-seeds", EXTEND, "chunk_seeds", "a chunk beyond the last one",
         r"^chunk_seeds: chunk 9 is beyond the last chunk \(1\) of 24 frames", extend(chunk_seeds="9: 5")),
    Case("extend-regenerate", EXTEND, "regenerate_from", "regenerate_from without the run store",
         r"^regenerate_from: keeps chunks stored in the run store; turn disk_cache on", extend(regenerate_from=2)),
    Case("extend-run-name", EXTEND, "run_name", "a name leaving the runs folder",
         r"^run_name: ", extend(disk_cache=True, run_name="../escape")),
    Case("extend-overflow", EXTEND, "model", "finite weights whose output overflows in chunk 1",
         r"^run 'bad-inputs-overflow', chunk 1 failed: model: the sampled latent holds values up to .* after the last "
         r"step .*computes in fp32.*nothing of this chunk was kept",
         extend(model=model_file("overflow_extender"), disk_cache=True, run_name="bad-inputs-overflow"),
         outcome="stopped"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)


def test_extend_overflow_keeps_what_was_finished(bench):
    """The chunk that went NaN was not stored; the first chunk was (a later queue resumes from chunk 1)."""
    run_case(next(c for c in CASES if c.id == "extend-overflow"), bench)
    from test_run_store_nodes import store_of

    run = store_of(bench.host).open("bad-inputs-overflow")
    assert [r.index for r in run.manifest().timeline_records()] == [0]


def test_nan_from_the_image_encoder_is_named(comfy_host, bench):
    """A CLIP vision model giving NaN for a finite anchor is refused before sampling, naming clip_vision."""
    extend_node = comfy_host.node_class("StreamingT2VExtend")

    class NaNVision:
        def encode_image(self, images, crop=True):
            return {"image_embeds": torch.full((images.shape[0], 1024), float("nan"))}

    api = extend_graph()
    bench.guider_calls[0] = 0
    outputs = comfy_host.run_prompt({k: api[k] for k in ("1", "3", "5", "6", "7")}, outputs=["5", "6", "7", "3"])
    with pytest.raises(ValueError, match=r"^clip_vision: gave NaN or inf embeddings for the anchor frame"):
        extend_node.execute(model=outputs["5"][0], positive=outputs["6"][0], negative=outputs["7"][0],
                            clip_vision=NaNVision(), vae=outputs["3"][0], first_chunk=torch.rand(16, SIZE, SIZE, 3),
                            total_frames=24, seed=0, steps=1, cfg=7.5, sampler_name="ddpm",
                            scheduler="ddim_uniform", width=SIZE, height=SIZE, disk_cache=False)
    assert bench.guider_calls[0] == 0


def test_a_schedule_encodes_only_the_entries_chunks_use_once_each(bench):
    """24 entries on a 24-frame video: chunk 1 (new frames 16..23) uses entry 16 only, so that one is encoded, once
    (the first chunk is given and needs none); every entry was encoded before."""
    run_case(next(c for c in CASES if c.id == "extend-schedule-many"), bench)
    assert ENCODED == [LONG_PROMPT.strip()]
    info = _GROUP_RUNS["extend-notes-2"][1]["9"][1]
    assert f"prompt schedule: 16: {LONG_PROMPT.strip()} (the entries chunks use, of 24)" in info.splitlines(), info

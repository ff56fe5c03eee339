"""ControlNet along the chunk plan, in the real host: StreamingT2V Extend steers each extension chunk with the
control frames of its own 16-frame range, says which frames were controlled, and the run store treats a chunk's
control frames as part of its settings (changing chunk k's control frames re-samples chunk k and the chunks after
it, and reuses the ones before).

Our tiny extender, the demo's tiny SD 2.x-layout ControlNet (scripts/demo_weights.py), the tiny random SD VAE
and CLIP ViT-H of the host tests (scripts/demo_weights_tiny_encoders.py); random text tokens; 64x64 frames, one sampler step per chunk.
"""
from __future__ import annotations

import re

import pytest
import torch
from test_controlnet import (SIZE, ControlNetCalls, apply, control_video, frame_index_of, load_controlnet, load_model,
                             pack_module, text_cond)


@pytest.fixture(scope="module")
def parts(comfy_host, host_weights):
    nodes = comfy_host.nodes
    return {
        "model": load_model(comfy_host, host_weights["extender"].name),
        "clip_vision": nodes.CLIPVisionLoader().load_clip(host_weights["clip_vision"].name)[0],
        "vae": nodes.VAELoader().load_vae(host_weights["vae"].name)[0],
        "first_chunk": torch.rand(16, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(2)),
    }


def extend(comfy_host, parts, positive, negative, total_frames, **extra):
    node = comfy_host.node_class("StreamingT2VExtend")
    settings = dict(seed=5, steps=1, cfg=7.5, sampler_name="ddpm", scheduler="ddim_uniform", width=SIZE,
                    height=SIZE, disk_cache=False)
    settings.update(extra)
    return node.execute(positive=positive, negative=negative, total_frames=total_frames, **parts, **settings).result


def chunk_sources(info: str) -> dict[int, str]:
    return {int(m.group(1)): ("sampled" if "sampled" in m.group(2) else m.group(2))
            for m in re.finditer(r"^chunk (\d+): frames \d+-\d+, seed \d+, (.*)$", info, re.M)}


def test_each_chunk_sees_the_control_frames_of_its_own_range(comfy_host, host_weights, parts):
    """40 frames = first chunk 0-15 + chunks over frames 8-23, 16-31, 24-39 (8 re-generated conditioning frames
    + 8 new each). A 30-frame control video: chunk 1 sees control frames 8-23, chunk 2 16-29 (frames 30-31 are
    past its end: not controlled), chunk 3 24-29."""
    controlnet = load_controlnet(comfy_host, host_weights["controlnet"].name)
    positive, negative = apply(comfy_host, text_cond(0), text_cond(1), controlnet, control_video(30))
    with ControlNetCalls(controlnet) as calls:
        frames, info, _ = extend(comfy_host, parts, positive, negative, 40)
    assert frames.shape == (40, SIZE, SIZE, 3) and bool(torch.isfinite(frames).all())
    seen = [frame_index_of(h) for h in calls.hints]
    expected = [list(range(8, 24)), list(range(16, 30)), list(range(24, 30))]
    assert seen == [e * 2 for e in expected]  # one call per chunk (cond + uncond batched), frame index fastest
    assert "ControlNet (1 in the chain; control video 30 frames): steers frames 8-29 while the chunks are sampled" in info
    assert "new frames 30-39 are not controlled (past the end of the control video)" in info
    # The user's ControlNet and conditioning are untouched: still the host's object, its own 30 hint frames.
    assert positive[0][1]["control"].cond_hint_original.shape[0] == 30
    assert not getattr(positive[0][1]["control"], "streamingt2v_per_frame", False)


def test_a_chunk_past_the_end_of_the_control_video_runs_without_controlnet(comfy_host, host_weights):
    controlnet_module = pack_module(comfy_host, "controlnet")
    from streamingt2v_core.sampling.plans import extension_plan

    controlnet = load_controlnet(comfy_host, host_weights["controlnet"].name)
    positive, negative = apply(comfy_host, text_cond(0), text_cond(1), controlnet, control_video(20))
    controls = controlnet_module.ChunkControls.for_plan(extension_plan(40, 16, 16, 8))
    assert controls.ranges == [(0, 16), (8, 24), (16, 32), (24, 40)]
    pos2, neg2 = controls.conditioning(2, positive, negative)
    adapter = pos2[0][1]["control"]
    assert adapter is neg2[0][1]["control"]  # one adapter for both: cond and uncond still batch together
    assert adapter.first_frame == 16 and adapter.controlled_frames(16, 16) == list(range(16, 20))
    pos3, neg3 = controls.conditioning(3, positive, negative)
    assert "control" not in pos3[0][1] and "control" not in neg3[0][1]
    assert controls.controlled_frames(3, positive, negative) == []
    # prompt travel: a scheduled prompt keeps positive's ControlNet
    scheduled = controlnet_module.with_controls_of(positive, text_cond(7))
    assert scheduled[0][1]["control"] is positive[0][1]["control"]


def test_run_store_treats_control_frames_as_chunk_settings(comfy_host, host_weights, parts):
    """48 frames: chunks 1-4 over frames 8-23, 16-31, 24-39, 32-47. Changing control frames 24-31 changes what
    chunks 2 and 3 are steered by: chunk 1 is reused, 2 and 3 are sampled again, and so is 4 (its conditioning
    frames come from chunk 3). The same control video after a 'restart' (cache emptied, the ControlNet loaded
    again) reuses every chunk from the run store."""
    cache = pack_module(comfy_host, "extend").CHUNK_CACHE
    video = control_video(48)
    run = dict(disk_cache=True, run_name="controlnet_digest_test")

    def queue(control_frames):
        cache.clear()
        controlnet = load_controlnet(comfy_host, host_weights["controlnet"].name)  # a new object each time
        positive, negative = apply(comfy_host, text_cond(0), text_cond(1), controlnet, control_frames)
        frames, info, name = extend(comfy_host, parts, positive, negative, 48, **run)
        assert name.split("@")[0] == "controlnet_digest_test"  # "<run>@<timeline id>": the exact video made
        return frames, chunk_sources(info)

    first, sources = queue(video)
    assert sources == {1: "sampled", 2: "sampled", 3: "sampled", 4: "sampled"}
    again, sources = queue(video.clone())
    assert sources == {1: "reused (run store)", 2: "reused (run store)", 3: "reused (run store)",
                       4: "reused (run store)"}
    assert torch.equal(again, first)
    changed = video.clone()
    changed[24:32] = changed[24:32].flip(-2) * 0.5  # other control frames in chunks 2 and 3's ranges only
    third, sources = queue(changed)
    assert sources == {1: "reused (run store)", 2: "sampled", 3: "sampled", 4: "sampled"}
    assert torch.equal(third[:24], first[:24]) and not torch.equal(third[24:32], first[24:32])

"""StreamingT2V Extend (video model) in the real host, with tiny random Wan 2.1 VACE / T2V models and the tiny Wan
VAE (tests/host/tiny_host_models.py) loaded by the host's own loaders.

Sizes: 16x16 frames (2x2 latents), chunks of 9 frames continuing the last 5 (4 new frames per chunk, Wan's stride 4), 2 steps.
The frames are noise, but every path (the host's WanVaceToVideo, the sampler's noise_mask, the VAE, the run store)
is the real one.
"""
from __future__ import annotations

import os
import time
import uuid

import pytest
import torch
from tiny_host_models import (WAN_TEXT_DIM, write_tiny_ltxv, write_tiny_wan_lora, write_tiny_wan_t2v,
                              write_tiny_wan_vace, write_tiny_wan_vae)

SIZE = 16
CHUNK, CONTEXT = 9, 5


def pack_module(comfy_host, name: str):
    import importlib

    package = comfy_host.node_class("StreamingT2VExtend").__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{name}")


@pytest.fixture(scope="module")
def wan(comfy_host):
    d = comfy_host.models_dir
    vace_name, t2v_name, vae_name = write_tiny_wan_vace(d), write_tiny_wan_t2v(d), write_tiny_wan_vae(d)
    lora_name = write_tiny_wan_lora(d)
    nodes = comfy_host.nodes
    return {
        "vace": nodes.UNETLoader().load_unet(vace_name, "default")[0],
        "t2v": nodes.UNETLoader().load_unet(t2v_name, "default")[0],
        "vae": nodes.VAELoader().load_vae(vae_name)[0],
        "lora": lora_name,
    }


def conds(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 6, WAN_TEXT_DIM, generator=g), {}]], [[torch.zeros(1, 6, WAN_TEXT_DIM), {}]]


def frames(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(seed))


def quantised(x: torch.Tensor) -> torch.Tensor:
    """Frames as the run stores them and the next chunk reads them back (uint8)."""
    return (x.clamp(0, 1) * 255).round() / 255


class SampleCounter:
    """Wraps the host's comfy.sample.sample: counts calls and keeps what each was given and returned."""

    def __init__(self, monkeypatch):
        import comfy.sample

        self.calls = []
        real = comfy.sample.sample

        def sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, **kw):
            out = real(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, **kw)
            self.calls.append({"positive": positive, "negative": negative, "latent": latent_image.clone(),
                               "noise_mask": kw.get("noise_mask"), "out": out.clone()})
            return out

        monkeypatch.setattr(comfy.sample, "sample", sample)

    @property
    def count(self) -> int:
        return len(self.calls)


def extend(comfy_host, model, vae, first, **kw):
    pos, neg = conds()
    inputs = dict(model=model, vae=vae, positive=pos, negative=neg, first_chunk=first, total_frames=17,
                  chunk_frames=CHUNK, context_frames=CONTEXT, method="auto", seed=5, steps=2, cfg=3.0,
                  sampler_name="euler", scheduler="simple", run_name=f"vm-{uuid.uuid4().hex[:8]}")
    inputs.update(kw)
    return comfy_host.node_class("StreamingT2VExtendVideoModel").execute(**inputs).result


def forget_memory(comfy_host) -> None:
    pack_module(comfy_host, "extend").CHUNK_CACHE.clear()


# ----------------------------------------------------------------------------------------------- models and methods
def test_tiny_models_are_what_the_host_detects(comfy_host, wan):
    vc = pack_module(comfy_host, "video_continuation")
    vace = vc.video_model(wan["vace"], wan["vae"])
    t2v = vc.video_model(wan["t2v"], wan["vae"])
    assert (vace.family, vace.vace, vace.temporal_stride, vace.latent_channels) == ("WAN21_Vace", True, 4, 16)
    assert (t2v.family, t2v.vace) == ("WAN21", False)
    assert vc.resolve_method("auto", vace) == "vace" and vc.resolve_method("auto", t2v) == "inpaint"


def test_ltxv_is_detected_with_its_stride_of_8(comfy_host):
    name = write_tiny_ltxv(comfy_host.models_dir)
    model, _, vae = comfy_host.nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]
    vc = pack_module(comfy_host, "video_continuation")
    info = vc.video_model(model, vae)
    assert (info.family, info.vace, info.temporal_stride, info.latent_channels) == ("LTXV", False, 8, 128)
    vc.check_lengths(17, 9, info)
    with pytest.raises(ValueError, match=r"chunk_frames: .* 1 \+ 8k .*nearest are 9 or 17"):
        vc.check_lengths(13, 9, info)


def test_ltxv_extends_by_inpainting_with_its_own_stride(comfy_host, monkeypatch):
    """The other family: LTX-Video (stride 8, 32-pixel latents, 128 channels) takes the inpaint method; the host's
    LTXV turns the noise_mask into per-token timesteps, and the context latents are held."""
    name = write_tiny_ltxv(comfy_host.models_dir)
    model, _, vae = comfy_host.nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]
    counter = SampleCounter(monkeypatch)
    first = torch.rand(9, 64, 64, 3, generator=torch.Generator().manual_seed(20))  # 2x2 latents (the VAE pads)
    # LTX-Video's T5 conditioning carries its attention mask
    pos, neg = ([[c[0][0], {"attention_mask": torch.ones(1, c[0][0].shape[1], dtype=torch.int64)}]] for c in conds())
    video, info, _ = extend(comfy_host, model, vae, first, total_frames=17, chunk_frames=17, context_frames=9,
                            positive=pos, negative=neg)
    assert counter.count == 1 and video.shape == (17, 64, 64, 3) and torch.equal(video[:9], first)
    assert "method inpaint (LTXV)" in info
    call = counter.calls[0]
    assert call["latent"].shape == (1, 128, 3, 2, 2)
    assert torch.allclose(call["out"][:, :, :2], call["latent"][:, :, :2], atol=1e-4)


def test_vace_chunk_conditioning_is_the_hosts_wan_vace_to_video(comfy_host, wan, monkeypatch):
    """The conditioning the sampler gets for chunk 1 equals WanVaceToVideo's for the same control video (context
    frames known, grey to be made), masks and reference image, tensor for tensor; the latent is its latent."""
    counter = SampleCounter(monkeypatch)
    first = frames(9, 1)
    control = frames(17, 2)
    extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=13, control_video=control, vace_strength=0.7)
    assert counter.count == 1
    pos, neg = conds()
    # The host node, called as a workflow would: chunk 1 covers frames 4..12, frames 4..8 are known (the context,
    # as the run stores it: uint8).
    video = torch.cat([quantised(first[4:9]), control[9:13]])
    masks = torch.cat([torch.zeros(5, SIZE, SIZE), torch.ones(4, SIZE, SIZE)])
    wan_vace = comfy_host.node_class("WanVaceToVideo")
    e_pos, e_neg, e_latent, trim = wan_vace.execute(pos, neg, wan["vae"], SIZE, SIZE, CHUNK, 1, 0.7,
                                                    control_video=video, control_masks=masks,
                                                    reference_image=first[:1]).result
    got = counter.calls[0]
    for ours, theirs in ((got["positive"], e_pos), (got["negative"], e_neg)):
        assert len(ours) == len(theirs) == 1
        assert torch.equal(ours[0][0], theirs[0][0])
        assert set(ours[0][1]) == set(theirs[0][1]) == {"vace_frames", "vace_mask", "vace_strength"}
        assert torch.equal(ours[0][1]["vace_frames"][0], theirs[0][1]["vace_frames"][0])
        assert torch.equal(ours[0][1]["vace_mask"][0], theirs[0][1]["vace_mask"][0])
        assert ours[0][1]["vace_strength"] == theirs[0][1]["vace_strength"] == [0.7]
    assert torch.equal(got["latent"], e_latent["samples"]) and trim == 1 and got["noise_mask"] is None


def test_inpaint_holds_the_context_latents_and_decodes_the_known_frames(comfy_host, wan, monkeypatch):
    vc = pack_module(comfy_host, "video_continuation")
    counter = SampleCounter(monkeypatch)
    first = frames(9, 3)
    seen = []
    real = vc.decode_chunk
    monkeypatch.setattr(vc, "decode_chunk", lambda vae, latent: seen.append(real(vae, latent)) or seen[-1])
    extend(comfy_host, wan["t2v"], wan["vae"], first, total_frames=13, color_match="overlap")
    call = counter.calls[0]
    known = wan["vae"].encode(quantised(first[4:9]))  # context 5 frames -> latent frames 0..1
    assert call["latent"].shape == (1, 16, 3, 2, 2) and torch.equal(call["latent"][:, :, :2], known.float())
    assert torch.equal(call["noise_mask"][:, :, :2], torch.zeros(1, 1, 2, 2, 2))
    assert torch.equal(call["noise_mask"][:, :, 2:], torch.ones(1, 1, 1, 2, 2))
    # Held through sampling: the sampled context latents are the encoded ones (float round trip of the latent
    # format only), the new latent frame is not.
    assert torch.allclose(call["out"][:, :, :2], known.float(), atol=1e-4)
    assert not torch.allclose(call["out"][:, :, 2:], call["latent"][:, :, 2:], atol=1e-2)
    # The decoded context is the known frames through the VAE round trip (encode then decode).
    round_trip = real(wan["vae"], known.float())
    assert torch.allclose(seen[0][:5], round_trip, atol=1e-3)


@pytest.mark.parametrize("kind", ["vace", "t2v"])
def test_new_frames_follow_the_context(comfy_host, wan, kind):
    first = frames(9, 4)
    other = first.clone()
    other[6:9] = frames(3, 5)  # frame 0 (the default anchor) and frames 4..5 unchanged
    a = extend(comfy_host, wan[kind], wan["vae"], first, total_frames=13)[0]
    b = extend(comfy_host, wan[kind], wan["vae"], other, total_frames=13)[0]
    assert (a[9:] - b[9:]).abs().max() > 1e-3


def test_new_frames_follow_the_vace_anchor(comfy_host, wan):
    first = frames(9, 6)
    a = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=13, anchor=frames(1, 7))[0]
    b = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=13, anchor=frames(1, 8))[0]
    assert torch.equal(a[:9], b[:9]) and (a[9:] - b[9:]).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------- run store
def test_resume_reroll_regenerate_tamper_and_load_run(comfy_host, wan, monkeypatch):
    extend_mod = pack_module(comfy_host, "extend")
    runs = pack_module(comfy_host, "runs")
    counter = SampleCounter(monkeypatch)
    name = f"vm-store-{uuid.uuid4().hex[:8]}"
    first = frames(9, 9)
    video, info, run_name = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=21, run_name=name)
    # the run output names this exact video: '<run>@<timeline id>' (issue 23), as Extend's
    assert counter.count == 3 and run_name.split("@")[0] == name and "@" in run_name
    assert video.shape == (21, SIZE, SIZE, 3)
    assert torch.equal(video[:9], first)
    run = runs.run_store().open(name)
    timeline = run.manifest().timeline_records()
    assert [r.index for r in timeline] == [0, 1, 2, 3]
    assert [r.seed for r in timeline[1:]] == [extend_mod.chunk_seed(5, i) for i in (1, 2, 3)]
    assert timeline[1].settings["method"] == "vace" and timeline[1].settings["chunk_frames"] == CHUNK
    assert run.manifest().timeline.chunk == CHUNK and run.manifest().timeline.cond_frames == CONTEXT

    # Resume after a "restart": everything reused from the run store, bit for bit.
    forget_memory(comfy_host)
    again = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=21, run_name=name)
    assert counter.count == 3 and torch.equal(again[0], video) and "3 reused (0 from memory, 3 from the run store" in again[1]

    # Tampered chunk 2: detected, moved aside, sampled again; the video is the same.
    forget_memory(comfy_host)
    path = os.path.join(run.chunks_dir, timeline[2].file)
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0x55
    open(path, "wb").write(bytes(data))
    again = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=21, run_name=name)
    assert counter.count == 4 and torch.equal(again[0], video)
    assert "chunk 2: stored chunk failed verification" in again[1]

    # Re-roll chunk 2: chunk 1 reused, chunks 2 and 3 sampled again.
    n = counter.count
    reroll = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=21, run_name=name, chunk_seeds="2: 77")
    assert counter.count == n + 2 and torch.equal(reroll[0][:13], video[:13])
    assert not torch.equal(reroll[0][13:17], video[13:17]) and "seed 77, sampled" in reroll[1]

    # regenerate_from 3 with a new seed: chunks 1-2 kept as the run stores them (the re-rolled chunk 2), 3 made anew.
    n = counter.count
    regen = extend(comfy_host, wan["vace"], wan["vae"], first, total_frames=21, run_name=name, seed=6,
                   regenerate_from=3)
    assert counter.count == n + 1 and torch.equal(regen[0][:17], reroll[0][:17])
    assert "kept as stored (regenerate_from)" in regen[1]

    # Load Run reads what the run now holds; wired to a node's run output it reads exactly that node's video,
    # the first one too (its chunks stay beside the re-rolled ones).
    load = comfy_host.node_class("StreamingT2VLoadRun")
    loaded = load.execute(run_name=name, fps=8.0, frames_output="whole video").result
    assert torch.allclose(loaded[0].float(), regen[0], atol=0.5 / 255 + 1e-6)
    for ref, expected in ((regen[2], regen[0]), (run_name, video)):
        loaded = load.execute(run_name=ref, fps=8.0, frames_output="whole video").result
        assert torch.allclose(loaded[0].float(), expected, atol=0.5 / 255 + 1e-6), ref


def test_frames_output_last_frames_and_color_match_modes(comfy_host, wan, monkeypatch):
    first = frames(9, 10)
    whole = extend(comfy_host, wan["t2v"], wan["vae"], first, total_frames=17)[0]
    tail = extend(comfy_host, wan["t2v"], wan["vae"], first, total_frames=17,
                  frames_output=pack_module(comfy_host, "extend").LAST_FRAMES)[0]
    # the last 16 frames: 8 new ones exactly, the first chunk's as the run store holds them (uint8)
    assert tail.shape == (16, SIZE, SIZE, 3) and torch.equal(tail[-8:], whole[-8:])
    assert torch.equal(tail[:8], quantised(whole[1:9]))
    for mode in ("overlap", "anchor"):
        out, info, _ = extend(comfy_host, wan["t2v"], wan["vae"], first, total_frames=17, color_match=mode)
        assert torch.equal(out[:9], first) and not torch.equal(out[9:], whole[9:])
        assert torch.isfinite(out).all() and out.shape == whole.shape


# ----------------------------------------------------------------------------------------------- digests
def test_lora_changes_the_digest_and_strength_zero_reuses(comfy_host, wan, monkeypatch):
    digests = pack_module(comfy_host, "extend_digests")
    loader = comfy_host.nodes.LoraLoaderModelOnly()
    base = wan["t2v"]
    with_lora = loader.load_lora_model_only(base, wan["lora"], 1.0)[0]
    zero = loader.load_lora_model_only(base, wan["lora"], 0.0)[0]
    assert len(with_lora.patches) == 4
    f = digests.host_model_fingerprint
    assert f(with_lora) != f(base) and f(zero) == f(base)
    assert f(loader.load_lora_model_only(base, wan["lora"], 0.5)[0]) != f(with_lora)

    counter = SampleCounter(monkeypatch)
    name = f"vm-lora-{uuid.uuid4().hex[:8]}"
    first = frames(9, 11)
    plain = extend(comfy_host, base, wan["vae"], first, total_frames=13, run_name=name)
    forget_memory(comfy_host)
    extend(comfy_host, zero, wan["vae"], first, total_frames=13, run_name=name)
    assert counter.count == 1  # strength 0: the same model, reused
    lora = extend(comfy_host, with_lora, wan["vae"], first, total_frames=13, run_name=name)
    assert counter.count == 2 and not torch.equal(lora[0][9:], plain[0][9:])
    # After sampling with the LoRA (the host patches it into the shared weights in place, keeping the originals in
    # its backup) the base model's fingerprint, computed afresh, is unchanged.
    before = f(base)
    base.model._streamingt2v_host_fingerprint = None
    assert f(base) == before


def test_host_model_fingerprint_samples_instead_of_hashing_all_weights(comfy_host, wan):
    digests = pack_module(comfy_host, "extend_digests")

    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_model = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.zeros(2048, 2048)) for _ in range(40)])  # 168M values, 670 MB

    class Patcher:
        def __init__(self):
            self.model, self.patches, self.object_patches, self.model_options = Inner(), {}, {}, {}

        def model_dtype(self):
            return torch.float32

    p = Patcher()
    t0 = time.perf_counter()
    first = digests.host_model_fingerprint(p)
    p.model._streamingt2v_host_fingerprint = None
    second = digests.host_model_fingerprint(p)
    assert time.perf_counter() - t0 < 0.5 and first == second
    with torch.no_grad():
        p.model.diffusion_model[3][0, 0] = 1.0  # a sampled value
    p.model._streamingt2v_host_fingerprint = None
    assert digests.host_model_fingerprint(p) != first


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kind, overrides, match", [
    ("t2v", {"control_video": "frames"}, r"^control_video: VACE only"),
    ("t2v", {"vace_strength": 0.5}, r"^vace_strength: VACE only"),
    ("t2v", {"method": "vace"}, r"^method: 'vace' needs a Wan VACE model"),
    ("t2v", {"anchor": "frames"}, r"^anchor: method inpaint"),
    ("vace", {"context_frames": 9}, r"^context_frames: must be shorter than chunk_frames \(9\)"),
    ("vace", {"chunk_frames": 11}, r"^chunk_frames: .*nearest are 9 or 13"),
    ("vace", {"context_frames": 4}, r"^context_frames: .*nearest are 1 or 5"),
    ("vace", {"first_chunk": 3}, r"^first_chunk: has 3 frames, fewer than context_frames \(5\)"),
    ("vace", {"first_chunk": "odd size"}, r"^first_chunk: its height 20 is not a multiple of 8"),
    ("vace", {"vae": "sd"}, r"^vae: an image VAE"),
    ("image", {}, r"^model: .* image model"),
    ("t2v", {"positive": "controlnet"}, r"^positive: holds a ControlNet"),
    ("t2v", {"vae": "ltxv"}, r"^vae: makes 128-channel latents but model \(WAN21\) takes 16"),
])
def test_bad_input_is_refused_before_sampling(comfy_host, wan, monkeypatch, kind, overrides, match):
    counter = SampleCounter(monkeypatch)
    name = f"vm-bad-{uuid.uuid4().hex[:8]}"
    first = frames(9, 12)
    extend(comfy_host, wan["t2v"], wan["vae"], first, total_frames=13, run_name=name)
    runs = pack_module(comfy_host, "runs")
    run = runs.run_store().open(name)
    before = sorted(os.listdir(run.chunks_dir))
    counter.calls.clear()
    kw = dict(overrides)
    model = wan.get(kind)
    if kind == "image":
        model = comfy_host.nodes.UNETLoader  # replaced below
        model = _image_model(comfy_host)
    if kw.get("control_video") == "frames":
        kw["control_video"] = frames(13, 1)
    if kw.get("anchor") == "frames":
        kw["anchor"] = frames(1, 1)
    if kw.get("first_chunk") == 3:
        first = frames(3, 1)
        kw.pop("first_chunk")
    if kw.get("first_chunk") == "odd size":
        first = torch.rand(9, 20, 16, 3)
        kw.pop("first_chunk")
    vae = wan["vae"]
    which = kw.pop("vae", None)
    if which == "sd":
        vae = _sd_vae(comfy_host)
    elif which == "ltxv":
        vae = comfy_host.nodes.CheckpointLoaderSimple().load_checkpoint(write_tiny_ltxv(comfy_host.models_dir))[2]
    if kw.get("positive") == "controlnet":
        kw["positive"] = [[conds()[0][0][0], {"control": object()}]]
    with pytest.raises(ValueError, match=match):
        extend(comfy_host, model, vae, first, total_frames=13, run_name=name, **kw)
    assert counter.count == 0
    assert sorted(os.listdir(run.chunks_dir)) == before


def _image_model(comfy_host):
    """A host image model: the tiny Wan's ModelPatcher with an SD1.5 latent format (4-D latents)."""
    import comfy.latent_formats

    class Fake:
        def __init__(self):
            self.model = type("SD15Model", (), {"latent_format": comfy.latent_formats.SD15()})()
            self.model_options = {}

    return Fake()


def _sd_vae(comfy_host):
    class SDVae:
        latent_channels, latent_dim = 4, 2

        def temporal_compression_decode(self):
            return None

    return SDVae()


# ----------------------------------------------------------------------------------------------- chunk digest
def test_a_chunks_digest_covers_every_input_it_depends_on(comfy_host, wan):
    """Each input a chunk of Extend (video model) depends on changes its digest (so a changed input is sampled
    again, never reused), and what it does not depend on leaves it alone. No sampling: the digest is computed as
    ExtensionRun computes it, from the job's settings, the chunk seed and the uint8 context frames."""
    import copy

    evm = pack_module(comfy_host, "extend_video_model")
    digests = pack_module(comfy_host, "extend_digests")
    vc = pack_module(comfy_host, "video_continuation")
    from streamingt2v_core.sampling.plans import extension_plan
    from streamingt2v_core.video import frames_to_uint8

    pos, neg = conds()
    control = frames(40, 11)

    def job(**kw):
        model, vae = kw.pop("model", wan["vace"]), kw.pop("vae", wan["vae"])
        chunk, context = kw.pop("chunk_frames", CHUNK), kw.pop("context_frames", CONTEXT)
        args = dict(model=model, vae=vae, positive=pos, negative=neg, anchor_embeds=None, grey_embeds=None,
                    steps=2, cfg=3.0, sampler_name="euler", scheduler="simple", width=SIZE, height=SIZE,
                    chunk_frames=chunk, cond_frames=context, method="vace", info=vc.video_model(model, vae),
                    anchor=frames(1, 12), control=control, vace_strength=1.0,
                    plan=extension_plan(21, first_chunk=9, chunk=chunk, cond_frames=context))
        args.update(kw)
        return evm.VideoModelJob(**args)

    context_u8 = frames_to_uint8(frames(CONTEXT, 13))

    def chunk_digest(j, seed=7, index=1, cond=context_u8):
        return digests.chunk_digest(digests.chunk_settings(j, index), seed, cond)

    base = chunk_digest(job())
    assert chunk_digest(job()) == base  # the same inputs: the same digest (reuse)
    other_vae = copy.deepcopy(wan["vae"])
    with torch.no_grad():
        next(other_vae.first_stage_model.parameters()).view(-1)[0] += 0.5
    changed = {
        "seed": chunk_digest(job(), seed=8),
        "context frames": chunk_digest(job(), cond=frames_to_uint8(frames(CONTEXT, 14))),
        "steps": chunk_digest(job(steps=3)),
        "cfg": chunk_digest(job(cfg=3.5)),
        "sampler": chunk_digest(job(sampler_name="uni_pc")),
        "scheduler": chunk_digest(job(scheduler="normal")),
        "positive": chunk_digest(job(positive=conds(1)[0])),
        "negative": chunk_digest(job(negative=conds(2)[0])),
        "vae": chunk_digest(job(vae=other_vae)),
        "model": chunk_digest(job(model=wan["t2v"], method="inpaint", anchor=None, control=None)),
        "method": chunk_digest(job(method="inpaint", anchor=None, control=None)),
        "chunk_frames": chunk_digest(job(chunk_frames=13)),
        "context_frames": chunk_digest(job(context_frames=1), cond=context_u8[-1:]),
        "vace_strength": chunk_digest(job(vace_strength=0.5)),
        "anchor": chunk_digest(job(anchor=frames(1, 15))),
        "color_match": chunk_digest(job(color_match="overlap")),
    }
    same = [name for name, d in changed.items() if d == base]
    assert same == [], f"the digest ignores {same}"
    # control_video: chunk 1's own range (frames 9..12) steers it; control frames elsewhere do not.
    inside, outside = control.clone(), control.clone()
    inside[10] = 1 - inside[10]
    outside[30] = 1 - outside[30]
    assert chunk_digest(job(control=inside)) != base
    assert chunk_digest(job(control=outside)) == base


def test_digests_of_dtypes_and_classes_are_the_same_in_every_process(comfy_host):
    """A host model's unet_config holds its dtype: hashed by id(), it differed in a restarted server, so every
    stored chunk was sampled again after a SIGKILL. Dtypes, devices and classes digest by name, computed here
    by hand (no id in it)."""
    import hashlib

    digests = pack_module(comfy_host, "extend_digests")
    h = hashlib.sha256()
    for part in (b"'dtype'", b"torch.float16", b"'ops'", b"torch.nn.modules.linear.Linear"):
        h.update(part)
    assert digests.digest({"dtype": torch.float16, "ops": torch.nn.Linear}) == h.hexdigest()


def test_a_clip_vision_output_digests_by_its_values(comfy_host):
    """An I2V conditioning holds the host's CLIP_VISION_OUTPUT: digested by its tensors, not its identity, so the
    same image encoded again (a restarted server) gives the same digest, and another image another one."""
    import comfy.clip_vision

    digests = pack_module(comfy_host, "extend_digests")

    def output(embeds: torch.Tensor):
        out = comfy.clip_vision.Output()
        out["image_embeds"] = embeds.clone()
        out["penultimate_hidden_states"] = embeds.clone().expand(1, 3, -1)
        return out

    embeds = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    first, again = output(embeds), output(embeds)
    assert first is not again
    assert digests.digest({"clip_vision_output": first}) == digests.digest({"clip_vision_output": again})
    other = embeds.clone()
    other[0, 3] += 1e-3
    assert digests.digest({"clip_vision_output": output(other)}) != digests.digest({"clip_vision_output": first})

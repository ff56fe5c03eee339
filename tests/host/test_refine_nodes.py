"""StreamingT2V Refine in the real host: our tiny MS-Vid2Vid-XL UNet, a host-native Wan 2.1 model,
bad input, and memory bounded in video length."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

from test_context_blend import (load_tiny_refiner, pack_module, text_cond, tiny_image_model, write_random_taesd,
                                write_tiny_refiner)

REPO_ROOT = Path(__file__).resolve().parents[2]

REFINE_DEFAULTS = dict(resize_mode="pad", upscale_method="bilinear", denoise=0.6, cfg=7.5, guidance_rescale=0.2,
                       sampler_name="dpmpp_2m_sde", scheduler="streamingt2v_trailing", seed=0,
                       blend_mode="randomized", crop_padding=True, output="images", fps=8.0)


def refine_inputs(**overrides) -> dict:
    inputs = dict(REFINE_DEFAULTS)
    inputs.update(overrides)
    return inputs


# ----------------------------------------------------------------------------- our refiner UNet
def test_tiny_msvid2vid_refiner_refines_60_frames_through_the_host(run_prompt, comfy_host, host_encoder_weights):
    """Loader (real LDM key layout) -> Refine, executed by the host: all 60 frames, size as set, finite.

    The VAE is the host's TAESD (SD latent space, 4 channels, x8) with random weights: the full-size
    SD VAE takes minutes for 60 frames on a CPU.
    """
    name = write_tiny_refiner(comfy_host.models_dir)
    write_random_taesd(comfy_host.models_dir)
    prompt = {
        "1": {"class_type": "StreamingT2VModelLoader", "inputs": {"model_name": name, "weight_dtype": "fp32", "kind": "auto"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": host_encoder_weights["text_encoder"].name,
                                                     "type": "stable_diffusion", "device": "default"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a cat surfing a wave"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": ""}},
        "6": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 60, "color": 0x808040}},
        "7": {"class_type": "StreamingT2VRefine", "inputs": refine_inputs(
            images=["6", 0], model=["1", 0], vae=["2", 0], positive=["4", 0], negative=["5", 0],
            width=128, height=80, chunk=24, overlap=8, steps=1)},
        "8": {"class_type": "SaveVideo", "inputs": {"video": ["7", 1], "filename_prefix": "refine_test/tiny",
                                                    "format": "auto", "codec": "auto"}},
    }
    out = run_prompt(prompt)
    images, video = out["7"]
    # 32x32 fitted into 128x80 -> 80x80 content, padding cropped off again; no frame trimmed
    # (the official code would keep 56 of 60 frames).
    assert tuple(images.shape) == (60, 80, 80, 3)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert video.get_components().images.shape[0] == 60
    assert float(video.get_components().frame_rate) == 8.0
    saved = list((comfy_host.output_dir / "refine_test").glob("tiny_*.mp4"))
    assert saved, "the host's SaveVideo wrote no file"


# ----------------------------------------------------------------------------- several windows per call
def test_batched_windows_give_the_same_video_as_one_window_per_call(comfy_host, host_encoder_weights):
    """The real tiny MS-Vid2Vid-XL UNet through the Refine node: 4 windows per model call (and the automatic
    choice) give the same frames as one window per call, in fewer UNet calls of more items."""
    refine = comfy_host.node_class("StreamingT2VRefine")
    name = write_tiny_refiner(comfy_host.models_dir)
    model = comfy_host.node_class("StreamingT2VModelLoader").execute(model_name=name, weight_dtype="fp32",
                                                                     kind="auto").result[0]
    vae = comfy_host.nodes.VAELoader().load_vae(write_random_taesd(comfy_host.models_dir))[0]
    frames = torch.rand(26, 32, 32, 3, generator=torch.Generator().manual_seed(3))
    calls: list[int] = []
    counted = model.clone()
    counted.set_model_unet_function_wrapper(
        lambda apply, args: (calls.append(args["input"].shape[0]), apply(args["input"], args["timestep"], **args["c"]))[1])

    def run(max_batch: int):
        calls.clear()
        pack_module("refine").handler_hook = lambda h: setattr(h, "max_batch", max_batch)
        try:
            images, _ = refine.execute(images=frames, model=counted, vae=vae, positive=text_cond(0),
                                       negative=text_cond(1), **refine_inputs(width=64, height=80, chunk=8, overlap=2,
                                                                              steps=1)).result
        finally:
            pack_module("refine").handler_hook = None
        return images, list(calls)

    one, one_calls = run(1)
    four, four_calls = run(4)
    auto, auto_calls = run(0)
    # 26 frames -> windows (0,8) (6,14) (12,20) (18,26); CFG: cond and uncond batched by the host (2 items/window)
    assert one_calls == [2] * 4
    assert four_calls == [8]
    assert max(auto_calls) > 2  # free RAM is plenty for these windows: the automatic choice batches them
    # Same frames up to float summation order (batched matmuls/convs block differently): 1e-4 in [0, 1] pixels is
    # 1/40 of an 8-bit level; a wrong window order or mixed-up conditioning changes pixels by ~1e-1.
    torch.testing.assert_close(four, one, rtol=0, atol=1e-4)
    torch.testing.assert_close(auto, one, rtol=0, atol=1e-4)
    assert torch.isfinite(one).all() and one.shape == (26, 64, 64, 3)


def test_refine_defaults_are_the_12gb_first_try():
    """video_file output and 1024x592 (a size MS-Vid2Vid-XL takes) unless the user changes them."""
    from streamingt2v_core.models.config import RefinerUNetConfig

    schema = pack_module("refine").Refine.define_schema()
    defaults = {i.id: getattr(i, "default", None) for i in schema.inputs}
    assert defaults["output"] == "video_file"
    width, height = defaults["width"], defaults["height"]
    assert (width, height) == (1024, 592) and width % 64 == 0 and (height - 16) % 64 == 0
    RefinerUNetConfig.full().check_latent_size(height // 8, width // 8)  # raises if the refiner cannot take it
    assert [o.display_name for o in schema.outputs] == ["images", "video"]


# ----------------------------------------------------------------------------- a host video model
def write_tiny_wan21(models_dir: Path) -> tuple[str, str]:
    """Tiny random Wan 2.1 (t2v) diffusion model and Wan 2.1 VAE, built from the host's own classes
    so the files hold exactly the key layout the host's UNETLoader / VAELoader detect."""
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops
    from safetensors.torch import save_file

    unet_path = models_dir / "diffusion_models" / "tiny_wan21_t2v.safetensors"
    vae_path = models_dir / "vae" / "tiny_wan21_vae.safetensors"
    g = torch.Generator().manual_seed(0)
    if not unet_path.exists():
        # dim 128 = one attention head (the host derives heads as dim // 128); one block.
        net = comfy.ldm.wan.model.WanModel(model_type="t2v", dim=128, ffn_dim=256, num_heads=1, num_layers=1,
                                           in_dim=16, out_dim=16, text_dim=4096,
                                           operations=comfy.ops.disable_weight_init, device="meta")
        state = {f"model.diffusion_model.{k}": torch.randn(v.shape, generator=g) * 0.02 for k, v in net.state_dict().items()}
        save_file(state, str(unet_path))
    if not vae_path.exists():
        # The host reads the VAE width from decoder.head.0.gamma; everything else is Wan 2.1's.
        vae = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                       temperal_downsample=[False, True, True], dropout=0.0)
        state = {k: (torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v).contiguous()
                 for k, v in vae.state_dict().items()}
        save_file(state, str(vae_path))
    return unet_path.name, vae_path.name


@pytest.fixture(scope="module")
def tiny_wan(comfy_host):
    unet_name, vae_name = write_tiny_wan21(comfy_host.models_dir)
    nodes = comfy_host.nodes
    model = nodes.UNETLoader().load_unet(unet_name, "default")[0]
    vae = nodes.VAELoader().load_vae(vae_name)[0]
    return model, vae


def test_host_wan21_model_runs_through_the_same_refine_node(comfy_host, tiny_wan):
    """Any host video model: a Wan 2.1 (flow matching, 16 channels, 4x temporal VAE) from the host's loaders."""
    model, vae = tiny_wan
    assert type(model.model).__name__ == "WAN21" and vae.latent_dim == 3
    refine = comfy_host.node_class("StreamingT2VRefine")
    cond = [[torch.randn(1, 8, 4096, generator=torch.Generator().manual_seed(0)), {}]]
    uncond = [[torch.zeros(1, 8, 4096), {}]]
    frames = torch.rand(25, 24, 24, 3, generator=torch.Generator().manual_seed(1))
    windows = []
    pack_module("refine").handler_hook = lambda h: setattr(h, "window_observer", lambda step, i, span, x, s: windows.append(span))
    try:
        images, video = refine.execute(images=frames, model=model, vae=vae, positive=cond, negative=uncond,
                                       **refine_inputs(width=64, height=32, chunk=4, overlap=2, steps=2,
                                                       output="video_file", crop_padding=False)).result
    finally:
        pack_module("refine").handler_hook = None
    # 25 frames -> one VAE segment of 25 frames -> 7 latent frames -> windows of 4 overlapping by 2.
    assert sorted(set(windows)) == [(0, 4), (2, 6), (3, 7)]
    assert tuple(images.shape) == (1, 32, 64, 3) and torch.isfinite(images).all()  # first frame, padding kept
    path = video.get_stream_source()
    with av.open(path) as container:
        decoded = [f for f in container.decode(video=0)]
    assert len(decoded) == 25 and (decoded[0].height, decoded[0].width) == (32, 64)
    assert video.get_dimensions() == (64, 32)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def refiner(comfy_host):
    return load_tiny_refiner(comfy_host)


class _SDVAEStub:
    """Only what the input checks read from a host SD VAE (no weights needed to be refused)."""

    latent_channels = 4
    latent_dim = 2
    downscale_ratio = 8

    def spacial_compression_encode(self):
        return 8


@pytest.mark.parametrize("overrides, frames, match", [
    (dict(chunk=24, overlap=8), 20, "images has 20 frames .* fewer than one chunk"),
    (dict(chunk=8, overlap=8), 30, "overlap must be an integer in \\[0, chunk - 1\\]"),
    (dict(chunk=8, overlap=2, width=60), 30, "width must be a multiple of 8"),
    (dict(chunk=8, overlap=2, height=36), 30, "height must be a multiple of 8"),
    # 72 px = 9 latent rows: MS-Vid2Vid-XL's asymmetric downsampling cannot restore odd sizes.
    (dict(chunk=8, overlap=2, height=72), 30, "width/height: 64x72 pixels cannot be taken by this model"),
])
def test_bad_input_names_the_input(comfy_host, refiner, overrides, frames, match):
    refine = comfy_host.node_class("StreamingT2VRefine")
    settings = refine_inputs(width=64, height=80, steps=1)
    settings.update(overrides)
    with pytest.raises(ValueError, match=match):
        refine.execute(images=torch.rand(frames, 16, 16, 3), model=refiner, vae=_SDVAEStub(),
                       positive=text_cond(0), negative=text_cond(1), **settings)


def test_image_model_and_wrong_vae_are_refused(comfy_host, refiner, tiny_wan):
    refine = comfy_host.node_class("StreamingT2VRefine")
    settings = refine_inputs(width=64, height=80, steps=1, chunk=8, overlap=2)
    with pytest.raises(ValueError, match="model must be a video model"):
        refine.execute(images=torch.rand(30, 16, 16, 3), model=tiny_image_model(), vae=_SDVAEStub(),
                       positive=text_cond(0), negative=text_cond(1), **settings)
    with pytest.raises(ValueError, match="vae makes 16-channel latents but the model expects 4"):
        refine.execute(images=torch.rand(30, 16, 16, 3), model=refiner, vae=tiny_wan[1],
                       positive=text_cond(0), negative=text_cond(1), **settings)
    # Wan: 8x VAE cells times a 2x2 patch -> multiples of 16.
    with pytest.raises(ValueError, match="width must be a multiple of 16"):
        refine.execute(images=torch.rand(30, 16, 16, 3), model=tiny_wan[0], vae=tiny_wan[1],
                       positive=text_cond(0), negative=text_cond(1), **dict(settings, width=72))


# ----------------------------------------------------------------------------- memory
MEMORY_SCRIPT = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests/host")
from pathlib import Path
import torch
from harness import boot_host
host = boot_host(Path(sys.argv[2]))
import test_context_blend as tcb
vae = host.nodes.VAELoader().load_vae(tcb.write_random_taesd(host.models_dir))[0]
# Nor is TAESD's: its convolutions took 3 of the 4 minutes. The host's VAE object (batching, pixel
# pre/post-processing, devices) stays; only the module's encode/decode become pooling and upsampling of the
# same shapes (8x per side, 4 latent channels), so every buffer the node and the host allocate is the same size.
import torch.nn.functional as F
taesd = vae.first_stage_model
taesd.encode = lambda x: torch.cat([F.avg_pool2d(x, 8), F.avg_pool2d(x, 8)[:, :1]], dim=1)
taesd.decode = lambda z: F.interpolate(z[:, :3], scale_factor=8, mode="nearest")
# The UNet's cost is not what this test is about: a stand-in x0 (through the host's own
# model_function_wrapper) keeps it fast; the data path (encode, latent, windows, decode, writer) is the node's.
model = tcb.with_denoiser(tcb.load_tiny_refiner(host), lambda x, sigma: 0.5 * x / (1 + sigma.reshape(-1, 1, 1, 1, 1) ** 2))
refine = host.node_class("StreamingT2VRefine")
frames = int(sys.argv[3]); width = int(sys.argv[4]); height = int(sys.argv[5])
images = torch.rand(frames, 256, 256, 3)
def rss_mb():
    with open("/proc/self/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0] / 1024
before = rss_mb()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.time()
img, video = refine.execute(images=images, model=model, vae=vae, positive=tcb.text_cond(0), negative=tcb.text_cond(1),
    width=width, height=height, resize_mode="pad", upscale_method="bilinear", chunk=24, overlap=8, denoise=0.6, steps=1,
    cfg=1.0, guidance_rescale=0.0, sampler_name="euler", scheduler="streamingt2v_trailing", seed=0,
    blend_mode="randomized", crop_padding=True, output="video_file", fps=8.0).result
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_before_mb": before, "peak_before_mb": peak_before, "peak_mb": peak,
                  "frames": video.get_frame_count(), "seconds": time.time() - t}))
"""


def _refine_in_subprocess(tmp_path, frames: int, width: int, height: int) -> dict:
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(REPO_ROOT), str(tmp_path / f"base{frames}"),
                             str(frames), str(width), str(height)],
                            capture_output=True, text=True, timeout=900, cwd=str(REPO_ROOT))
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    stats = json.loads(lines[-1])
    assert stats["frames"] == frames
    return stats


def test_refining_600_frames_keeps_memory_bounded_in_video_length(tmp_path):
    """Peak RSS added by the node grows far less with video length than the frames themselves.

    600 and 150 frames of 256x256 input are refined on a 128x144 canvas (128x128 content; 144 rows =
    18 latent rows, a size the MS-Vid2Vid-XL resampling takes) with video_file output, each in a
    fresh process; we compare the peak RSS each run adds on top of its own input and models.
    What may grow with length: the whole-video latent (450 extra frames x 4 x 18 x 16 x 4 B = 2 MiB)
    and the sampler's handful of copies of it (x, noise, denoised, per-window x0 of each cond:
    ~10 copies, ~20 MiB). What must not: pixels. The 450 extra frames at the working size as float32
    are 450 x 144 x 128 x 3 x 4 B = 95 MiB; the bound is half of that. A node that kept the refined
    frames (IMAGE batch), the resized input or the decoded frames for the whole video would exceed
    it; VAE calls are at most 8 frames whatever the length.
    """
    width, height = 128, 144
    short = _refine_in_subprocess(tmp_path, 150, width, height)
    long = _refine_in_subprocess(tmp_path, 600, width, height)
    added = {n: s["peak_mb"] - s["rss_before_mb"] for n, s in ((150, short), (600, long))}
    extra_frames_mb = (600 - 150) * width * height * 3 * 4 / 2**20
    assert added[600] - added[150] < 0.5 * extra_frames_mb, (added, extra_frames_mb, short, long)

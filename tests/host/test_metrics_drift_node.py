"""The Drift & Seams node in the real host: synthetic videos whose joins and drift are known go in as
mp4 files through the host's LoadVideo, the node must find the jump and the drift; CLIP similarity
with the host's CLIPVisionLoader; clear errors for bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from harness import PromptExecutionError

from streamingt2v_core.metrics.synthetic import write_video
from streamingt2v_core.metrics.synthetic_drift import drift_video, jump_video, loop_pan_video

NODE = "StreamingT2VDriftSeams"


@pytest.fixture(scope="module")
def videos(comfy_host) -> dict[str, str]:
    made = {"clean": loop_pan_video(48), "jump": jump_video(48, join_frame=32),
            "drift": drift_video(48, lab_step=(0.0, 0.4, 0.0)), "short": loop_pan_video(24)}
    names = {}
    for name, frames in made.items():
        names[name] = f"h6_drift_{name}.mp4"
        write_video(comfy_host.input_dir / names[name], frames, fps=8)
    return names


def drift_prompt(video: str, key: str = "d", **inputs) -> dict:
    node_inputs = {"images": ["c", 0], "chunk_plan": "extension", "first_chunk": 16, "new_frames_per_chunk": 8,
                   "clip_frames_per_chunk": 8, "filename_prefix": f"h6test/{key}"}
    node_inputs.update(inputs)
    return {"v": {"class_type": "LoadVideo", "inputs": {"file": video}},
            "c": {"class_type": "GetVideoComponents", "inputs": {"video": ["v", 0]}},
            key: {"class_type": NODE, "inputs": node_inputs}}


def latest_report(comfy_host, key: str) -> dict:
    reports = sorted((comfy_host.output_dir / "h6test").glob(f"{key}_*.json"))
    return json.loads(reports[-1].read_text())


def test_the_node_is_registered_as_an_output_node(comfy_host):
    info = comfy_host.node_info(NODE)
    assert info["display_name"] == "StreamingT2V Drift & Seams"
    assert info["category"] == "StreamingT2V/metrics" and info["output_node"] is True
    assert info["output"] == ["FLOAT", "STRING", "FLOAT", "STREAMINGT2V_SERIES", "IMAGE"]
    assert info["output_name"] == ["seam_score", "flagged_joins", "color_drift", "series", "plot"]
    assert list(info["input"]["optional"]) == ["clip_vision"]
    assert info["input"]["required"]["chunk_plan"][1]["options"] == ["extension", "refiner"]


def test_clean_jump_and_drift_videos_through_the_executor(comfy_host, run_prompt, videos):
    results = {}
    for name in ("clean", "jump", "drift"):
        results[name] = run_prompt(drift_prompt(videos[name], key=name))[name]
        results[name + "_shown"] = comfy_host.ui_outputs()[name]
        results[name + "_ui"] = results[name + "_shown"]["text"][0]

    seam, flagged, color_drift, series, plot = results["clean"]
    assert flagged == "" and seam == pytest.approx(1.0, abs=0.05) and color_drift < 0.5
    assert plot.shape == (1, 520, 768, 3) and plot.std() > 0.05
    assert "No clip_vision connected: colour statistics only" in results["clean_ui"]
    # Numbers and plot in the node's result box (js/streamingt2v.js), as the other metric nodes show them:
    # the plot saved to the temp folder, not the host's own preview that would grow the node after a run.
    shown = results["clean_shown"]
    plot_file = shown["streamingt2v_plot"][0]
    assert plot_file["type"] == "temp" and plot_file["filename"].endswith(".png")
    assert (comfy_host.base_dir / "temp" / plot_file.get("subfolder", "") / plot_file["filename"]).is_file()
    assert "images" not in shown

    seam, flagged, color_drift, series, _ = results["jump"]
    assert flagged == "32" and seam > 1.2
    assert color_drift == pytest.approx(12, abs=1.0)  # L + 12 from frame 32 on
    assert series["cut_frames"] == [32] and len(series["values"]) == 47
    assert "1 of 4 joins stand out: frame 32" in results["jump_ui"]

    seam, flagged, color_drift, _, _ = results["drift"]
    assert flagged == "" and seam == pytest.approx(1.0, abs=0.05)
    assert color_drift == pytest.approx(0.4 * (40 + 3.5 - 7.5), abs=1.0)  # last chunk vs anchor chunk
    report = latest_report(comfy_host, "drift")
    assert report["drift_per_chunk"] == pytest.approx(3.2, abs=0.3)
    assert [c["frames"] for c in report["chunks"]] == [[0, 16], [16, 24], [24, 32], [32, 40], [40, 48]]
    assert report["clip"] is None and report["clip_vision"] is None
    assert "report: h6test/drift_" in results["drift_ui"]


def test_clip_vision_similarity_with_the_hosts_clip_vision_loader(comfy_host, run_prompt, videos, host_weights):
    # The host tests' tiny random CLIP ViT-H/14 (1024-wide projection) through the host's own loader; 3 frames
    # (anchor, one per chunk).
    prompt = drift_prompt(videos["short"], key="clip", clip_frames_per_chunk=1)
    prompt["cv"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": host_weights["clip_vision"].name}}
    prompt["clip"]["inputs"]["clip_vision"] = ["cv", 0]
    _, _, _, series, plot = run_prompt(prompt)["clip"]
    assert plot.shape == (1, 780, 768, 3)  # three panels
    assert series["clip_frames"] == [0, 15, 23]
    assert series["clip_similarity"][0] == pytest.approx(1.0, abs=1e-4)  # the anchor against itself
    assert all(-1.0 <= v <= 1.0 + 1e-6 for v in series["clip_similarity"])
    report = latest_report(comfy_host, "clip")
    assert report["clip"]["frames"] == [0, 15, 23] and report["clip_vision"] == "ClipVisionModel"
    assert "Image similarity to the anchor frame" in comfy_host.ui_outputs()["clip"]["text"][0]


def test_a_video_of_one_chunk_is_refused_before_any_work(run_prompt):
    prompt = {"e": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 12, "color": 0}},
              "d": {"class_type": NODE, "inputs": {
                  "images": ["e", 0], "chunk_plan": "extension", "first_chunk": 16, "new_frames_per_chunk": 8,
                  "clip_frames_per_chunk": 8, "filename_prefix": "h6test/bad"}}}
    with pytest.raises(PromptExecutionError, match=r"images: .*at least 2 chunks .*got 12"):
        run_prompt(prompt)


def tiny_clip_vision(tmp_path, projection_dim: int = 16):
    """A real host ClipVisionModel of a tiny CLIP ViT config (random weights)."""
    from comfy.clip_vision import ClipVisionModel

    config = {"hidden_act": "gelu", "hidden_size": 32, "image_size": 32, "intermediate_size": 64,
              "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 2,
              "num_channels": 3, "num_hidden_layers": 2, "patch_size": 8, "projection_dim": projection_dim}
    path = tmp_path / "tiny_clip_vision.json"
    path.write_text(json.dumps(config))
    model = ClipVisionModel(str(path))
    generator = torch.Generator().manual_seed(0)
    model.load_sd({k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in model.get_sd().items()})
    return model


def execute(comfy_host, images: torch.Tensor, clip_vision=None, **inputs):
    args = {"chunk_plan": "extension", "first_chunk": 16, "new_frames_per_chunk": 8, "clip_frames_per_chunk": 8,
            "filename_prefix": "h6test/direct"}
    args.update(inputs)
    return comfy_host.node_class(NODE).execute(images, clip_vision=clip_vision, **args)


def test_embeddings_from_a_host_clip_vision_model_per_chunk(comfy_host, tmp_path):
    frames = torch.from_numpy(drift_video(40, lab_step=(0.0, 0.8, 0.0))).float() / 255
    out = execute(comfy_host, frames, tiny_clip_vision(tmp_path), clip_frames_per_chunk=8)
    series = out.result[3]
    assert series["clip_frames"] == [0, 1, 3, 5, 7, 9, 11, 13, 15] + list(range(16, 40))
    assert series["clip_similarity"][0] == pytest.approx(1.0, abs=1e-5)
    assert all(math.isfinite(v) for v in series["clip_similarity"])


class _NoEmbeds:
    def encode_image(self, image, crop=True):
        return {"last_hidden_state": torch.zeros(image.shape[0], 5, 8)}


class _TokenEmbeds:
    def encode_image(self, image, crop=True):
        return {"image_embeds": torch.zeros(image.shape[0], 5, 8)}


class _NaNEmbeds:
    def encode_image(self, image, crop=True):
        return {"image_embeds": torch.full((image.shape[0], 8), float("nan"))}


@pytest.mark.parametrize("model, message", [
    (object(), r"clip_vision: expected a CLIP_VISION model .*got object"),
    (_NoEmbeds(), r"clip_vision: this image encoder returns no pooled image embedding"),
    (_TokenEmbeds(), r"clip_vision: expected one pooled embedding per frame, \[\d+, D\], got .*\(\d+, 5, 8\)"),
    (_NaNEmbeds(), r"clip_vision: gave NaN or infinite embeddings for frames \[0"),
])
def test_a_clip_vision_of_another_kind_gets_a_clear_error(comfy_host, model, message):
    frames = torch.from_numpy(loop_pan_video(24, 32, 32)).float() / 255
    with pytest.raises(ValueError, match=message):
        execute(comfy_host, frames, model)


def test_nan_frames_are_reported_and_a_nan_anchor_chunk_is_refused(comfy_host, tmp_path):
    frames = torch.from_numpy(jump_video(48, join_frame=32, height=32, width=32)).float() / 255
    frames[20] = float("nan")
    out = execute(comfy_host, frames, tiny_clip_vision(tmp_path), clip_frames_per_chunk=8)
    seam, flagged, color_drift, series, _ = out.result
    assert flagged == "32" and math.isfinite(seam) and math.isfinite(color_drift)
    assert 20 not in series["clip_frames"]  # a NaN frame is not sent to the encoder
    assert "frame(s) hold NaN" in out.ui["text"][0]
    frames[:16] = float("nan")
    with pytest.raises(ValueError, match=r"images: every frame of the anchor chunk \(frames 0..15\)"):
        execute(comfy_host, frames)
    assert not np.isnan(color_drift)

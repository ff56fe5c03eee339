"""Bad inputs to the metric nodes (SCuts, MAWE, CLIP Score, Drift & Seams) through the real host (cases and checks:
bad_inputs_helpers).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import pytest
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    BAD, CLIP, DRIFT, MAWE, SCUTS, Bench, bench, Case, check_case, spoiled,
)

from streamingt2v_core.metrics.synthetic import SAMPLE_CLIP_NAME


def metric(node: str, frames: int = 20, color: int = 0x8844CC, images=None, **inputs) -> Callable[[Bench], dict]:
    """A metric node on an EmptyImage video (a static one: every frame the same colour)."""
    defaults = {
        "StreamingT2VSCuts": {"fps": 8.0},
        "StreamingT2VMAWE": {"flow_backend": "dis", "raft_weights": "none", "coeff": 9.5, "size": 64},
        "StreamingT2VCLIPScore": {"prompt": "a purple square", "clip_checkpoint": SAMPLE_CLIP_NAME, "architecture": "auto"},
        "StreamingT2VDriftSeams": {"first_chunk": 16, "new_frames_per_chunk": 8, "clip_frames_per_chunk": 2},
    }[node]

    def build(b: Bench) -> dict:
        api = {"e": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": frames,
                                                           "color": color}}}
        source = ["e", 0] if images is None else images(api, b)
        api["n"] = {"class_type": node, "inputs": {"images": source, "chunk_plan": "extension",
                                                   "filename_prefix": "bad_inputs/metric", **defaults}}
        for k, v in inputs.items():
            api["n"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


def nan_frames(frames: str = "3,5"):
    return lambda api, b: spoiled(api, ["e", 0], "nan", frames)


def with_files(value: str):
    return lambda api, b: b.files[value]


def ui_line(node: str, contains: str) -> Callable[[dict, Any], str]:
    """A line of the text a metric node shows after its run."""
    def read(outputs: dict, host) -> str:
        text = "\n".join(host.ui_outputs()[node]["text"])
        return next(line for line in text.splitlines() if contains in line)
    return read


def output_value(node: str, output: int, label: str) -> Callable[[dict, Any], str]:
    def read(outputs: dict, host) -> str:
        return f"{label} = {outputs[node][output]}"
    return read


def _without_raft(original):
    return _only_raft(original)


def _only_raft(original, *names: str):
    """models/raft as if it held only ``names``."""
    return lambda folder, *a, **k: list(names) if folder == "raft" else original(folder, *a, **k)


CASES: list[Case] = [
    # Metrics
    Case("scuts-nan", SCUTS, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*SCuts", metric("StreamingT2VSCuts", images=nan_frames())),
    Case("scuts-one-frame", SCUTS, "images", "a single frame",
         r"a single frame: there is no pair of frames to compare, so SCuts is 0 by construction",
         metric("StreamingT2VSCuts", frames=1), outcome="note", read=ui_line("n", "single frame")),
    Case("scuts-short", SCUTS, "images", "12 frames",
         r"12 frames are too few for AdaptiveDetector to find any cut \(it needs at least 18",
         metric("StreamingT2VSCuts", frames=12), outcome="note", read=ui_line("n", "too few")),
    Case("scuts-255", SCUTS, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "scale", factor=255.0))),
    Case("scuts-gray", SCUTS, "images", "grayscale frames (1 channel)",
         r"^images: expected RGB frames .*1 channel \(grayscale\?\)",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "gray"))),
    Case("scuts-rgba", SCUTS, "images", "RGBA frames",
         r"^note: images: the frames have 4 channels \(RGBA\); the alpha channel was dropped",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "rgba")), outcome="note",
         read=ui_line("n", "RGBA")),
    Case("mawe-one-frame", MAWE, "images", "a single frame",
         r"^images: needs at least 2 frames \(MAWE compares pairs of consecutive frames\), got 1",
         metric("StreamingT2VMAWE", frames=1)),
    Case("mawe-nan", MAWE, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*MAWE", metric("StreamingT2VMAWE", images=nan_frames())),
    Case("mawe-static", MAWE, "images", "a static video (no motion)",
         r"no motion: the video is static .*MAWE is 0 by definition", metric("StreamingT2VMAWE"),
         outcome="defined", read=ui_line("n", "no motion")),
    Case("mawe-junk-raft", MAWE, "flow_backend", "a junk file in models/raft, flow_backend auto",
         r"^flow_used = opencv_dis_medium \(flow_backend auto fell back: models/raft holds no RAFT-large state dict "
         r"\('bad_inputs/junk.pth'",
         metric("StreamingT2VMAWE", flow_backend="auto"), outcome="fallback", read=output_value("n", 2, "flow_used"),
         patch=lambda mp, b: mp.setattr(b.host.folder_paths, "get_filename_list",
                                        _only_raft(b.host.folder_paths.get_filename_list, f"{BAD}/junk.pth"))),
    Case("mawe-bad-raft-auto", MAWE, "flow_backend", "a file with RAFT's tensor names but wrong shapes, auto",
         r"^flow_used = opencv_dis_medium \(flow_backend auto fell back: raft_weights 'raft_wrong_shapes.safetensors' "
         r"could not be loaded \(the file does not fit RAFT-large: \d+ tensors have other shapes",
         metric("StreamingT2VMAWE", flow_backend="auto", raft_weights=with_files("raft_wrong_shapes")),
         outcome="fallback", read=output_value("n", 2, "flow_used")),
    Case("mawe-bad-raft", MAWE, "raft_weights", "the same file with flow_backend raft",
         r"^raft_weights: 'raft_wrong_shapes.safetensors' cannot be used: the file does not fit RAFT-large: \d+ tensors",
         metric("StreamingT2VMAWE", flow_backend="raft", size=128, raft_weights=with_files("raft_wrong_shapes"))),
    Case("mawe-no-raft", MAWE, "raft_weights", "flow_backend raft and no weights selected",
         r"^raft_weights: flow_backend is 'raft' but no RAFT-large weights file is selected",
         metric("StreamingT2VMAWE", flow_backend="raft", size=128),
         patch=lambda mp, b: mp.setattr(b.host.folder_paths, "get_filename_list",
                                        _without_raft(b.host.folder_paths.get_filename_list))),
    Case("clip-empty-prompt", CLIP, "prompt", "an empty prompt",
         r"^prompt: the CLIP score needs the text the video was generated from",
         metric("StreamingT2VCLIPScore", prompt="  ")),
    Case("clip-nan", CLIP, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*CLIP", metric("StreamingT2VCLIPScore",
                                                                            images=nan_frames())),
    Case("drift-one-chunk", DRIFT, "images", "12 frames (one chunk)",
         r"^images: .*at least 2 chunks", metric("StreamingT2VDriftSeams", frames=12)),
    Case("drift-one-frame", DRIFT, "images", "a single frame",
         r"^images: .*at least 2 chunks", metric("StreamingT2VDriftSeams", frames=1)),
    Case("drift-nan-anchor", DRIFT, "images", "NaN in every frame of the anchor chunk",
         r"^images: every frame of the anchor chunk \(frames 0..15\) holds NaN",
         metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(
             api, ["e", 0], "nan", ",".join(str(i) for i in range(16))))),
    Case("drift-nan-frames", DRIFT, "images", "NaN in frames 20 and 21",
         r"NaN", metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(
             api, ["e", 0], "nan", "20,21")), outcome="note", read=ui_line("n", "NaN")),
    Case("drift-255", DRIFT, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(api, ["e", 0], "scale",
                                                                                  factor=255.0))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)


def test_a_static_video_has_mawe_zero_and_a_flickering_one_says_why_it_is_inf(bench):
    outputs = bench.host.run_prompt(metric("StreamingT2VMAWE")(bench))
    mawe, robust, flow, series, _ = outputs["n"]
    assert mawe == 0.0 and robust == 0.0 and flow == "opencv_dis_medium"
    assert not any(math.isnan(v) for v in series["values"])
    # Two colours alternating without motion: warp error > 0 over 0 motion -> inf, with a note saying why.
    flicker = metric("StreamingT2VMAWE", images=lambda api, b: spoiled(api, ["e", 0], "scale", "1,3,5,7,9", 0.5))
    mawe, robust, _, _, _ = bench.host.run_prompt(flicker(bench))["n"]
    assert math.isinf(mawe) and math.isinf(robust)
    assert "change without any motion" in "\n".join(bench.host.ui_outputs()["n"]["text"])

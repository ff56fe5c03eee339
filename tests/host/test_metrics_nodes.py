"""The metric nodes in the real host: registered, run through the executor, write reports, and the
evaluate_video.json workflow validates and executes on a synthetic video written with PyAV."""
from __future__ import annotations

import json

import pytest
import torch
from harness import PromptExecutionError, WORKFLOWS_DIR

from scripts.workflow_format import validate_workflow, workflow_to_api
from streamingt2v_core.metrics.synthetic import SAMPLE_CLIP_NAME, SAMPLE_VIDEO_NAME, write_evaluation_assets

METRIC_NODES = {
    "StreamingT2VSCuts": ("StreamingT2V SCuts", ["INT", "STRING", "STREAMINGT2V_SERIES", "IMAGE"]),
    "StreamingT2VMAWE": ("StreamingT2V MAWE", ["FLOAT", "FLOAT", "STRING", "STREAMINGT2V_SERIES", "IMAGE"]),
    "StreamingT2VCLIPScore": ("StreamingT2V CLIP Score", ["FLOAT", "STREAMINGT2V_SERIES", "IMAGE"]),
}


@pytest.fixture(scope="module")
def assets(comfy_host) -> dict[str, str]:
    return write_evaluation_assets(comfy_host.input_dir, comfy_host.models_dir)


def video_images() -> dict:
    """API nodes: the synthetic sample video (2 scenes of 16 frames, 64x64) as an IMAGE batch."""
    return {
        "v": {"class_type": "LoadVideo", "inputs": {"file": SAMPLE_VIDEO_NAME}},
        "c": {"class_type": "GetVideoComponents", "inputs": {"video": ["v", 0]}},
    }


def test_metric_nodes_are_registered_as_output_nodes(comfy_host):
    for node_id, (display, outputs) in METRIC_NODES.items():
        info = comfy_host.node_info(node_id)
        assert info["display_name"] == display
        assert info["category"] == "StreamingT2V/metrics"
        assert info["output_node"] is True
        assert info["output"] == outputs
        assert info["input"]["required"]["chunk_plan"][1]["options"] == ["none", "extension", "refiner"]


def test_model_folders_are_registered_under_the_models_directory(comfy_host):
    folder_paths = comfy_host.folder_paths
    for name in ("raft", "streamingt2v_metrics"):
        paths = folder_paths.get_folder_paths(name)
        assert str(comfy_host.models_dir / name) in paths
        assert ".safetensors" in folder_paths.folder_names_and_paths[name][1]


def test_the_three_metrics_run_through_the_executor_on_a_synthetic_video(comfy_host, run_prompt, assets):
    prompt = video_images()
    prompt["s"] = {"class_type": "StreamingT2VSCuts", "inputs": {
        "images": ["c", 0], "fps": ["c", 2], "chunk_plan": "extension", "filename_prefix": "h4test/scuts"}}
    prompt["m"] = {"class_type": "StreamingT2VMAWE", "inputs": {
        "images": ["c", 0], "flow_backend": "dis", "raft_weights": "none", "coeff": 9.5, "size": 64,
        "chunk_plan": "refiner", "filename_prefix": "h4test/mawe"}}
    prompt["p"] = {"class_type": "StreamingT2VCLIPScore", "inputs": {
        "images": ["c", 0], "prompt": "two textures", "clip_checkpoint": SAMPLE_CLIP_NAME, "architecture": "auto",
        "chunk_plan": "none", "filename_prefix": "h4test/clip"}}
    out = run_prompt(prompt)

    scuts, cut_frames, series, plot = out["s"]
    assert scuts == 1 and cut_frames == "16"
    assert series["metric"] == "SCuts" and len(series["values"]) == 32 and series["cut_frames"] == [16]
    assert plot.shape == (1, 320, 768, 3) and plot.min() >= 0 and plot.max() <= 1 and plot.std() > 0.05

    mawe, mawe_robust, backend, series, plot = out["m"]
    assert backend == "opencv_dis_medium"
    assert mawe > 0 and mawe_robust > 0
    assert len(series["values"]) == 31 and series["x"][0] == 0.5
    assert plot.shape == (1, 320, 768, 3)

    score, series, plot = out["p"]
    assert len(series["values"]) == 32
    assert score == pytest.approx(sum(series["values"]) / 32, abs=1e-4)

    reports = {p.name.split("_")[0]: json.loads(p.read_text())
               for p in (comfy_host.output_dir / "h4test").glob("*.json")}
    assert reports["scuts"]["scuts"] == 1 and reports["scuts"]["chunk_plan"] == "extension"
    assert reports["mawe"]["flow_backend"] == "opencv_dis_medium" and reports["mawe"]["comparable_to_paper"] is False
    assert reports["mawe"]["mawe_official"] == pytest.approx(mawe)
    assert reports["clip"]["prompt"] == "two textures" and reports["clip"]["score"] == pytest.approx(score)
    ui = comfy_host.ui_outputs()
    assert "SCuts: 1 (at frames 16)" in ui["s"]["text"][0]
    assert "NOT comparable" in ui["m"]["text"][0]


def one_frame_prompt(node: str, **inputs) -> dict:
    return {"e": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "n": {"class_type": node, "inputs": {"images": ["e", 0], "chunk_plan": "none",
                                                  "filename_prefix": "h4test/bad", **inputs}}}


def test_mawe_on_a_single_frame_fails_with_a_clear_error(run_prompt):
    prompt = one_frame_prompt("StreamingT2VMAWE", flow_backend="dis", raft_weights="none", coeff=9.5, size=64)
    with pytest.raises(PromptExecutionError, match="at least 2 frames"):
        run_prompt(prompt)


def test_mawe_raft_without_weights_fails_with_a_clear_error(run_prompt, comfy_host):
    assert comfy_host.folder_paths.get_filename_list("raft") == []
    prompt = video_images()
    prompt["m"] = {"class_type": "StreamingT2VMAWE", "inputs": {
        "images": ["c", 0], "flow_backend": "raft", "raft_weights": "none", "coeff": 9.5, "size": 128,
        "chunk_plan": "none", "filename_prefix": "h4test/bad"}}
    with pytest.raises(PromptExecutionError, match="raft_weights"):
        run_prompt(prompt)


def test_clip_score_with_an_empty_prompt_fails_with_a_clear_error(run_prompt, assets):
    prompt = one_frame_prompt("StreamingT2VCLIPScore", prompt="  ", clip_checkpoint=SAMPLE_CLIP_NAME,
                              architecture="auto")
    with pytest.raises(PromptExecutionError, match="prompt"):
        run_prompt(prompt)


@pytest.fixture
def raft_file(comfy_host):
    from torchvision.models.optical_flow import raft_large

    path = comfy_host.models_dir / "raft" / "raft_large_random.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    yield path.name
    path.unlink()  # other tests expect the DIS fallback


def test_mawe_uses_raft_large_from_the_raft_folder(run_prompt, raft_file, assets):
    prompt = {"e": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0}},
              "m": {"class_type": "StreamingT2VMAWE", "inputs": {
                  "images": ["e", 0], "flow_backend": "auto", "raft_weights": raft_file, "coeff": 9.5, "size": 128,
                  "chunk_plan": "none", "filename_prefix": "h4test/raft"}}}
    _mawe, _robust, backend, series, plot = run_prompt(prompt)["m"]
    assert backend == "raft_large"
    assert len(series["values"]) == 1 and plot.shape == (1, 320, 768, 3)


def test_evaluate_video_workflow_validates_and_executes(comfy_host, run_prompt, assets):
    path = WORKFLOWS_DIR / "evaluate_video.json"
    object_info = comfy_host.object_info()  # after the sample video and CLIP file exist
    # CLIP Score ships switched off, naming the checkpoint the README tells the artist to download; CI picks
    # its tiny one instead, as the artist would pick theirs.
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "StreamingT2VCLIPScore":
            assert node["mode"] == 2
            assert node["widgets_values"][1] == "open_clip_pytorch_model.bin"
            node["mode"] = 0
            node["widgets_values"][1] = SAMPLE_CLIP_NAME
    assert validate_workflow(workflow, object_info) == []
    api = workflow_to_api(workflow, object_info)
    metric_types = {"StreamingT2VSCuts", "StreamingT2VMAWE", "StreamingT2VCLIPScore"}
    assert {n["class_type"] for n in api.values()} == {"LoadVideo", "GetVideoComponents"} | metric_types
    out = run_prompt(api)
    scuts_id = next(k for k, n in api.items() if n["class_type"] == "StreamingT2VSCuts")
    mawe_id = next(k for k, n in api.items() if n["class_type"] == "StreamingT2VMAWE")
    assert out[scuts_id][0] == 1
    assert out[mawe_id][2] == "opencv_dis_medium"  # no RAFT file: the labelled fallback
    # Each metric node shows its numbers and its plot on the node (js/streamingt2v.js draws them).
    ui = comfy_host.ui_outputs()
    for node_id in (k for k, n in api.items() if n["class_type"] in metric_types):
        plot = ui[node_id]["streamingt2v_plot"][0]
        assert plot["type"] == "temp" and plot["filename"].endswith(".png")
        assert (comfy_host.base_dir / "temp" / plot.get("subfolder", "") / plot["filename"]).is_file()
        assert "report:" in ui[node_id]["text"][0]
        assert "images" not in ui[node_id]  # the host's own preview would grow the node after a run

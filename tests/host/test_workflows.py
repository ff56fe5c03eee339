"""Every shipped workflow file loads against the real host's nodes, executes in it, and reads at a
glance.

Workflows are validated exactly as saved (UI format). For execution, the API form gets smaller
settings where a workflow's defaults are sized for a GPU (frames, steps, resolution), so the
whole file runs on tiny random weights in CI; the graph itself is unchanged. The layout check is
the file-only twin of the browser test's check on the live editor (scripts/workflow_layout.py):
a layout regression is caught here in a second, without a browser.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from harness import WORKFLOWS_DIR
from scripts.workflow_format import validate_workflow, workflow_to_api
from scripts.workflow_layout import describe, geometry_from_workflow, layout_problems
from streamingt2v_core.metrics.synthetic import SAMPLE_CLIP_NAME, SAMPLE_VIDEO_NAME

WORKFLOW_FILES = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))

# Small settings for CI, by input name, applied to whichever node has that input; per node type
# where a node needs other values (the MS-Vid2Vid-XL refiner takes latent heights 2 mod 8).
CI_OVERRIDES = {
    "total_frames": 40,
    "steps": 2,
    "width": 64,
    "height": 64,
    "size": 128,  # MAWE's working size (720 in the paper's protocol)
}
CI_OVERRIDES_BY_TYPE = {
    "StreamingT2VRefine": {"width": 64, "height": 80},
    # Wan (VAE stride 4: 1 + 4k frames): a 9-frame first chunk, then chunks of 13 frames whose first
    # 5 are the context, 8 new frames each: 9 + 8 + 8 = 25.
    "WanVaceToVideo": {"length": 9},
    "StreamingT2VExtendVideoModel": {"total_frames": 25, "chunk_frames": 13, "context_frames": 5},
}
# Per workflow where a node's values must follow that workflow's CI plan (Drift & Seams reads the
# chunk plan; Refine's windows count the Wan video's 7 latent frames).
_WAN_CI_PLAN = {"StreamingT2VDriftSeams": {"first_chunk": 9, "new_frames_per_chunk": 8}}
CI_OVERRIDES_BY_WORKFLOW = {
    "wan_vace_long_video.json": _WAN_CI_PLAN,
    "wan_long_video_refined.json": {"StreamingT2VRefine": {"chunk": 4, "overlap": 2}},
}
# Nodes a workflow ships switched off (muted) because they need a file the artist brings, which CI
# has in tiny form: CLIP Score needs an open_clip checkpoint (the host fixtures write a tiny one). The workflow names
# the file the README tells the artist to download; CI picks its tiny one instead, as the artist would pick theirs.
CI_SWITCHED_ON = {"StreamingT2VCLIPScore"}
CI_FILES = {"StreamingT2VCLIPScore": {1: SAMPLE_CLIP_NAME}}  # widget index -> file
MUTED, BYPASSED = 2, 4


def ci_switched_on(name: str) -> dict:
    wf = json.loads((WORKFLOWS_DIR / name).read_text())
    for node in wf["nodes"]:
        if node["type"] in CI_SWITCHED_ON and node.get("mode") in (MUTED, BYPASSED):
            node["mode"] = 0
            for index, file in CI_FILES.get(node["type"], {}).items():
                node["widgets_values"][index] = file
    return wf


def ci_sized(api: dict, name: str | None = None) -> dict:
    api = copy.deepcopy(api)
    by_workflow = CI_OVERRIDES_BY_WORKFLOW.get(name, {})
    for node in api.values():
        values = {**CI_OVERRIDES, **CI_OVERRIDES_BY_TYPE.get(node["class_type"], {}),
                  **by_workflow.get(node["class_type"], {})}
        for name, value in values.items():
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = value
    return api


def test_there_are_workflows():
    assert "frame_plan.json" in WORKFLOW_FILES


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_validates_against_registered_nodes(name, object_info):
    # As CI runs it: switched-off nodes on, with CI's files where the workflow names the artist's (the evaluation
    # workflow's CLIP Score names the checkpoint the README tells the artist to download).
    problems = validate_workflow(ci_switched_on(name), object_info)
    assert problems == []


@pytest.fixture(scope="module")
def stored_run(object_info, host_weights, comfy_host):
    """A run in the run store, for workflows that start from one (Load Run): the text-to-long-video
    workflow at CI size, whose Extend stores its chunks."""
    api = ci_sized(workflow_to_api(WORKFLOWS_DIR / "text_to_long_video.json", object_info))
    comfy_host.run_prompt(api)
    return api


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_executes_in_the_host(name, object_info, host_weights, comfy_host, run_prompt, request):
    workflow = ci_switched_on(name)
    if any(n["type"] == "StreamingT2VLoadRun" for n in workflow["nodes"]):
        request.getfixturevalue("stored_run")
    object_info = comfy_host.object_info()  # after the stored run: Load Run lists the runs there
    api = ci_sized(workflow_to_api(workflow, object_info), name)
    outputs = run_prompt(api)
    assert outputs, f"{name}: nothing executed"
    for node_id, values in outputs.items():
        for value in values:
            if hasattr(value, "isfinite"):
                assert bool(value.isfinite().all()), f"{name}: node {node_id} produced non-finite values"


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_reads_at_a_glance(name, object_info):
    """No overlapping nodes, no group through a node, no link under a node, fan-out links in order,
    and the whole graph fits a 1600x1000 window above the frontend's low-detail zoom."""
    geo = geometry_from_workflow(WORKFLOWS_DIR / name, object_info)
    assert geo.unplaced_links == [], "links whose sockets the file-only check cannot place"
    problems = layout_problems(geo)
    assert problems == [], f"{name} ({describe(geo)}):\n" + "\n".join(problems)


# The editor draws Extend this tall (without its 30 px title bar) once a run has shown a finished
# chunk's preview (the frontend's image preview widget, 220 px at least) and the progress text on
# it; measured by the browser test (test_queue_workflow_from_the_page[text_to_long_video], whose
# after-run check finds the file's size equal to what the editor draws). A workflow whose Extend is
# shorter looks fine when opened and has the node grow over its group and neighbours after a run.
EXTEND_AFTER_RUN_HEIGHT = 838
# Extend's rarely changed inputs sit behind a button (js/extend_options.js): 838 is its height with them
# hidden. The first chunk node grows likewise by its latent preview (seen at 602 in the real UI).
AFTER_RUN_HEIGHT = {"StreamingT2VExtend": EXTEND_AFTER_RUN_HEIGHT, "StreamingT2VInitialChunk": 602}


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_extend_nodes_are_sized_for_after_a_run(name):
    wf = json.loads((WORKFLOWS_DIR / name).read_text())
    for node in wf["nodes"]:
        needed = AFTER_RUN_HEIGHT.get(node["type"])
        if needed is not None:
            assert node["size"][1] >= needed, (
                f"{name}: #{node['id']} {node.get('title')} is {node['size'][1]} tall; after a run the editor draws it "
                f"{needed} tall (its preview), over what lies below it")


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_nodes_are_in_groups_and_titles_say_no_fixed_fps(name):
    """Every node except notes sits in a stage group; no title states a frame rate the node's own
    fps widget can contradict (Create Video was titled "8 fps" whatever its fps said)."""
    wf = json.loads((WORKFLOWS_DIR / name).read_text())
    geo = geometry_from_workflow(wf)
    groups = [box for _title, box in geo.groups]
    assert groups, f"{name} has no groups"
    for node in wf["nodes"]:
        if node["type"] in ("Note", "MarkdownNote"):
            continue
        box = geo.nodes[node["id"]]
        assert any(g.contains_box(box) for g in groups), f"{name}: #{node['id']} {node.get('title')} is in no group"
        assert not re.search(r"\d\s*fps", node.get("title", ""), re.IGNORECASE), node.get("title")


def test_evaluate_video_loads_the_sample_the_pack_writes_at_start_up(comfy_host, tmp_path, monkeypatch):
    """evaluate_video.json opens with its video in place on a fresh install: the pack writes the
    sample into the input folder when it loads (nodes/metrics.py), here into an empty one."""
    import sys

    wf = json.loads((WORKFLOWS_DIR / "evaluate_video.json").read_text())
    files = [n["widgets_values"][0] for n in wf["nodes"] if n["type"] == "LoadVideo"]
    assert files == [SAMPLE_VIDEO_NAME]
    metrics_module = sys.modules[comfy_host.node_class("StreamingT2VMAWE").__module__]
    monkeypatch.setattr(comfy_host.folder_paths, "get_input_directory", lambda: str(tmp_path))
    metrics_module._ensure_sample_video()
    from streamingt2v_core.metrics.frames import read_video_frames

    frames, fps = read_video_frames(str(tmp_path / SAMPLE_VIDEO_NAME))
    assert frames.shape[0] == 32 and frames.shape[1:3] == (64, 64) and fps == 8
    assert [p.name for p in tmp_path.iterdir()] == [SAMPLE_VIDEO_NAME]  # nothing else left behind


def _frame_plan_ui() -> dict:
    return json.loads((WORKFLOWS_DIR / "frame_plan.json").read_text())


def test_validator_rejects_a_link_of_the_wrong_type_naming_node_and_input(object_info):
    wf = _frame_plan_ui()
    # feed the INT "frames" output into PreviewAny's "source" (ANY accepts it), then into a typed
    # input instead: the plan node's FLOAT "fps" fed from a STRING output
    wf["nodes"][0]["inputs"] = [{"name": "fps", "type": "FLOAT", "link": 9, "widget": {"name": "fps"}}]
    wf["links"].append([9, 1, 4, 1, 0, "STRING"])
    problems = validate_workflow(wf, object_info)
    assert any("link 9" in p and "StreamingT2VFramePlan" in p and "'fps'" in p and "STRING" in p for p in problems), problems


def test_validator_rejects_out_of_range_and_mistyped_widget_values(object_info):
    wf = _frame_plan_ui()
    wf["nodes"][0]["widgets_values"] = [4, 8, 16, 24, "eight"]
    problems = validate_workflow(wf, object_info)
    assert any("node 1 (StreamingT2VFramePlan" in p and "'total_frames'" in p and "minimum 8" in p for p in problems), problems
    assert any("'refine_overlap'" in p and "integer" in p for p in problems), problems


def test_validator_rejects_unknown_node_types_and_wrong_value_counts(object_info):
    wf = _frame_plan_ui()
    wf["nodes"][1]["type"] = "NoSuchNode"
    wf["nodes"][0]["widgets_values"] = [240, 8]
    problems = validate_workflow(wf, object_info)
    assert any("NoSuchNode" in p and "not registered" in p for p in problems), problems
    assert any("'first_chunk'" in p and "no value" in p for p in problems), problems


def test_validator_rejects_combo_values_not_in_the_options(object_info):
    wf = {"nodes": [{"id": 1, "type": "VAELoader", "inputs": [], "outputs": [], "widgets_values": ["missing_vae.safetensors"]}],
          "links": []}
    problems = validate_workflow(wf, object_info)
    assert any("'vae_name'" in p and "missing_vae.safetensors" in p for p in problems), problems


def test_conversion_to_api_format_keeps_links_and_widget_values(object_info):
    api = workflow_to_api(WORKFLOWS_DIR / "frame_plan.json", object_info)
    assert api["1"]["class_type"] == "StreamingT2VFramePlan"
    assert api["1"]["inputs"] == {"total_frames": 240, "fps": 8, "first_chunk": 16, "refine_chunk": 24, "refine_overlap": 8}
    assert api["2"]["inputs"]["source"] == ["1", 4]
    assert api["3"]["inputs"]["source"] == ["1", 3]


def test_tiny_umt5_support_leaves_real_text_encoders_alone(comfy_host):
    """The Wan workflows' demo UMT5 loads only through scripts/demo_weights_wan.install_tiny_umt5_support, which
    hands the host the sizes read from a tiny UMT5's weights; a real UMT5-XXL (the host's own config) and a T5 v1.1
    XXL (one relative attention bias, not one per block) pass through it unchanged."""
    import torch

    import comfy.ops
    import comfy.text_encoders.t5
    from scripts.demo_weights_wan import TINY_UMT5, tiny_umt5_sizes

    configs = Path(comfy.text_encoders.t5.__file__).parent

    def state(config: dict) -> dict:
        return comfy.text_encoders.t5.T5(config, torch.float16, "meta", comfy.ops.manual_cast).state_dict()

    for name in ("umt5_config_xxl.json", "t5_config_xxl.json"):
        assert tiny_umt5_sizes(state(json.loads((configs / name).read_text()))) is None, name
    tiny = {**json.loads((configs / "umt5_config_xxl.json").read_text()), **TINY_UMT5, "vocab_size": 300}
    assert tiny_umt5_sizes(state(tiny)) == {**TINY_UMT5, "vocab_size": 300}

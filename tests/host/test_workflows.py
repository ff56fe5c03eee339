"""Every shipped workflow file loads against the real host's nodes and executes in it.

Workflows are validated exactly as saved (UI format). For execution, the API form gets smaller
settings where a workflow's defaults are sized for a GPU (frames, steps, resolution), so the
whole file runs on tiny random weights in CI; the graph itself is unchanged.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from harness import WORKFLOWS_DIR
from scripts.workflow_format import validate_workflow, workflow_to_api

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
}


def ci_sized(api: dict) -> dict:
    api = copy.deepcopy(api)
    for node in api.values():
        values = {**CI_OVERRIDES, **CI_OVERRIDES_BY_TYPE.get(node["class_type"], {})}
        for name, value in values.items():
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = value
    return api


def test_there_are_workflows():
    assert "frame_plan.json" in WORKFLOW_FILES


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_validates_against_registered_nodes(name, object_info):
    problems = validate_workflow(WORKFLOWS_DIR / name, object_info)
    assert problems == []


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_workflow_executes_in_the_host(name, object_info, host_weights, comfy_host, run_prompt):
    api = ci_sized(workflow_to_api(WORKFLOWS_DIR / name, object_info))
    outputs = run_prompt(api)
    assert outputs, f"{name}: nothing executed"
    for node_id, values in outputs.items():
        for value in values:
            if hasattr(value, "isfinite"):
                assert bool(value.isfinite().all()), f"{name}: node {node_id} produced non-finite values"


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
    assert any("node 1 (StreamingT2VFramePlan)" in p and "'total_frames'" in p and "minimum 8" in p for p in problems), problems
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

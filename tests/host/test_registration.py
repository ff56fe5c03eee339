"""The pack registers with the real host: node ids, display names, categories, web extension."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_frame_plan_node_registered_with_display_name_and_category(comfy_host):
    info = comfy_host.node_info("StreamingT2VFramePlan")
    assert info["display_name"] == "StreamingT2V Frame Plan"
    assert info["category"] == "StreamingT2V/utils"
    assert info["output_node"] is True


def test_every_pack_node_has_prefixed_id_display_name_category_and_tooltips(comfy_host):
    import importlib

    pack_nodes = [n for n in comfy_host.nodes.NODE_CLASS_MAPPINGS if n.startswith("StreamingT2V")]
    # every node class the pack's modules export is registered under its id
    nodes_pkg = importlib.import_module(comfy_host.node_class("StreamingT2VFramePlan").__module__.rsplit(".", 1)[0])
    exported = {cls.GET_SCHEMA().node_id for cls in nodes_pkg.node_classes()}
    assert exported == set(pack_nodes)
    for node_id in pack_nodes:
        info = comfy_host.node_info(node_id)
        assert info["display_name"].startswith("StreamingT2V "), node_id
        assert info["category"].startswith("StreamingT2V"), node_id
        for section in ("required", "optional"):
            for name, spec in (info["input"].get(section) or {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_web_directory_is_served(comfy_host):
    web_dirs = {Path(p).resolve() for p in comfy_host.nodes.EXTENSION_WEB_DIRS.values()}
    assert (REPO_ROOT / "js").resolve() in web_dirs


def test_frame_plan_node_executes_through_the_host(run_prompt):
    prompt = {"1": {"class_type": "StreamingT2VFramePlan",
                    "inputs": {"total_frames": 1200, "fps": 8.0, "first_chunk": 16, "refine_chunk": 24, "refine_overlap": 8}}}
    out = run_prompt(prompt)
    frames, chunks, windows, seconds, summary = out["1"]
    assert (frames, chunks, windows, seconds) == (1200, 149, 75, 150.0)
    assert "149 chunks" in summary and "75 windows" in summary


def test_frame_plan_rejects_overlap_not_smaller_than_chunk(run_prompt):
    import pytest
    from harness import PromptExecutionError

    prompt = {"1": {"class_type": "StreamingT2VFramePlan",
                    "inputs": {"total_frames": 100, "fps": 8.0, "first_chunk": 16, "refine_chunk": 24, "refine_overlap": 24}}}
    with pytest.raises(PromptExecutionError, match="overlap"):
        run_prompt(prompt)

"""The metric nodes' dropdowns in the real host offer only files that can work (object_info, as the
web UI gets it): CLIP Score lists full open_clip checkpoints, never the SD2 text-only encoder;
MAWE lists torchvision RAFT-large state dicts only. Defaults are sized for a first try."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from streamingt2v_core.metrics import weight_files
from streamingt2v_core.metrics.synthetic import write_tiny_open_clip_checkpoint


@pytest.fixture
def model_folders(comfy_host, tmp_path, monkeypatch):
    """models/streamingt2v_metrics, models/text_encoders and models/raft pointed at empty folders
    of this test (the session's own model folders stay as they are)."""
    folder_paths = comfy_host.folder_paths
    folders = {}
    for name in ("streamingt2v_metrics", "text_encoders", "raft"):
        path = tmp_path / name
        path.mkdir()
        _paths, exts = folder_paths.folder_names_and_paths[name]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, name, ([str(path)], exts))
        folders[name] = path
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    weight_files.clear_cache()
    yield folders
    weight_files.clear_cache()


def _options(comfy_host, node: str, name: str) -> list:
    info = comfy_host.node_info(node)["input"]["required"][name]
    return info[1]["options"] if info[0] == "COMBO" else info[0]


def test_clip_score_lists_only_full_open_clip_checkpoints(comfy_host, model_folders):
    full = model_folders["streamingt2v_metrics"] / "open_clip_vit.safetensors"
    write_tiny_open_clip_checkpoint(full)
    state = load_file(full)
    # The SD2 text encoder in the host's folder, in open_clip layout and in the host's own layout.
    save_file({k: v for k, v in state.items() if not k.startswith("visual.")},
              model_folders["text_encoders"] / "sd2_text_open_clip.safetensors")
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(8, 4)},
              model_folders["text_encoders"] / "open_clip_h_text.safetensors")
    torch.save(state, model_folders["text_encoders"] / "full_clip.bin")  # a full checkpoint there is fine
    (model_folders["streamingt2v_metrics"] / "notes.safetensors").write_bytes(b"not a checkpoint")
    assert _options(comfy_host, "StreamingT2VCLIPScore", "clip_checkpoint") == ["open_clip_vit.safetensors", "full_clip.bin"]


def test_mawe_lists_only_raft_large_state_dicts(comfy_host, model_folders):
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.save(raft_large(weights=None, progress=False).state_dict(), model_folders["raft"] / "raft_large_C_T_SKHT_V2-ff5fadd5.pth")
    torch.save(raft_small(weights=None, progress=False).state_dict(), model_folders["raft"] / "raft_small.pth")
    save_file({"x": torch.zeros(2)}, model_folders["raft"] / "other.safetensors")
    assert _options(comfy_host, "StreamingT2VMAWE", "raft_weights") == ["none", "raft_large_C_T_SKHT_V2-ff5fadd5.pth"]


def test_empty_folders_give_empty_lists_not_errors(comfy_host, model_folders):
    assert _options(comfy_host, "StreamingT2VCLIPScore", "clip_checkpoint") == []
    assert _options(comfy_host, "StreamingT2VMAWE", "raft_weights") == ["none"]


def test_first_try_defaults(comfy_host):
    mawe = comfy_host.node_info("StreamingT2VMAWE")["input"]["required"]
    assert mawe["size"][1]["default"] == 256  # the extender's own size; 720 (the paper's) is a widget edit away
    assert "720" in mawe["size"][1]["tooltip"]
    clip = comfy_host.node_info("StreamingT2VCLIPScore")["input"]["required"]["clip_checkpoint"][1]
    assert "4 GB" in clip["tooltip"]


def test_metric_outputs_are_named_in_the_ui(comfy_host):
    for node in ("StreamingT2VSCuts", "StreamingT2VMAWE", "StreamingT2VCLIPScore", "StreamingT2VFramePlan"):
        info = comfy_host.node_info(node)
        assert info["output_name"] != info["output"], node  # "IMAGE"/"STRING" would mean unnamed
        assert all(name.islower() for name in info["output_name"]), info["output_name"]

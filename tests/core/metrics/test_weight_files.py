"""The metric nodes' dropdown filters: which files are full open_clip checkpoints / RAFT-large, told
from tensor names read without reading tensors, and cached by size and modification time."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from streamingt2v_core.metrics import weight_files
from streamingt2v_core.metrics.synthetic import write_tiny_open_clip_checkpoint


@pytest.fixture(autouse=True)
def _fresh_cache():
    weight_files.clear_cache()
    yield
    weight_files.clear_cache()


def _open_clip_state(tmp_path) -> dict[str, torch.Tensor]:
    path = tmp_path / "full.safetensors"
    write_tiny_open_clip_checkpoint(path)
    from safetensors.torch import load_file

    return load_file(path)


def test_full_open_clip_checkpoints_pass_in_both_file_formats(tmp_path):
    state = _open_clip_state(tmp_path)
    torch.save(state, tmp_path / "full.bin")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    for name in ("full.safetensors", "full.bin", "wrapped.pt"):
        names = weight_files.tensor_names(tmp_path / name)
        assert names and weight_files.is_open_clip_checkpoint(names), name


def test_text_only_and_vision_only_files_are_not_open_clip_checkpoints(tmp_path):
    state = _open_clip_state(tmp_path)
    text_only = {k: v for k, v in state.items() if not k.startswith("visual.")}  # an SD2-style text encoder
    vision_only = {k: v for k, v in state.items() if k.startswith("visual.")}
    save_file(text_only, tmp_path / "text.safetensors")
    save_file(vision_only, tmp_path / "vision.safetensors")
    hf_text = {"text_model.embeddings.token_embedding.weight": torch.zeros(4, 2)}  # the host's SD2 text encoder layout
    save_file(hf_text, tmp_path / "hf.safetensors")
    for name in ("text.safetensors", "vision.safetensors", "hf.safetensors"):
        assert not weight_files.is_open_clip_checkpoint(weight_files.tensor_names(tmp_path / name)), name


def test_raft_large_is_told_from_raft_small_and_other_files(tmp_path):
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.save(raft_large(weights=None, progress=False).state_dict(), tmp_path / "raft_large.pth")
    torch.save(raft_small(weights=None, progress=False).state_dict(), tmp_path / "raft_small.pth")
    large = weight_files.tensor_names(tmp_path / "raft_large.pth")
    assert weight_files.is_raft_large_state_dict(large)
    assert not weight_files.is_raft_large_state_dict(weight_files.tensor_names(tmp_path / "raft_small.pth"))
    assert not weight_files.is_raft_large_state_dict(large[:-1])


def test_unreadable_files_are_not_usable(tmp_path):
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "short.safetensors").write_bytes(b"\x01")
    (tmp_path / "garbage.pth").write_bytes(b"not a zip")
    (tmp_path / "notes.txt").write_text("hello")
    for name in ("garbage.safetensors", "short.safetensors", "garbage.pth", "notes.txt"):
        assert weight_files.tensor_names(tmp_path / name) is None, name
    candidates = [(p.name, str(p)) for p in sorted(tmp_path.iterdir())]
    assert weight_files.usable_files(candidates, weight_files.is_open_clip_checkpoint) == []


def test_only_the_tensor_names_are_read(tmp_path, monkeypatch):
    """A pickle whose tensors cannot be read (mmap=True) still yields its names: nothing but the
    index is touched. The safetensors path never calls torch.load at all."""
    state = _open_clip_state(tmp_path)
    torch.save(state, tmp_path / "full.pt")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    weight_files.tensor_names(tmp_path / "full.safetensors")
    assert calls == []
    weight_files.tensor_names(tmp_path / "full.pt")
    assert calls and calls[0]["mmap"] is True and calls[0]["weights_only"] is True


def test_answers_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    write_tiny_open_clip_checkpoint(path)
    candidates = [("model.safetensors", str(path))]
    assert weight_files.usable_files(candidates, weight_files.is_open_clip_checkpoint) == ["model.safetensors"]
    reads = []
    real = weight_files.tensor_names
    monkeypatch.setattr(weight_files, "tensor_names", lambda p: reads.append(p) or real(p))
    assert weight_files.usable_files(candidates, weight_files.is_open_clip_checkpoint) == ["model.safetensors"]
    assert reads == []  # unchanged file: the cached answer
    save_file({"text_model.x": torch.zeros(2)}, path)  # replaced by a text-only file
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10_000_000))
    assert weight_files.usable_files(candidates, weight_files.is_open_clip_checkpoint) == []
    assert reads == [str(path)]

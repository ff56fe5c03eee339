"""The Model Loader in the real host: its dropdown lists only files of our formats, its outputs are named, and the
original ModelScope text-to-video ``.pth`` loads through it.

The dropdown is what the web UI gets from ``/object_info`` (``Host.node_info`` runs the server's own code). The
models folders get files of every kind a real install has next to ours: an image model, a VAE, a text file with a
weights suffix, a pickle that would run code, a zip archive that is no checkpoint.
"""
from __future__ import annotations

import os
import zipfile

import pytest
import torch

from test_context_blend import pack_module

OURS = {
    "streamingt2v": {
        "tiny_extender_repack.safetensors": ("extender", "repack"),
        "text2video_pytorch_model.pth": ("base_unet3d", "modelscope_t2v"),
        "tiny_refiner_non_ema_0035000.pth": ("refiner_unet", "ms_vid2vid_xl"),
    },
    "diffusion_models": {"tiny_t2v_unet/diffusion_pytorch_model.safetensors": ("base_unet3d", "diffusers")},
}


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _write_foreign(folder) -> list[str]:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
               "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(4)},
              str(folder / "sd15_image_model.safetensors"))
    save_file({"encoder.down.0.block.0.conv1.weight": torch.zeros(2, 2, 3, 3)}, str(folder / "some_vae.safetensors"))
    (folder / "notes.safetensors").write_text("not weights at all\n")
    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": _RunsCode()}, folder / "evil.pth")
    with zipfile.ZipFile(folder / "photos.ckpt", "w") as archive:
        archive.writestr("cat.txt", "meow")
    return ["sd15_image_model.safetensors", "some_vae.safetensors", "notes.safetensors", "evil.pth", "photos.ckpt"]


@pytest.fixture(scope="module")
def model_folders(comfy_host):
    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    for folder, files in OURS.items():
        for name, (kind, layout) in files.items():
            path = comfy_host.models_dir / folder / name
            if not path.exists():
                write_tiny_checkpoint(path, kind, layout, seed=3)
    foreign = [f"{folder}:{name}" for folder in ("streamingt2v", "diffusion_models")
               for name in _write_foreign(comfy_host.models_dir / folder / "others")]
    return foreign


def test_dropdown_lists_our_formats_and_hides_everything_else(comfy_host, model_folders) -> None:
    spec = comfy_host.node_info("StreamingT2VModelLoader")["input"]["required"]["model_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]  # V1 lists / V3 "COMBO" + options
    listed = {name.replace(os.sep, "/") for name in options}
    for files in OURS.values():
        for name in files:
            assert name in listed, f"{name} is one of our formats but not listed: {sorted(listed)}"
    assert not [name for name in listed if name.startswith("others/")], sorted(listed)


def test_outputs_are_named_in_the_ui(comfy_host) -> None:
    info = comfy_host.node_info("StreamingT2VModelLoader")
    assert info["output_name"] == ["model", "model_info"] and info["output"] == ["MODEL", "STRING"]


def test_the_original_modelscope_text_to_video_pth_loads_through_the_node(comfy_host, model_folders) -> None:
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    out = loader.execute(model_name="text2video_pytorch_model.pth", weight_dtype="fp32", kind="auto")
    model, info = out.result
    assert "format: modelscope_t2v" in info and "ModelScope text-to-video UNet3D" in info
    comfy_model = pack_module("comfy_model")
    assert comfy_model.model_kind(model) == "base_unet3d"
    assert model.get_model_object("model_sampling").__class__.__name__ != "", "a host model_sampling is attached"


def test_model_info_says_what_was_assumed(comfy_host, model_folders) -> None:
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    name = "tiny_t2v_unet/diffusion_pytorch_model.safetensors"
    _, info = loader.execute(model_name=name, weight_dtype="fp32", kind="auto").result
    assert "format: diffusers_unet3d" in info
    assert "assumed: norm_num_groups=8 assumed" in info, info  # no config.json beside this file

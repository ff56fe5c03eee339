"""Checkpoint loading: every format round-trips exactly, wrong files give named errors, the refiner key map is
verified shape by shape against the official MS-Vid2Vid-XL key list."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
from pathlib import Path

import pytest
import torch

from safetensors.torch import save_file

from streamingt2v_core.models import RefinerUNetConfig, UNet3D, UNet3DConfig
from streamingt2v_core.models.key_maps import (
    read_key_list,
    UNetKeyMap,
    UNetLayout,
    compare_ldm_map,
    official_to_repack_key,
    repack_to_official_key,
)
from streamingt2v_core.models.loading import (
    CheckpointError,
    convert_checkpoint,
    default_config,
    detect_checkpoint_format,
    load_model,
    save_converted,
)
from streamingt2v_core.models.tiny_checkpoints import LAYOUTS, write_tiny_checkpoint


# The official checkpoints' key lists, copied into the repository (tests/data/official_keys).
KEYS_DIR = Path(__file__).resolve().parents[2] / "data" / "official_keys"

_SUFFIX = {"official_streaming_t2v_ckpt": ".ckpt", "ms_vid2vid_xl": ".pth", "modelscope_t2v": ".pth"}


def _read_tsv(name: str) -> dict[str, tuple[int, ...]]:
    return read_key_list(KEYS_DIR / name)


def _assert_state_equal(
    model: torch.nn.Module, expected: dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> None:
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, ref in expected.items():
        ref = ref.to(dtype) if dtype is not None else ref
        assert got[key].dtype == ref.dtype, key
        assert torch.equal(got[key], ref), f"{key} differs"


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("official") / "streaming_t2v.ckpt"
    return path, write_tiny_checkpoint(path, "extender", "official_streaming_t2v_ckpt", seed=3)


# ---------------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,layout",
    [(k, layout) for k, layouts in LAYOUTS.items() for layout in layouts if layout != "official_streaming_t2v_ckpt"],
)
def test_each_layout_round_trips_exactly(tmp_path: Path, kind: str, layout: str) -> None:
    path = tmp_path / f"weights{_SUFFIX.get(layout, '.safetensors')}"
    expected = write_tiny_checkpoint(path, kind, layout, seed=1)
    loaded = load_model(path, kind=kind)
    assert loaded.format == layout
    assert loaded.kind == kind
    _assert_state_equal(loaded.model, expected)
    assert loaded.config == default_config(kind, "tiny")
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())


def test_official_ckpt_round_trips_and_reports_skipped_parts(official_ckpt) -> None:
    path, expected = official_ckpt
    loaded = load_model(path)  # kind detected
    assert (loaded.kind, loaded.format) == ("extender", "official_streaming_t2v_ckpt")
    _assert_state_equal(loaded.model, expected)
    # image_encoder./text_encoder./vae. entries and the 3 params x 3 Adam tensors are reported, not loaded.
    assert loaded.skipped_parts == {"image_encoder": 4, "text_encoder": 3, "vae": 3, "optimizer": 9}
    info = detect_checkpoint_format(path)
    assert info.container == "torch_zip" and info.config_source == "preset:tiny"
    assert set(info.parts) == {"base_model", "cam", "resampler"}
    assert sum(p.tensors for p in info.parts.values()) == len(expected)
    assert info.parameters == sum(t.numel() for t in expected.values())
    assert info.parts["resampler"].dtypes == {"float32": 4}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc/self/maps")
def test_official_ckpt_is_memory_mapped_not_read(official_ckpt) -> None:
    """Same-dtype loading keeps every weight backed by the file mapping (torch.load(mmap=True) + assign)."""
    path, _ = official_ckpt
    loaded = load_model(path)
    real = os.path.realpath(path)
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == real:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    params = list(loaded.model.parameters())
    inside = sum(any(a <= p.data_ptr() < b for a, b in ranges) for p in params)
    assert ranges and inside == len(params)


def test_official_ckpt_with_foreign_pickled_objects_loads_without_running_them(tmp_path: Path) -> None:
    """Lightning may pickle hyper-parameters as arbitrary objects; weights_only never runs their code."""
    path = tmp_path / "with_hparams.ckpt"
    expected = write_tiny_checkpoint(path, "extender", "official", seed=4)
    checkpoint = torch.load(path, weights_only=True)
    _Tripwire.calls.clear()
    checkpoint["hyper_parameters"] = {"namespace": argparse.Namespace(lr=5e-5), "tripwire": _Tripwire(1)}
    checkpoint["callbacks"] = collections.OrderedDict(a=1)
    torch.save(checkpoint, path)
    _Tripwire.calls.clear()
    loaded = load_model(path, kind="extender")
    _assert_state_equal(loaded.model, expected)
    assert _Tripwire.calls == []


class _Tripwire:
    calls: list[str] = []

    def __init__(self, value: int) -> None:
        self.value = value

    def __setstate__(self, state: dict) -> None:
        _Tripwire.calls.append("setstate")
        self.__dict__.update(state)


def test_dtype_conversion_on_load_and_half_precision_files(tmp_path: Path, official_ckpt) -> None:
    path, expected = official_ckpt
    _assert_state_equal(load_model(path, dtype="fp16").model, expected, torch.float16)
    half_file = tmp_path / "repack_bf16.safetensors"
    expected_bf16 = write_tiny_checkpoint(half_file, "extender", "repack", seed=5, dtype=torch.bfloat16)
    loaded = load_model(half_file)  # dtype None keeps the file's dtype
    _assert_state_equal(loaded.model, expected_bf16)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_ms_vid2vid_under_state_dict_and_diffusers_bin_and_folder(tmp_path: Path) -> None:
    pth = tmp_path / "non_ema_0035000.pth"
    expected = write_tiny_checkpoint(pth, "refiner_unet", "ms_vid2vid_xl", seed=6, under_state_dict=True)
    loaded = load_model(pth)
    assert (loaded.kind, loaded.format) == ("refiner_unet", "ms_vid2vid_xl")
    assert loaded.config.prediction_type == "v_prediction"
    _assert_state_equal(loaded.model, expected)
    # The LDM file really has Conv1d temporal projections and the misspelled temporal conv.
    raw = torch.load(pth, weights_only=True)["state_dict"]
    assert raw["input_blocks.0.1.proj_in.weight"].dim() == 3
    assert any("temopral_conv" in k for k in raw)

    # The pre-zip torch.save format is read too (without mmap), and its truncation is named.
    legacy = tmp_path / "legacy.pth"
    torch.save(raw, legacy, _use_new_zipfile_serialization=False)
    loaded = load_model(legacy)
    assert loaded.info.container == "torch_legacy"
    _assert_state_equal(loaded.model, expected)
    (tmp_path / "legacy_half.pth").write_bytes(legacy.read_bytes()[: legacy.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt PyTorch checkpoint"):
        load_model(tmp_path / "legacy_half.pth")

    folder = tmp_path / "text-to-video-ms-1.7b"
    weights = folder / "unet" / "diffusion_pytorch_model.bin"
    expected_base = write_tiny_checkpoint(weights, "base_unet3d", "diffusers", seed=7)
    loaded = load_model(folder)
    assert (loaded.kind, loaded.format) == ("base_unet3d", "diffusers_unet3d")
    _assert_state_equal(loaded.model, expected_base)


def test_config_is_inferred_from_shapes_for_non_preset_sizes(tmp_path: Path) -> None:
    config = dataclasses.replace(UNet3DConfig.tiny(), block_out_channels=(16, 32, 48, 48), layers_per_block=1)
    path = tmp_path / "odd.safetensors"
    expected = write_tiny_checkpoint(path, "base_unet3d", "diffusers", config=config)
    info = detect_checkpoint_format(path)
    assert info.config_source == "inferred from shapes"
    assert info.config.block_out_channels == (16, 32, 48, 48) and info.config.layers_per_block == 1
    assert info.config.attention_head_dim == config.attention_head_dim  # from transformer_in's width / 8 heads
    _assert_state_equal(load_model(path).model, expected)
    # The same shapes in LDM naming (refiner) infer the same structure.
    pth = tmp_path / "odd.pth"
    write_tiny_checkpoint(pth, "refiner_unet", "ms_vid2vid_xl", config=RefinerUNetConfig(**{
        f.name: getattr(config, f.name) for f in dataclasses.fields(UNet3DConfig) if f.name != "prediction_type"
    }))
    assert detect_checkpoint_format(pth).config.block_out_channels == (16, 32, 48, 48)


def test_convert_streams_to_loadable_safetensors_with_metadata(tmp_path: Path, official_ckpt) -> None:
    src, expected = official_ckpt
    dst = tmp_path / "extender_fp16.safetensors"
    info = convert_checkpoint(src, dst, dtype="fp16")
    assert info.skipped_parts["optimizer"] == 9
    converted = detect_checkpoint_format(dst)
    assert converted.format == "converted_safetensors" and converted.config_source == "metadata"
    assert converted.metadata["streamingt2v_kind"] == "extender" and converted.metadata["format_version"] == "1"
    assert converted.skipped_parts == {}  # encoders and optimizer were left behind
    _assert_state_equal(load_model(dst).model, expected, torch.float16)

    pth = tmp_path / "refiner.pth"
    expected_refiner = write_tiny_checkpoint(pth, "refiner_unet", "ms_vid2vid_xl", seed=8)
    convert_checkpoint(pth, tmp_path / "refiner.safetensors", dtype="fp32")
    loaded = load_model(tmp_path / "refiner.safetensors", kind="refiner_unet")
    assert loaded.config == RefinerUNetConfig.tiny()
    _assert_state_equal(loaded.model, expected_refiner)


def test_save_converted_validates_kind_and_config(tmp_path: Path) -> None:
    model = UNet3D(UNet3DConfig.tiny())
    with pytest.raises(ValueError, match="kind"):
        save_converted(model, "vae", UNet3DConfig.tiny(), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="config"):
        save_converted(model, "extender", UNet3DConfig.tiny(), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="dtype"):
        save_converted(model, "base_unet3d", UNet3DConfig.tiny(), tmp_path / "x.safetensors", dtype="int8")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------------
# Wrong files
# ---------------------------------------------------------------------------------------------------------------------


def test_truncated_and_non_checkpoint_files_say_so(tmp_path: Path, official_ckpt) -> None:
    src, _ = official_ckpt
    data = src.read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt PyTorch checkpoint"):
        load_model(tmp_path / "half.ckpt")

    st = tmp_path / "full.safetensors"
    write_tiny_checkpoint(st, "base_unet3d", "diffusers")
    st_data = st.read_bytes()
    (tmp_path / "half.safetensors").write_bytes(st_data[: len(st_data) - 1000])
    with pytest.raises(CheckpointError, match="truncated safetensors file"):
        load_model(tmp_path / "half.safetensors")

    (tmp_path / "notes.ckpt").write_text("these are my notes, not weights\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        detect_checkpoint_format(tmp_path / "notes.ckpt")
    import zipfile

    with zipfile.ZipFile(tmp_path / "photos.ckpt", "w") as archive:
        archive.writestr("cat.txt", "meow")
    with pytest.raises(CheckpointError, match="not a checkpoint: a zip archive without a PyTorch pickle"):
        load_model(tmp_path / "photos.ckpt")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_model(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.ckpt")
    assert issubclass(CheckpointError, ValueError)


def test_image_model_given_to_extender_loader_says_what_it_is_and_what_was_expected(tmp_path: Path) -> None:
    sd15 = tmp_path / "v1-5-pruned.ckpt"
    torch.save(
        {
            "state_dict": {
                "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
                "model.diffusion_model.out.2.weight": torch.zeros(4, 8, 3, 3),
                "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(8),
                "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 8, 3, 3),
            }
        },
        sd15,
    )
    with pytest.raises(CheckpointError) as error:
        load_model(sd15, kind="extender")
    message = str(error.value)
    assert "2-D image-model checkpoint" in message and "Stable Diffusion 1.x" in message
    assert "expected a StreamingT2V extender checkpoint" in message and "streaming_t2v.ckpt" in message

    sdxl = tmp_path / "sdxl.safetensors"
    save_file({"model.diffusion_model.label_emb.0.0.weight": torch.zeros(8, 4), "x.y": torch.zeros(1)}, str(sdxl))
    with pytest.raises(CheckpointError, match="Stable Diffusion XL"):
        load_model(sdxl, kind="extender")

    unet2d = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(
        {
            "conv_in.weight": torch.zeros(8, 4, 3, 3),
            "down_blocks.0.attentions.0.proj_in.weight": torch.zeros(8, 8),
            "down_blocks.0.resnets.0.conv1.weight": torch.zeros(8, 8, 3, 3),
        },
        str(unet2d),
    )
    with pytest.raises(CheckpointError) as error:
        load_model(unet2d, kind="extender")
    assert "UNet2DConditionModel" in str(error.value) and "expected a StreamingT2V extender" in str(error.value)
    with pytest.raises(CheckpointError, match="UNet2DConditionModel.*expected the ModelScope text-to-video UNet3D"):
        load_model(unet2d, kind="base_unet3d")


def test_kind_mismatch_names_both_kinds(tmp_path: Path) -> None:
    refiner = tmp_path / "refiner.safetensors"
    write_tiny_checkpoint(refiner, "refiner_unet", "converted")
    with pytest.raises(CheckpointError) as error:
        load_model(refiner, kind="extender")
    assert "kind='extender' was asked for" in str(error.value) and "kind='refiner_unet'" in str(error.value)
    assert error.value.format == "converted_safetensors"
    pth = tmp_path / "refiner.pth"
    write_tiny_checkpoint(pth, "refiner_unet", "ms_vid2vid")
    with pytest.raises(CheckpointError, match="kind='base_unet3d' was asked for.*MS-Vid2Vid-XL"):
        load_model(pth, kind="base_unet3d")
    with pytest.raises(ValueError, match="kind: expected one of"):
        load_model(pth, kind="vae")


def test_strict_check_lists_missing_unexpected_and_wrong_shapes(tmp_path: Path) -> None:
    good = tmp_path / "repack.safetensors"
    write_tiny_checkpoint(good, "extender", "repack")
    from safetensors.torch import load_file

    tensors = load_file(str(good))
    dropped = "controlnet.controlnet_cond_embedding.conv_out.weight"
    del tensors[dropped]
    tensors["controlnet.controlnet_down_blocks.0.weight"] = torch.zeros(2)
    tensors["unet.conv_out.bias"] = torch.zeros(7)
    bad = tmp_path / "bad_repack.safetensors"
    save_file(tensors, str(bad))
    with pytest.raises(CheckpointError) as error:
        load_model(bad)
    message = str(error.value)
    assert error.value.format == "community_repack" and "detected format community_repack" in message
    assert error.value.missing == [dropped]  # reported in the file's own naming
    assert error.value.unexpected == ["controlnet.controlnet_down_blocks.0.weight"]
    assert "1 missing, 1 unexpected, 1 with a wrong shape" in message
    assert "unet.conv_out.bias: file [7], expected [4]" in message


def test_unknown_prefix_in_official_ckpt_is_unexpected(tmp_path: Path, official_ckpt) -> None:
    src, _ = official_ckpt
    checkpoint = torch.load(src, weights_only=True)
    checkpoint["state_dict"]["noise_generator.weight"] = torch.zeros(3)
    path = tmp_path / "extra.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="first unexpected keys: noise_generator.weight") as error:
        load_model(path)
    assert error.value.format == "official_streaming_t2v_ckpt"


# ---------------------------------------------------------------------------------------------------------------------
# Key maps
# ---------------------------------------------------------------------------------------------------------------------


def test_refiner_key_map_is_a_shape_preserving_bijection_onto_our_unet3d() -> None:
    """All 1480 MS-Vid2Vid-XL tensors map one-to-one onto UNet3D(RefinerUNetConfig.full()), shape by shape
    (Conv1d [C, C, 1] temporal projections <-> Linear [C, C]), and back."""
    ldm = _read_tsv("ms_vid2vid_xl_unet.tsv")
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in UNet3D(RefinerUNetConfig.full()).state_dict().items()}
    assert len(ldm) == len(ours) == 1480
    key_map = UNetKeyMap(UNetLayout.from_config(RefinerUNetConfig.full()))
    assert compare_ldm_map(ldm, ours, key_map) == []
    conv1d = [k for k in ldm if key_map.is_conv1d_projection_ldm(k)]
    assert len(conv1d) == 2 * 17  # transformer_in + 16 temporal transformers, proj_in and proj_out each
    assert (
        key_map.ldm_to_diffusers_key("input_blocks.1.0.temopral_conv.conv2.3.weight")
        == "down_blocks.0.temp_convs.0.conv2.3.weight"
    )
    assert key_map.ldm_to_diffusers_key("output_blocks.8.3.conv.weight") == "up_blocks.2.upsamplers.0.conv.weight"
    assert key_map.ldm_to_diffusers_key("input_blocks.0.1.proj_in.weight") == "transformer_in.proj_in.weight"


def test_key_map_reports_broken_correspondences() -> None:
    """compare_ldm_map can fail: a wrong shape, an unknown key and an unmatched diffusers key are all named."""
    key_map = UNetKeyMap(UNetLayout.modelscope())
    ldm = {"time_embed.0.weight": (1280, 320), "input_blocks.0.1.proj_in.weight": (512, 320, 1), "bogus.weight": (1,)}
    diffusers = {
        "time_embedding.linear_1.weight": (1280, 999),
        "transformer_in.proj_in.weight": (512, 320),
        "conv_in.bias": (320,),
    }
    problems = compare_ldm_map(ldm, diffusers, key_map)
    assert any("shape mismatch" in p and "time_embed.0.weight" in p for p in problems)
    assert any("unmapped LDM key" in p and "bogus.weight" in p for p in problems)
    assert any("conv_in.bias has no LDM counterpart" in p for p in problems)
    assert len(problems) == 3


def test_repack_prefix_renames_are_inverse() -> None:
    keys = (
        "base_model.conv_in.weight",
        "unet.controlnet_cond_embedding.conv_in.bias",
        "resampler.context_embedding.0.weight",
    )
    for key in keys:
        assert repack_to_official_key(official_to_repack_key(key)) == key
    assert official_to_repack_key("base_model.x") == "unet.x" and official_to_repack_key("unet.x") == "controlnet.x"
    with pytest.raises(KeyError):
        official_to_repack_key("vae.x")


def test_write_tiny_checkpoint_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        write_tiny_checkpoint(tmp_path / "x", "vae", "official")
    with pytest.raises(ValueError, match="layout"):
        write_tiny_checkpoint(tmp_path / "x", "base_unet3d", "official")
    with pytest.raises(ValueError, match="layout"):
        write_tiny_checkpoint(tmp_path / "x", "extender", "gguf")


def test_tiny_checkpoints_are_deterministic_and_small(tmp_path: Path) -> None:
    a = write_tiny_checkpoint(tmp_path / "a.safetensors", "base_unet3d", "diffusers", seed=11)
    b = write_tiny_checkpoint(tmp_path / "b.safetensors", "base_unet3d", "diffusers", seed=11)
    c = write_tiny_checkpoint(tmp_path / "c.safetensors", "base_unet3d", "diffusers", seed=12)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv_in.weight"], c["conv_in.weight"])
    # zero-initialised tensors are randomised too, so a layout mistake cannot hide behind zeros
    assert all(t.abs().sum() > 0 for t in a.values())
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert (tmp_path / "a.safetensors").stat().st_size < 32 * 2**20


# ---------------------------------------------------------------------------------------------------------------------
# Settings the weights do not show (#14.4)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diffusers_16_groups(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A UNet3D saved by diffusers itself with 16 norm groups: shapes identical to 32 groups, outputs not."""
    diffusers = pytest.importorskip("diffusers")
    config = dataclasses.replace(UNet3DConfig.tiny(), block_out_channels=(32, 64, 64, 64), norm_num_groups=16)
    torch.manual_seed(0)
    model = diffusers.UNet3DConditionModel(**config.diffusers_kwargs()).eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    folder = tmp_path_factory.mktemp("diffusers") / "unet"
    model.save_pretrained(folder)  # diffusion_pytorch_model.safetensors + config.json
    return folder, model


def _forward(model: torch.nn.Module, ours: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 3, 8, 8, generator=gen)
    context = torch.randn(1, 77, 1024, generator=gen)
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), context) if ours else model(x, torch.tensor([500.0]), context).sample


def test_diffusers_config_json_beside_the_weights_gives_the_group_count(diffusers_16_groups) -> None:
    folder, reference = diffusers_16_groups
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert (folder / "config.json").is_file() and weights.is_file()
    loaded = load_model(weights)
    assert loaded.config.norm_num_groups == 16
    assert loaded.info.config_file == str(folder / "config.json") and loaded.info.assumptions == []
    assert loaded.info.config_source == "config.json beside the weights"
    expected = _forward(reference, ours=False)
    got = _forward(loaded.model, ours=True)
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_without_config_json_the_assumed_group_count_is_reported(diffusers_16_groups, tmp_path: Path, caplog) -> None:
    folder, reference = diffusers_16_groups
    lone = tmp_path / "modelscope_t2v_unet.safetensors"  # renamed and moved as the README says, config left behind
    lone.write_bytes((folder / "diffusion_pytorch_model.safetensors").read_bytes())
    with caplog.at_level("WARNING"):
        loaded = load_model(lone)
    assert loaded.config.norm_num_groups == 32 and loaded.info.config_file is None
    assert any("norm_num_groups=32 assumed" in note for note in loaded.info.assumptions), loaded.info.assumptions
    assert "norm_num_groups=32 assumed" in caplog.text
    # The assumption matters: the outputs differ from the 16-group model (what the report warns about).
    expected = _forward(reference, ours=False)
    assert ((_forward(loaded.model, ours=True) - expected).abs().max() / expected.abs().max()).item() > 1e-2
    # <stem>.json beside a renamed file is read too.
    (tmp_path / "modelscope_t2v_unet.json").write_text((folder / "config.json").read_text())
    assert detect_checkpoint_format(lone).config.norm_num_groups == 16


def test_a_config_json_that_disagrees_with_the_weights_is_refused(diffusers_16_groups, tmp_path: Path) -> None:
    import json

    folder, _ = diffusers_16_groups
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(
        (folder / "diffusion_pytorch_model.safetensors").read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["block_out_channels"] = [320, 640, 1280, 1280]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config beside the weights does not match them: block_out_channels"):
        load_model(tmp_path / "diffusion_pytorch_model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(CheckpointError, match="for a AutoencoderKL, not a UNet3DConditionModel"):
        load_model(tmp_path / "diffusion_pytorch_model.safetensors")


# ---------------------------------------------------------------------------------------------------------------------
# Safe loading (#14.3)
# ---------------------------------------------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_pickle_that_could_run_code_is_refused_naming_the_global(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    state = write_tiny_checkpoint(tmp_path / "good.pth", "refiner_unet", "ms_vid2vid_xl")
    torch.save({"state_dict": state, "payload": _RunsCode()}, path)
    for call in (detect_checkpoint_format, load_model):
        with pytest.raises(CheckpointError) as error:
            call(path)
        message = str(error.value)
        assert "refused for safety" in message and "system" in message, message
        assert "safetensors" in message and "streamingt2v_core convert" in message
        assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_foreign_objects_are_reported_and_never_silently_replaced(tmp_path: Path, official_ckpt) -> None:
    src, expected = official_ckpt
    checkpoint = torch.load(src, weights_only=True)
    checkpoint["hyper_parameters"] = {"namespace": argparse.Namespace(lr=5e-5)}
    path = tmp_path / "with_hparams.ckpt"
    torch.save(checkpoint, path)
    info = detect_checkpoint_format(path)
    assert info.foreign_objects == ["argparse.Namespace"]
    out = __import__("io").StringIO()
    from streamingt2v_core.__main__ import main

    assert main(["inspect", str(path)], out=out) == 0
    assert "argparse.Namespace" in out.getvalue() and "never run" in out.getvalue()
    # Inside the state dict, where a tensor belongs, a foreign object is refused.
    checkpoint["state_dict"]["base_model.conv_in.weight"] = argparse.Namespace(x=1)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="refused for safety: its state dict holds objects of class "
                                              "argparse.Namespace where tensors belong"):
        load_model(path)


def test_describe_load_failure_never_passes_on_the_weights_only_false_advice() -> None:
    import pickle

    from streamingt2v_core.models.loading.safe_pickle import describe_load_failure

    torch_text = ("Weights only load failed. This file can still be loaded, to do so you have two options. (1) In "
                  "PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` from "
                  "`False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely succeed. "
                  "WeightsUnpickler error: Unsupported global: GLOBAL numpy.core.multiarray._reconstruct was not an "
                  "allowed global by default.")
    text = describe_load_failure(pickle.UnpicklingError(torch_text))
    assert "numpy.core.multiarray._reconstruct" in text and "refused for safety" in text
    assert "weights_only" not in text.replace("(weights_only)", "") and "Re-running" not in text
    assert describe_load_failure(RuntimeError("PytorchStreamReader failed reading zip archive")) == (
        "PytorchStreamReader failed reading zip archive")


def test_metric_weight_loaders_give_the_safe_message_too(tmp_path: Path) -> None:
    """RAFT (MAWE) and open_clip (CLIP score) files go through the same wording: the refused global, no advice to
    disable weights_only."""
    from streamingt2v_core.metrics.clip_score import _read_state_dict
    from streamingt2v_core.metrics.mawe import load_raft_large

    path = tmp_path / "raft_large.pth"
    torch.save({"conv.weight": torch.zeros(2), "payload": _RunsCode()}, path)
    for call, name in ((load_raft_large, "weights_path"), (_read_state_dict, "checkpoint_path")):
        with pytest.raises(ValueError) as error:
            call(str(path))
        message = str(error.value)
        assert message.startswith(f"{name}: cannot read") and "refused for safety" in message, message
        assert "system" in message and "weights_only` set to `False" not in message and "Re-running" not in message
        assert error.value.__cause__ is None  # no chained torch error repeating the advice


# ---------------------------------------------------------------------------------------------------------------------
# The cheap scan behind the Model Loader's list (#16.4)
# ---------------------------------------------------------------------------------------------------------------------


class _Touches:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_scan_tells_our_formats_from_others_reading_only_the_index(tmp_path: Path, monkeypatch) -> None:
    from streamingt2v_core.models.loading import scan

    ours = {
        "official.ckpt": ("extender", "official"),
        "repack.safetensors": ("extender", "repack"),
        "unet.safetensors": ("base_unet3d", "diffusers"),
        "text2video_pytorch_model.pth": ("base_unet3d", "modelscope_t2v"),
        "non_ema.pth": ("refiner_unet", "ms_vid2vid_xl"),
        "converted.safetensors": ("refiner_unet", "converted"),
    }
    for name, (kind, layout) in ours.items():
        write_tiny_checkpoint(tmp_path / name, kind, layout)
    tripwire = tmp_path / "ran"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": _Touches(str(tripwire))}, tmp_path / "evil.pth")
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(tmp_path / "sd.safetensors"))
    (tmp_path / "notes.ckpt").write_text("notes")
    torch.save({"a": torch.zeros(1)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    # The scan never loads tensors: torch.load and safe_open are not called at all.
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the scan must not torch.load"))
    scan.clear_scan_cache()
    results = {p.name: scan.scan_checkpoint(p) for p in sorted(tmp_path.iterdir())}
    assert {n for n, r in results.items() if r.ours} == set(ours), {n: r.description for n, r in results.items()}
    assert results["text2video_pytorch_model.pth"].format == "ms_vid2vid_xl"  # the LDM naming, either model
    assert "Stable Diffusion" in results["sd.safetensors"].description
    assert not tripwire.exists(), "the scan ran code from a pickle"
    # Cached by size and mtime: a changed file is scanned again.
    calls = []
    monkeypatch.setattr(scan, "_scan_uncached", lambda p: calls.append(p) or scan.ScanResult(None, "x"))
    scan.scan_checkpoint(tmp_path / "unet.safetensors")
    assert calls == []
    (tmp_path / "unet.safetensors").write_bytes(b"changed")
    scan.scan_checkpoint(tmp_path / "unet.safetensors")
    assert len(calls) == 1

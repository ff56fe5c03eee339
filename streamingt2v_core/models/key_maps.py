"""Key names of the checkpoints we read, and how they map onto our modules.

Two namings of the same ModelScope UNet3D exist in the wild:

* the diffusers ``UNet3DConditionModel`` naming (``down_blocks.i.resnets.j``, ``temp_convs``, ``attentions``,
  ``temp_attentions``, ``transformer_in``, ...): the ModelScope text-to-video UNet, the ``base_model.``/``unet.``
  parts of ``streaming_t2v.ckpt``, and our own :class:`~streamingt2v_core.models.unet3d.UNet3D`;
* the original ModelScope/LDM naming of MS-Vid2Vid-XL's ``Vid2VidSDUNet`` (``input_blocks``, ``middle_block``,
  ``output_blocks``, ``time_embed``, ``out``, ResBlocks with ``in_layers``/``emb_layers``/``out_layers`` and the
  misspelled ``temopral_conv``, temporal transformers whose ``proj_in``/``proj_out`` are ``Conv1d`` with weight
  ``[C_out, C_in, 1]`` where diffusers has ``Linear`` ``[C_out, C_in]``).

:func:`ldm_to_diffusers_key` / :func:`diffusers_to_ldm_key` translate one key, and :func:`ldm_to_diffusers_tensor` /
:func:`diffusers_to_ldm_tensor` reshape the Conv1d/Linear projection weights. The map is derived from the UNet
structure (number of resolution levels, layers per block, which levels have attention), so it serves the full
refiner config and the tiny test configs alike; ``tests/core/models/test_loading.py`` verifies it shape by shape
against ``ms_vid2vid_xl_unet.tsv``.

The extender checkpoints need only prefix renames: the official ``streaming_t2v.ckpt`` already uses our names
(``base_model.``, ``unet.`` = CAM, ``resampler.``); the community repack renames ``base_model.`` to ``unet.`` and
the CAM to ``controlnet.`` (see :data:`REPACK_PREFIX_TO_OFFICIAL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

# --------------------------------------------------------------------------------------------------------------------
# Extender checkpoints: prefixes
# --------------------------------------------------------------------------------------------------------------------

#: The parts of ``streaming_t2v.ckpt`` our extender module holds (prefix -> part name used in reports / ``--keys``).
OFFICIAL_EXTENDER_PARTS: dict[str, str] = {"base_model.": "base_model", "unet.": "cam", "resampler.": "resampler"}

#: Parts of ``streaming_t2v.ckpt`` the pack does not need (ComfyUI's own loaders provide these encoders).
OFFICIAL_SKIPPED_PARTS: dict[str, str] = {
    "image_encoder.": "image_encoder",
    "text_encoder.": "text_encoder",
    "vae.": "vae",
}

#: Community repack (VidXTend style) prefix -> official prefix. The sub-keys are the official ones.
REPACK_PREFIX_TO_OFFICIAL: dict[str, str] = {"unet.": "base_model.", "controlnet.": "unet.", "resampler.": "resampler."}

#: Parts of the repack that the pack does not need.
REPACK_SKIPPED_PARTS: dict[str, str] = {
    "text_encoder.": "text_encoder",
    "vae.": "vae",
    "image_encoder.": "image_encoder",
}


def read_key_list(path) -> dict[str, tuple[int, ...]]:
    """Read a `key<TAB>shape` list (the format of `inspect --keys` and of the official key lists).

    The shape is comma-separated ints; a 0-dim tensor has an empty shape field.
    """
    from pathlib import Path

    out: dict[str, tuple[int, ...]] = {}
    for line in Path(path).read_text().splitlines():
        key, shape = line.split("\t")
        out[key] = tuple(int(x) for x in shape.split(",")) if shape else ()
    return out


def official_to_repack_key(key: str) -> str:
    """Rename an official extender key (``base_model.``/``unet.``/``resampler.``) to the community repack naming."""
    for repack_prefix, official_prefix in REPACK_PREFIX_TO_OFFICIAL.items():
        if key.startswith(official_prefix):
            return repack_prefix + key[len(official_prefix):]
    raise KeyError(f"key {key!r} has no official extender prefix (expected one of {list(OFFICIAL_EXTENDER_PARTS)})")


def repack_to_official_key(key: str) -> str:
    """Rename a community repack key (``unet.``/``controlnet.``/``resampler.``) to the official extender naming."""
    for repack_prefix, official_prefix in REPACK_PREFIX_TO_OFFICIAL.items():
        if key.startswith(repack_prefix):
            return official_prefix + key[len(repack_prefix):]
    raise KeyError(f"key {key!r} has no repack prefix (expected one of {list(REPACK_PREFIX_TO_OFFICIAL)})")


# --------------------------------------------------------------------------------------------------------------------
# UNet3D: LDM (MS-Vid2Vid-XL) <-> diffusers naming
# --------------------------------------------------------------------------------------------------------------------

#: Sub-module names inside a ResBlock: LDM -> diffusers ``ResnetBlock2D``.
_RESNET_LDM_TO_DIFFUSERS: dict[str, str] = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_RESNET_DIFFUSERS_TO_LDM: dict[str, str] = {v: k for k, v in _RESNET_LDM_TO_DIFFUSERS.items()}

#: The LDM ResBlock holds its temporal conv stack as a child with this (sic) name; diffusers keeps it in ``temp_convs``.
LDM_TEMPORAL_CONV_NAME = "temopral_conv"

#: Parameters whose layout differs: temporal transformer projections, Conv1d ``[O, I, 1]`` (LDM) vs Linear ``[O, I]``.
_CONV1D_PROJECTIONS = ("proj_in.weight", "proj_out.weight")


@dataclass(frozen=True)
class UNetLayout:
    """The structural facts of a ModelScope UNet3D that decide its key names.

    ``attention_levels[i]`` says whether down level ``i`` (and the matching up level) has spatial + temporal
    transformers; the mid block always has them.
    """

    num_levels: int
    layers_per_block: int
    attention_levels: tuple[bool, ...]

    def __post_init__(self) -> None:
        if self.num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {self.num_levels}")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be >= 1, got {self.layers_per_block}")
        if len(self.attention_levels) != self.num_levels:
            raise ValueError(
                f"attention_levels must have num_levels={self.num_levels} entries, got {len(self.attention_levels)}"
            )

    @classmethod
    def from_config(cls, config: Any) -> "UNetLayout":
        """Read the layout from a UNet3D-like config (``block_out_channels``, ``layers_per_block`` and, if present,
        ``down_block_types``; without it the ModelScope rule applies: attention on every level but the last)."""
        unet_config = getattr(config, "unet", None) or getattr(config, "base", None) or config
        channels = tuple(getattr(unet_config, "block_out_channels"))
        layers = int(getattr(unet_config, "layers_per_block"))
        down_types = getattr(unet_config, "down_block_types", None)
        if down_types:
            attention = tuple("CrossAttn" in str(t) for t in down_types)
        else:
            attention = tuple(i < len(channels) - 1 for i in range(len(channels)))
        return cls(num_levels=len(channels), layers_per_block=layers, attention_levels=attention)

    @classmethod
    def modelscope(cls) -> "UNetLayout":
        """The published ModelScope / MS-Vid2Vid-XL layout: 4 levels, 2 layers, attention on levels 0-2."""
        return cls(num_levels=4, layers_per_block=2, attention_levels=(True, True, True, False))


@dataclass(frozen=True)
class _ModuleRule:
    ldm: str  # module prefix in LDM naming
    diffusers: str  # module prefix in diffusers naming
    kind: str  # "plain" | "resnet" | "temporal_transformer"


def _module_rules(layout: UNetLayout) -> list[_ModuleRule]:
    """Module-level correspondences, derived from the layout (see the module docstring for the two namings)."""
    rules: list[_ModuleRule] = [
        _ModuleRule("time_embed.0", "time_embedding.linear_1", "plain"),
        _ModuleRule("time_embed.2", "time_embedding.linear_2", "plain"),
        _ModuleRule("input_blocks.0.0", "conv_in", "plain"),
        # The first temporal transformer (diffusers ``transformer_in``) sits beside conv_in in input block 0.
        _ModuleRule("input_blocks.0.1", "transformer_in", "temporal_transformer"),
        _ModuleRule("out.0", "conv_norm_out", "plain"),
        _ModuleRule("out.2", "conv_out", "plain"),
    ]

    def layer(ldm_block: str, diff_block: str, j: int, with_attention: bool) -> None:
        rules.append(_ModuleRule(f"{ldm_block}.0", f"{diff_block}.resnets.{j}", "resnet"))
        rules.append(
            _ModuleRule(f"{ldm_block}.0.{LDM_TEMPORAL_CONV_NAME}", f"{diff_block}.temp_convs.{j}", "plain")
        )
        if with_attention:
            rules.append(_ModuleRule(f"{ldm_block}.1", f"{diff_block}.attentions.{j}", "plain"))
            rules.append(_ModuleRule(f"{ldm_block}.2", f"{diff_block}.temp_attentions.{j}", "temporal_transformer"))

    # Encoder: input block 0 is conv_in (+ transformer_in); then per level `layers_per_block` layers, then a
    # downsampler (a bare `op` conv, not wrapped in a sequential) on every level but the last.
    index = 1
    for level in range(layout.num_levels):
        for j in range(layout.layers_per_block):
            layer(f"input_blocks.{index}", f"down_blocks.{level}", j, layout.attention_levels[level])
            index += 1
        if level < layout.num_levels - 1:
            rules.append(_ModuleRule(f"input_blocks.{index}.op", f"down_blocks.{level}.downsamplers.0.conv", "plain"))
            index += 1

    # Mid block: resnet(+temporal conv), spatial transformer, temporal transformer, resnet(+temporal conv).
    rules.append(_ModuleRule("middle_block.0", "mid_block.resnets.0", "resnet"))
    rules.append(_ModuleRule(f"middle_block.0.{LDM_TEMPORAL_CONV_NAME}", "mid_block.temp_convs.0", "plain"))
    rules.append(_ModuleRule("middle_block.1", "mid_block.attentions.0", "plain"))
    rules.append(_ModuleRule("middle_block.2", "mid_block.temp_attentions.0", "temporal_transformer"))
    rules.append(_ModuleRule("middle_block.3", "mid_block.resnets.1", "resnet"))
    rules.append(_ModuleRule(f"middle_block.3.{LDM_TEMPORAL_CONV_NAME}", "mid_block.temp_convs.1", "plain"))

    # Decoder: up block u mirrors down level (num_levels - 1 - u) with one more layer; the upsampler is the last
    # child of the last output block of every up block but the last.
    index = 0
    for up in range(layout.num_levels):
        with_attention = layout.attention_levels[layout.num_levels - 1 - up]
        for j in range(layout.layers_per_block + 1):
            layer(f"output_blocks.{index}", f"up_blocks.{up}", j, with_attention)
            if j == layout.layers_per_block and up < layout.num_levels - 1:
                position = 3 if with_attention else 1
                rules.append(
                    _ModuleRule(f"output_blocks.{index}.{position}.conv", f"up_blocks.{up}.upsamplers.0.conv", "plain")
                )
            index += 1
    return rules


class UNetKeyMap:
    """Bidirectional LDM <-> diffusers key map for one :class:`UNetLayout`."""

    def __init__(self, layout: UNetLayout) -> None:
        self.layout = layout
        rules = _module_rules(layout)
        self._by_ldm = {r.ldm: r for r in rules}
        self._by_diffusers = {r.diffusers: r for r in rules}
        if len(self._by_ldm) != len(rules) or len(self._by_diffusers) != len(rules):
            raise AssertionError("UNet key map has duplicate module prefixes")  # a bug in _module_rules

    @staticmethod
    def _longest_prefix(key: str, table: Mapping[str, _ModuleRule]) -> tuple[_ModuleRule, str] | None:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            rule = table.get(".".join(parts[:cut]))
            if rule is not None:
                return rule, ".".join(parts[cut:])
        return None

    def ldm_to_diffusers_key(self, key: str) -> str:
        """Translate one LDM (MS-Vid2Vid-XL) key to the diffusers name. Raises ``KeyError`` if it has no counterpart."""
        found = self._longest_prefix(key, self._by_ldm)
        if found is None:
            raise KeyError(f"LDM key {key!r} is not part of the UNet3D layout {self.layout}")
        rule, rest = found
        if rule.kind == "resnet":
            sub, _, leaf = rest.rpartition(".")
            if sub not in _RESNET_LDM_TO_DIFFUSERS:
                raise KeyError(f"LDM key {key!r}: unknown ResBlock member {sub!r}")
            return f"{rule.diffusers}.{_RESNET_LDM_TO_DIFFUSERS[sub]}.{leaf}"
        return f"{rule.diffusers}.{rest}"

    def diffusers_to_ldm_key(self, key: str) -> str:
        """Translate one diffusers key to the LDM (MS-Vid2Vid-XL) name. Raises ``KeyError`` if it has no counterpart."""
        found = self._longest_prefix(key, self._by_diffusers)
        if found is None:
            raise KeyError(f"diffusers key {key!r} is not part of the UNet3D layout {self.layout}")
        rule, rest = found
        if rule.kind == "resnet":
            sub, _, leaf = rest.rpartition(".")
            if sub not in _RESNET_DIFFUSERS_TO_LDM:
                raise KeyError(f"diffusers key {key!r}: unknown resnet member {sub!r}")
            return f"{rule.ldm}.{_RESNET_DIFFUSERS_TO_LDM[sub]}.{leaf}"
        return f"{rule.ldm}.{rest}"

    def is_conv1d_projection_ldm(self, ldm_key: str) -> bool:
        """Whether an LDM key is a temporal-transformer Conv1d projection (``[O, I, 1]``; Linear ``[O, I]`` in
        diffusers)."""
        found = self._longest_prefix(ldm_key, self._by_ldm)
        return found is not None and found[0].kind == "temporal_transformer" and found[1] in _CONV1D_PROJECTIONS

    def ldm_to_diffusers_shape(self, ldm_key: str, shape: Iterable[int]) -> tuple[int, ...]:
        """The diffusers shape of an LDM tensor (drops the trailing 1 of the Conv1d temporal projections)."""
        shape = tuple(shape)
        if self.is_conv1d_projection_ldm(ldm_key):
            if len(shape) != 3 or shape[2] != 1:
                raise ValueError(f"{ldm_key}: expected a Conv1d weight [C_out, C_in, 1], got {list(shape)}")
            return shape[:2]
        return shape

    def diffusers_to_ldm_shape(self, diffusers_key: str, shape: Iterable[int]) -> tuple[int, ...]:
        """The LDM shape of a diffusers tensor (Linear temporal projections become Conv1d ``[C_out, C_in, 1]``)."""
        shape = tuple(shape)
        if self.is_conv1d_projection_ldm(self.diffusers_to_ldm_key(diffusers_key)):
            if len(shape) != 2:
                raise ValueError(f"{diffusers_key}: expected a Linear weight [C_out, C_in], got {list(shape)}")
            return shape + (1,)
        return shape

    def ldm_to_diffusers_tensor(self, ldm_key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Reshape one LDM tensor to its diffusers layout (a view, no copy)."""
        if self.is_conv1d_projection_ldm(ldm_key):
            self.ldm_to_diffusers_shape(ldm_key, tensor.shape)  # validates
            return tensor.squeeze(-1)
        return tensor

    def diffusers_to_ldm_tensor(self, diffusers_key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Reshape one diffusers tensor to its LDM layout (a view, no copy)."""
        ldm_key = self.diffusers_to_ldm_key(diffusers_key)
        if self.is_conv1d_projection_ldm(ldm_key):
            self.diffusers_to_ldm_shape(diffusers_key, tensor.shape)  # validates
            return tensor.unsqueeze(-1)
        return tensor

    def ldm_to_diffusers_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename and reshape a whole LDM state dict (tensors are views of the input)."""
        return {self.ldm_to_diffusers_key(k): self.ldm_to_diffusers_tensor(k, v) for k, v in state.items()}

    def diffusers_to_ldm_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename and reshape a whole diffusers state dict (tensors are views of the input)."""
        return {self.diffusers_to_ldm_key(k): self.diffusers_to_ldm_tensor(k, v) for k, v in state.items()}


def compare_ldm_map(
    ldm_shapes: Mapping[str, tuple[int, ...]],
    diffusers_shapes: Mapping[str, tuple[int, ...]],
    key_map: UNetKeyMap,
) -> list[str]:
    """Check that ``key_map`` maps the LDM key/shape list one-to-one onto the diffusers one, shape by shape.

    Returns human-readable problems (empty when the map is a bijection that preserves every shape up to the
    Conv1d/Linear projection reshape).
    """
    problems: list[str] = []
    mapped: dict[str, str] = {}
    for ldm_key, shape in sorted(ldm_shapes.items()):
        try:
            diff_key = key_map.ldm_to_diffusers_key(ldm_key)
        except KeyError as error:
            problems.append(f"unmapped LDM key: {error.args[0]}")
            continue
        if diff_key in mapped.values():
            problems.append(f"LDM key {ldm_key} maps to {diff_key}, which another LDM key also maps to")
        mapped[ldm_key] = diff_key
        if diff_key not in diffusers_shapes:
            problems.append(f"LDM key {ldm_key} maps to {diff_key}, which the diffusers model does not have")
            continue
        try:
            expected = key_map.ldm_to_diffusers_shape(ldm_key, shape)
        except ValueError as error:
            problems.append(str(error))
            continue
        if tuple(diffusers_shapes[diff_key]) != expected:
            problems.append(
                f"shape mismatch: LDM {ldm_key} {list(shape)} -> {diff_key} expects "
                f"{list(diffusers_shapes[diff_key])}, mapped shape {list(expected)}"
            )
        if key_map.diffusers_to_ldm_key(diff_key) != ldm_key:
            back = key_map.diffusers_to_ldm_key(diff_key)
            problems.append(f"map is not invertible: {ldm_key} -> {diff_key} -> {back}")
    for diff_key in sorted(set(diffusers_shapes) - set(mapped.values())):
        problems.append(f"diffusers key {diff_key} has no LDM counterpart")
    return problems

"""Config inference: a model config from tensor shapes, when a file carries no config of its own.

Shapes give channels, levels, layers and attention placement; group-norm groups and head sizes are not visible in
shapes, so a preset match (full or tiny) recovers them exactly and anything else is an explicit assumption.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import ExtenderConfig, UNet3DConfig
from ..key_maps import UNetLayout
from .records import CheckpointError

__all__ = [
    "infer_unet_fields",
    "unet_config_from_fields",
    "infer_unet_config",
    "infer_extender_config",
    "ldm_layout_from_keys",
    "DIFFUSERS_CONFIG_FIELDS",
    "find_diffusers_config",
    "read_diffusers_config",
]


def _need(shapes: Mapping[str, tuple[int, ...]], key: str, what: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"cannot infer {what}: tensor {key!r} is missing", missing=[key])
    return shapes[key]


def infer_unet_fields(shapes: Mapping[str, tuple[int, ...]], with_up: bool = True) -> dict[str, Any]:
    """UNet3DConfig fields readable from diffusers-named shapes (prefix already stripped)."""
    levels = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("down_blocks.")})
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError("cannot infer the UNet config: no down_blocks.N tensors", missing=["down_blocks.0.*"])
    n = len(levels)
    channels = tuple(
        _need(shapes, f"down_blocks.{i}.resnets.0.conv1.weight", "block_out_channels")[0] for i in range(n)
    )
    layers = len({k.split(".")[3] for k in shapes if k.startswith("down_blocks.0.resnets.")})
    down_types = tuple(
        "CrossAttnDownBlock3D" if any(k.startswith(f"down_blocks.{i}.attentions.") for k in shapes) else "DownBlock3D"
        for i in range(n)
    )
    fields: dict[str, Any] = {
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": down_types,
        "in_channels": _need(shapes, "conv_in.weight", "in_channels")[1],
    }
    if with_up:
        fields["up_block_types"] = tuple(
            "CrossAttnUpBlock3D" if any(k.startswith(f"up_blocks.{i}.attentions.") for k in shapes) else "UpBlock3D"
            for i in range(n)
        )
        fields["out_channels"] = _need(shapes, "conv_out.weight", "out_channels")[0]
    else:  # the CAM has no up path: mirror the encoder, as the ModelScope UNet does
        fields["up_block_types"] = tuple(
            "CrossAttnUpBlock3D" if t == "CrossAttnDownBlock3D" else "UpBlock3D" for t in reversed(down_types)
        )
    to_k = next((k for k in sorted(shapes) if k.endswith("attn2.to_k.weight") and ".attentions." in k), None)
    if to_k is not None:
        fields["cross_attention_dim"] = shapes[to_k][1]
    fields["_transformer_in_inner"] = _need(shapes, "transformer_in.proj_in.weight", "transformer_in width")[0]
    return fields


#: Why a setting that shapes do not show took its value, per way of choosing it.
_GROUPS_RULE = "the largest of 32/16/8/4/2/1 dividing every width"
_HEAD_RULE = "transformer_in width / its 8 heads"


def unet_config_from_fields(
    cls: type,
    fields: dict[str, Any],
    presets: Iterable[tuple[str, Any]],
    known: Mapping[str, Any] | None = None,
    hidden: tuple[str, ...] = (),
    report_preset: bool = True,
) -> tuple[Any, str, list[str]]:
    """A config from the fields shapes show, ``known`` settings (from a config file or fixed by the format's code)
    and, for what neither gives, a preset or a rule. Returns ``(config, source, assumptions)``.

    Group-norm groups and head sizes are not visible in shapes. A preset whose readable (and known) fields all match
    gives them; otherwise the head size is the ``transformer_in`` width over its 8 heads and the groups the largest
    of 32/16/8/4/2/1 dividing every width. Each ``hidden`` setting that was not ``known`` is an assumption: it is
    returned as a sentence naming the value and how it was chosen (for a preset match only when ``report_preset``).
    """
    inner = fields.pop("_transformer_in_inner")
    known = dict(known or {})
    chosen_by = ""
    config = None
    source = ""
    for name, preset in presets:
        if (all(getattr(preset, k) == v for k, v in {**fields, **known}.items())
                and preset.transformer_in_heads * preset.attention_head_dim == inner):
            config, source, chosen_by = preset, f"preset:{name}", f"the value of the {name} preset with these shapes"
            break
    if config is None:
        base = cls.full()
        head_dim = known.get("attention_head_dim")
        if head_dim is None:
            head_dim = inner // base.transformer_in_heads if inner % base.transformer_in_heads == 0 else inner
        groups = known.get("norm_num_groups")
        if groups is None:
            groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in fields["block_out_channels"]))
        extra = {k: v for k, v in known.items() if k not in ("attention_head_dim", "norm_num_groups")}
        try:
            config = dataclasses.replace(
                base, **{**fields, **extra}, attention_head_dim=head_dim, norm_num_groups=groups
            )
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"the tensor shapes give no valid UNet config: {error}") from error
        source = "inferred from shapes"
    assumptions = []
    if config is not None and (report_preset or not source.startswith("preset:")):
        for setting in hidden:
            if setting in known:
                continue
            rule = chosen_by or {"norm_num_groups": _GROUPS_RULE, "attention_head_dim": _HEAD_RULE}.get(setting, "")
            assumptions.append(f"{setting}={getattr(config, setting)} assumed ({rule}; the weights do not show it)")
    return config, source, assumptions


def infer_unet_config(
    shapes: Mapping[str, tuple[int, ...]],
    cls: type,
    known: Mapping[str, Any] | None = None,
    hidden: tuple[str, ...] = (),
    report_preset: bool = True,
) -> tuple[Any, str, list[str]]:
    """:func:`unet_config_from_fields` over the fields of diffusers-named ``shapes``, with the full/tiny presets."""
    fields = infer_unet_fields(shapes)
    return unet_config_from_fields(
        cls, fields, (("full", cls.full()), ("tiny", cls.tiny())), known, hidden, report_preset
    )


#: Fields of a diffusers ``UNet3DConditionModel`` config.json that map one-to-one onto :class:`UNet3DConfig`.
DIFFUSERS_CONFIG_FIELDS = (
    "in_channels",
    "out_channels",
    "sample_size",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "attention_head_dim",
    "cross_attention_dim",
    "norm_num_groups",
    "norm_eps",
)


def find_diffusers_config(weights: Path) -> Path | None:
    """The diffusers ``config.json`` that belongs to a weights file: ``<stem>.json`` beside any file (for a renamed
    file), or ``config.json`` in the folder of a ``diffusion_pytorch_model*`` file. None if there is none."""
    own = weights.with_name(weights.name.split(".")[0] + ".json")
    if own.is_file():
        return own
    if weights.name.startswith("diffusion_pytorch_model") and (weights.parent / "config.json").is_file():
        return weights.parent / "config.json"
    return None


def read_diffusers_config(path: Path, shapes_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`UNet3DConfig` settings of a diffusers config.json, checked against what the shapes show.

    Raises:
        CheckpointError: not a UNet3DConditionModel config, unreadable, or disagreeing with the weights.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable config file beside the weights: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object (a diffusers config), got {type(data).__name__}")
    class_name = data.get("_class_name")
    if class_name not in (None, "UNet3DConditionModel"):
        raise CheckpointError(
            f"{path}: the config beside the weights is for a {class_name}, not a UNet3DConditionModel; move it away "
            "or give the weights file a folder of its own"
        )
    out: dict[str, Any] = {}
    for name in DIFFUSERS_CONFIG_FIELDS:
        if name in data and data[name] is not None:
            value = data[name]
            out[name] = tuple(value) if isinstance(value, list) else value
    if isinstance(out.get("attention_head_dim"), tuple):
        raise CheckpointError(f"{path}: attention_head_dim per block {out['attention_head_dim']} is not supported")
    disagree = [
        f"{k}: config {out[k]!r}, weights {v!r}" for k, v in shapes_fields.items()
        if not k.startswith("_") and k in out and out[k] != v
    ]
    if disagree:
        raise CheckpointError(f"{path}: the config beside the weights does not match them: " + "; ".join(disagree))
    return out


def infer_extender_config(shapes: Mapping[str, tuple[int, ...]]) -> tuple[ExtenderConfig, str]:
    """ExtenderConfig from official-named shapes (``base_model.`` / ``unet.`` / ``resampler.``)."""
    base = {k[len("base_model."):]: v for k, v in shapes.items() if k.startswith("base_model.")}
    if not base:
        raise CheckpointError("cannot infer the extender config: no base_model.* tensors", missing=["base_model.*"])
    unet_fields = infer_unet_fields(base)
    fields: dict[str, Any] = {}
    emb = "unet.controlnet_cond_embedding."
    conv_in = _need(shapes, emb + "conv_in.weight", "cond_embedding_channels")
    blocks = [b for b in range(0, 16) if f"{emb}blocks.{b}.weight" in shapes]
    stage_outs = [shapes[f"{emb}blocks.{b}.weight"][0] for b in blocks if b % 2 == 1]
    fields["cond_embedding_channels"] = (conv_in[0], *stage_outs)
    fields["cond_in_channels"] = conv_in[1]
    res0 = _need(shapes, "resampler.context_embedding.0.weight", "resampler size")
    res2 = _need(shapes, "resampler.context_embedding.2.weight", "resampler size")
    fields["resampler_inner_dim"], fields["image_embed_dim"] = res0[0], res0[1]
    cross = unet_fields.get("cross_attention_dim", 1024)
    fields["num_image_tokens"] = res2[0] // cross
    conv = next((v for k, v in sorted(base.items()) if k.endswith("attn2.conv.weight")), None)
    if conv is not None:
        unet_fields["text_tokens"] = conv[0]
        fields["apm_kernel_size"] = conv[2]
    presets = (("full", ExtenderConfig.full()), ("tiny", ExtenderConfig.tiny()))
    unet_presets = [(name, p.unet) for name, p in presets]
    unet_config, unet_source, _ = unet_config_from_fields(UNet3DConfig, dict(unet_fields), unet_presets)
    for name, preset in presets:
        if unet_source == f"preset:{name}" and all(getattr(preset, k) == v for k, v in fields.items()):
            return preset, f"preset:{name}"
    try:
        config = dataclasses.replace(
            ExtenderConfig.full(), unet=unet_config, merger_head_dim=unet_config.attention_head_dim, **fields
        )
    except ValueError as error:
        raise CheckpointError(f"the tensor shapes give no valid extender config: {error}") from error
    return config, "inferred from shapes"


def ldm_layout_from_keys(keys: Iterable[str]) -> UNetLayout:
    """The UNet layout of an LDM-named (MS-Vid2Vid-XL) state dict, read from its input block numbering."""
    children: dict[int, set[str]] = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "input_blocks" and len(parts) > 2:
            children.setdefault(int(parts[1]), set()).add(parts[2])
    if not children:
        raise CheckpointError("cannot infer the UNet layout: no input_blocks.* tensors", missing=["input_blocks.*"])
    downsamplers = sorted(i for i, c in children.items() if "op" in c)
    last = max(children)
    layers = (downsamplers[0] - 1) if downsamplers else last
    if layers < 1:
        raise CheckpointError("cannot infer the UNet layout from the input_blocks numbering")
    num_levels = len(downsamplers) + 1
    attention = []
    for level in range(num_levels):
        first = 1 + level * (layers + 1)
        attention.append("1" in children.get(first, set()))
    return UNetLayout(num_levels=num_levels, layers_per_block=layers, attention_levels=tuple(attention))


# --------------------------------------------------------------------------------------------------------------------
# Plans: how each key of our module is read from the file

"""ModelScope text-to-video UNet3D (diffusers ``UNet3DConditionModel`` layout).

``UNet3D(config).state_dict()`` has exactly diffusers' ``UNet3DConditionModel`` keys for the same config (the
ModelScope T2V layout), which is also the layout of the StreamingT2V checkpoint's ``base_model.*`` (plus the CAM
mergers and APM mixers that :class:`~streamingt2v_core.models.extender.ConditionedUNet3D` adds) and, through
``key_maps.py``, of the MS-Vid2Vid-XL refiner.

Forward:
    ``sample [B, 4, T, H, W]``, ``timestep`` (``Tensor[B]``, ``Tensor[1]``, 0-d or a number; DDPM steps 0..999,
    fractional allowed), ``encoder_hidden_states [B or 1, tokens, 1024]`` -> ``[B, 4, T, H, W]`` (epsilon for the
    base model, v for the refiner, see ``config.prediction_type``). Optional ``control``: per-frame ControlNet
    residuals (:class:`ControlResiduals`), added to the skip connections and the mid output.

The module runs in its parameter dtype (no autocast): inputs are cast to it, the sinusoidal timestep embedding is
computed in fp32 then cast. The output is in the parameter dtype.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import AttentionFunctionMixin
from .blocks import (
    DOWN_BLOCKS,
    UP_BLOCKS,
    TemporalTransformer,
    TimestepEmbedding,
    UNetMidBlock3DCrossAttn,
    _AttnSettings,
    timestep_embedding,
)
from .config import UNet3DConfig

__all__ = ["ControlResiduals", "UNet3DEncoder", "UNet3D", "set_compute_dtype"]


def set_compute_dtype(root: nn.Module, dtype: torch.dtype | None) -> int:
    """Compute in ``dtype`` whatever the weights are stored in, in every UNet3D part under ``root`` (the extender's
    base model and CAM included); None = the parameter dtype. Returns how many parts were set.

    For fp8 weight storage: the layers must then cast their weights to the input dtype per call (the host's
    manual-cast ops do); parameters outside such layers must already be in ``dtype``.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point and dtype.itemsize >= 2):
        raise ValueError(f"dtype: expected torch.float16, bfloat16, float32 or None, got {dtype!r}")
    count = 0
    for module in root.modules():
        if isinstance(module, UNet3DEncoder):
            module.compute_dtype = dtype
            count += 1
    return count


@dataclass
class ControlResiduals:
    """Per-frame ControlNet residuals for one forward: plain tensors, frames folded into the batch (``[B*T, C, h, w]``,
    frame index fastest, as :meth:`UNet3DEncoder.fold_frames`).

    The ModelScope UNet3D's spatial layout is the SD 2.x UNet's, so an SD 2.x ControlNet run on each frame gives one
    residual per down-path skip (``skips[i]`` for skip ``i``, index 0 = the ``conv_in``/``transformer_in`` output;
    ``config.num_skips`` of them) and one for the mid block output (``mid``). As in the SD UNet they are added where
    the up path reads the skips, and to the mid block's output; ``None`` entries add nothing. In the extender they are
    added after the CAM mergers (the mergers see the features they were trained on; see ``ConditionedUNet3D``).
    """

    skips: list[Tensor | None]
    mid: Tensor | None = None


class UNet3DEncoder(AttentionFunctionMixin, nn.Module):
    """Input conv, time embedding, ``transformer_in``, down blocks and mid block of the UNet3D.

    Shared by :class:`UNet3D` and the CAM (which is a copy of exactly these modules). ``image_tokens > 0`` puts the
    APM token mixer into every spatial cross-attention (the extender's base model).
    """

    def __init__(self, config: UNet3DConfig, image_tokens: int = 0, apm_kernel_size: int = 3) -> None:
        super().__init__()
        if not isinstance(config, UNet3DConfig):
            raise ValueError(f"config: expected a UNet3DConfig, got {type(config).__name__}")
        self.config = config
        self.image_tokens = image_tokens
        #: Dtype to compute in when it differs from the storage dtype (fp8 weights cast per layer by the host's
        #: manual-cast ops); None = the parameter dtype. See :meth:`set_compute_dtype`.
        self.compute_dtype: torch.dtype | None = None
        c0 = config.block_out_channels[0]
        self._attn = _AttnSettings(
            config.attention_head_dim,
            config.cross_attention_dim,
            config.norm_num_groups,
            image_tokens,
            config.text_tokens,
            apm_kernel_size,
        )
        self.conv_in = nn.Conv2d(config.in_channels, c0, 3, padding=1)
        self.time_embedding = TimestepEmbedding(c0, config.time_embed_dim)
        self.transformer_in = TemporalTransformer(
            c0, config.transformer_in_heads, config.attention_head_dim, config.norm_num_groups
        )
        self.down_blocks = nn.ModuleList()
        out_ch = c0
        n = len(config.block_out_channels)
        for i, block_type in enumerate(config.down_block_types):
            in_ch, out_ch = out_ch, config.block_out_channels[i]
            self.down_blocks.append(
                DOWN_BLOCKS[block_type](
                    in_ch,
                    out_ch,
                    config.time_embed_dim,
                    config.layers_per_block,
                    config.norm_eps,
                    i < n - 1,
                    config.downsample_padding,
                    self._attn,
                )
            )
        self.mid_block = UNetMidBlock3DCrossAttn(
            config.block_out_channels[-1], config.time_embed_dim, config.norm_eps, self._attn
        )

    # ----------------------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs are cast to and activations are in: ``compute_dtype``, else the parameter dtype."""
        return self.compute_dtype or self.conv_in.weight.dtype

    def set_compute_dtype(self, dtype: torch.dtype | None) -> None:
        """See :func:`set_compute_dtype`."""
        set_compute_dtype(self, dtype)

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def _check_sample(self, sample: Tensor) -> None:
        if not isinstance(sample, Tensor) or sample.ndim != 5 or sample.shape[1] != self.config.in_channels:
            shape = tuple(sample.shape) if isinstance(sample, Tensor) else type(sample).__name__
            raise ValueError(f"sample: expected [B, {self.config.in_channels}, T, H, W], got {shape}")

    def _check_context(self, context: Tensor, batch: int) -> Tensor:
        if not isinstance(context, Tensor) or context.ndim != 3 or context.shape[-1] != self.config.cross_attention_dim:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(
                f"encoder_hidden_states: expected [B, tokens, {self.config.cross_attention_dim}], got {shape}"
            )
        if context.shape[0] not in (1, batch):
            raise ValueError(f"encoder_hidden_states: batch {context.shape[0]} must be 1 or the sample batch {batch}")
        return context.to(device=self.device, dtype=self.dtype)

    def embed_timestep(self, timestep: Tensor | float | int, batch: int, num_frames: int) -> Tensor:
        """Timestep(s) -> ``[batch * num_frames, time_embed_dim]`` in the parameter dtype (sinusoid in fp32)."""
        if isinstance(timestep, numbers.Number):
            t = torch.tensor([float(timestep)], device=self.device)
        elif isinstance(timestep, Tensor):
            t = timestep.to(self.device).reshape(-1) if timestep.ndim <= 1 else None
            if t is None or t.numel() not in (1, batch):
                raise ValueError(
                    f"timestep: expected a number, a 0-d tensor or shape [{batch}], got {tuple(timestep.shape)}"
                )
        else:
            raise ValueError(f"timestep: expected a number or a tensor, got {type(timestep).__name__}")
        t = t.expand(batch)
        t_emb = timestep_embedding(t, self.config.block_out_channels[0]).to(self.dtype)
        return self.time_embedding(t_emb).repeat_interleave(num_frames, dim=0)

    @staticmethod
    def fold_frames(sample: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` -> ``[B*T, C, H, W]`` (frame index fastest)."""
        b, c, t, h, w = sample.shape
        return sample.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

    @staticmethod
    def unfold_frames(x: Tensor, num_frames: int) -> Tensor:
        """``[B*T, C, H, W]`` -> ``[B, C, T, H, W]``."""
        bt, c, h, w = x.shape
        return x.view(bt // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)

    def encode(
        self,
        x: Tensor,
        emb: Tensor,
        context: Tensor,
        num_frames: int,
        input_addend: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Input conv, ``transformer_in`` (+ ``input_addend``, the CAM's E_cond features), down blocks.

        ``x``: ``[B*T, in, H, W]``. Returns the last hidden state and the skip list (``config.num_skips`` tensors).
        """
        h = self.transformer_in(self.conv_in(x), num_frames)
        if input_addend is not None:
            h = h + input_addend
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, emb, context, num_frames)
            skips.extend(block_skips)
        return h, skips


class UNet3D(UNet3DEncoder):
    """ModelScope UNet3D: :class:`UNet3DEncoder` + up blocks + output head."""

    def __init__(self, config: UNet3DConfig, image_tokens: int = 0, apm_kernel_size: int = 3) -> None:
        super().__init__(config, image_tokens, apm_kernel_size)
        rev = list(reversed(config.block_out_channels))
        n = len(rev)
        self.up_blocks = nn.ModuleList()
        out_ch = rev[0]
        for i, block_type in enumerate(config.up_block_types):
            prev_ch, out_ch = out_ch, rev[i]
            in_ch = rev[min(i + 1, n - 1)]
            self.up_blocks.append(
                UP_BLOCKS[block_type](
                    in_ch,
                    prev_ch,
                    out_ch,
                    config.time_embed_dim,
                    config.layers_per_block + 1,
                    config.norm_eps,
                    i < n - 1,
                    self._attn,
                    config.upsample_trim_rows,
                )
            )
        c0 = config.block_out_channels[0]
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, c0, eps=config.norm_eps)
        self.conv_out = nn.Conv2d(c0, config.out_channels, 3, padding=1)

    def forward(self, sample: Tensor, timestep: Tensor | float | int, encoder_hidden_states: Tensor,
                control: ControlResiduals | None = None) -> Tensor:
        """``[B, 4, T, H, W]`` -> ``[B, 4, T, H, W]`` (epsilon or v, per ``config.prediction_type``); ``control``:
        optional per-frame ControlNet residuals."""
        return self._unet_forward(sample, timestep, encoder_hidden_states, None, control)

    # Subclasses (the extender's base model) replace skips / mid output with conditioned versions here.
    def condition_features(
        self, skips: list[Tensor], mid: Tensor, conditioning: object, num_frames: int
    ) -> tuple[list[Tensor], Tensor]:
        """Identity in the plain UNet3D."""
        return skips, mid

    def add_control_residuals(
        self, skips: list[Tensor], mid: Tensor, control: ControlResiduals
    ) -> tuple[list[Tensor], Tensor]:
        """``skips[i] + control.skips[i]`` and ``mid + control.mid`` (out of place); shapes must match exactly."""
        if not isinstance(control, ControlResiduals):
            raise ValueError(f"control: expected ControlResiduals, got {type(control).__name__}")
        if len(control.skips) != len(skips):
            raise ValueError(
                f"control: expected {len(skips)} skip residuals (one per skip connection of this UNet), got "
                f"{len(control.skips)}"
            )
        out = []
        for i, (skip, residual) in enumerate(zip(skips, control.skips)):
            if residual is not None:
                if tuple(residual.shape) != tuple(skip.shape):
                    raise ValueError(
                        f"control: skip residual {i} has shape {tuple(residual.shape)}, the skip connection it is "
                        f"added to has {tuple(skip.shape)}"
                    )
                skip = skip + residual.to(device=skip.device, dtype=skip.dtype)
            out.append(skip)
        if control.mid is not None:
            if tuple(control.mid.shape) != tuple(mid.shape):
                raise ValueError(
                    f"control: the mid residual has shape {tuple(control.mid.shape)}, the mid block output has "
                    f"{tuple(mid.shape)}"
                )
            mid = mid + control.mid.to(device=mid.device, dtype=mid.dtype)
        return out, mid

    def _unet_forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        encoder_hidden_states: Tensor,
        conditioning: object,
        control: ControlResiduals | None = None,
    ) -> Tensor:
        self._check_sample(sample)
        b, _, num_frames, h, w = sample.shape
        self.config.check_latent_size(h, w)
        context = self._check_context(encoder_hidden_states, b)
        emb = self.embed_timestep(timestep, b, num_frames)
        x = self.fold_frames(sample.to(device=self.device, dtype=self.dtype))

        hidden, skips = self.encode(x, emb, context, num_frames)
        # The mid block consumes the un-merged last encoder output; conditioning (CAM mergers) then replaces the
        # skips and the mid output, as in the official StreamingT2V code.
        hidden = self.mid_block(hidden, emb, context, num_frames)
        if conditioning is not None:
            skips, hidden = self.condition_features(skips, hidden, conditioning, num_frames)
        if control is not None:
            # After the CAM mergers, where the up path reads the skips (the SD UNet's apply_control point).
            skips, hidden = self.add_control_residuals(skips, hidden, control)

        for block in self.up_blocks:
            k = len(block.resnets)
            block_skips, skips = skips[-k:], skips[:-k]
            size = tuple(skips[-1].shape[-2:]) if (block.upsamplers is not None and skips) else None
            # Handed over in a list the block empties, so this frame does not keep the block's input alive while
            # the block runs (at level 0 that is 640 channels at full resolution: 0.8 GiB at 720p CFG in fp16).
            carry = [hidden]
            del hidden
            hidden = block(carry, block_skips, emb, context, num_frames, size)
        del skips

        out = self.conv_out(torch.nn.functional.silu(self.conv_norm_out(hidden)))
        return self.unfold_frames(out, num_frames).contiguous()

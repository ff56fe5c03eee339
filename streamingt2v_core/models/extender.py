"""The StreamingT2V extender: base UNet3D with CAM mergers and APM mixers, the CAM, and the APM resampler.

Submodule names match the official ``streaming_t2v.ckpt`` prefixes, so ``StreamingT2VExtender.state_dict()`` keys
are the checkpoint's ``base_model.*``, ``unet.*`` (the CAM) and ``resampler.*`` keys.

One extender call = one denoiser evaluation for a 16-frame chunk::

    eps = extender(sample [B,4,16,H,W], timestep, text [B,77,1024], image_embeds [B,1024], cond_frames [B,8,3,8H,8W])

- ``cond_frames``: the last 8 frames of the previous chunk, RGB in [-1, 1] (the same for both CFG halves; a batch
  of 1 is broadcast).
- ``image_embeds``: pooled OpenCLIP ViT-H/14 embedding of the anchor frame (frame 0 of the first chunk). For the
  unconditional CFG half pass the embedding of a mid-grey image (what the official code does), not zeros.
- The CAM sees ``sample[:, :, :8]`` (the first 8 noisy frames, official code) and the text tokens only.

A freshly built extender is exactly its base UNet3D: the mergers' ``proj_out``, E_cond's ``conv_out`` and the APM
``alpha`` gates are zero at init.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .apm import AppearancePreservationModule
from .attention import AttentionFunctionMixin
from .cam import CAMFeatures, ConditionalAttentionModule, CrossAttentionMerger
from .config import ExtenderConfig
from .unet3d import ControlResiduals, UNet3D

__all__ = ["ConditionedUNet3D", "StreamingT2VExtender"]


class ConditionedUNet3D(UNet3D):
    """The extender's ``base_model``: UNet3D + APM token mixers in every spatial cross-attention + CAM mergers.

    ``cross_attention_merger_down_blocks.{i}`` merges CAM skip ``i`` into base skip ``i`` (12 at full size, index 0
    = the ``transformer_in`` output); ``cross_attention_merger_mid_block`` merges the CAM mid output into the base
    mid output. The mid block itself consumes the un-merged last encoder output (official code).

    ControlNet residuals (``control``) are added after the mergers: a merger's query is the base skip it was trained
    on, and the residual then reaches the up path as in the SD UNet (order: CAM merge, then ControlNet).
    """

    def __init__(self, config: ExtenderConfig) -> None:
        unet = config.unet
        super().__init__(unet, image_tokens=config.num_image_tokens, apm_kernel_size=config.apm_kernel_size)
        self.extender_config = config
        g = unet.norm_num_groups
        self.cross_attention_merger_down_blocks = nn.ModuleList(
            [CrossAttentionMerger(c, config.merger_head_dim, g) for c in unet.skip_channels()]
        )
        self.cross_attention_merger_mid_block = CrossAttentionMerger(
            unet.block_out_channels[-1], config.merger_head_dim, g
        )

    def forward(  # type: ignore[override]
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        encoder_hidden_states: Tensor,
        cam_features: CAMFeatures | None = None,
        control: ControlResiduals | None = None,
    ) -> Tensor:
        """``encoder_hidden_states``: ``[B, 77 + 16, 1024]`` (text + APM image tokens). Without ``cam_features``
        the mergers are skipped (equal to zero-init mergers). ``control``: optional per-frame ControlNet residuals,
        added after the mergers."""
        return self._unet_forward(sample, timestep, encoder_hidden_states, cam_features, control)

    def condition_features(
        self, skips: list[Tensor], mid: Tensor, conditioning: object, num_frames: int
    ) -> tuple[list[Tensor], Tensor]:
        if not isinstance(conditioning, CAMFeatures):
            raise ValueError(f"cam_features: expected CAMFeatures, got {type(conditioning).__name__}")
        if len(conditioning.skips) != len(skips):
            raise ValueError(f"cam_features: expected {len(skips)} skip features, got {len(conditioning.skips)}")
        fc = conditioning.num_cond_frames
        merged = [
            merger(skip, cam, num_frames, fc)
            for merger, skip, cam in zip(self.cross_attention_merger_down_blocks, skips, conditioning.skips)
        ]
        mid = self.cross_attention_merger_mid_block(mid, conditioning.mid, num_frames, fc)
        return merged, mid


class StreamingT2VExtender(AttentionFunctionMixin, nn.Module):
    """StreamingT2V extender: ``base_model`` (:class:`ConditionedUNet3D`), ``unet`` (the CAM), ``resampler`` (APM)."""

    def __init__(self, config: ExtenderConfig | None = None) -> None:
        super().__init__()
        config = ExtenderConfig.full() if config is None else config
        if not isinstance(config, ExtenderConfig):
            raise ValueError(f"config: expected an ExtenderConfig, got {type(config).__name__}")
        self.config = config
        self.base_model = ConditionedUNet3D(config)
        self.unet = ConditionalAttentionModule(
            config.unet, config.num_cond_frames, config.cond_embedding_channels, config.cond_in_channels
        )
        self.resampler = AppearancePreservationModule(
            config.image_embed_dim, config.resampler_inner_dim, config.num_image_tokens, config.unet.cross_attention_dim
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.base_model.dtype

    @property
    def device(self) -> torch.device:
        return self.base_model.device

    def build_context(self, encoder_hidden_states: Tensor, image_embeds: Tensor) -> Tensor:
        """``[B, 77, 1024]`` text + ``[B, 1024]`` anchor embedding -> ``[B, 93, 1024]`` base-model context."""
        text_tokens = self.config.unet.text_tokens
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[1] != text_tokens:
            raise ValueError(
                f"encoder_hidden_states: expected [B, {text_tokens}, {self.config.unet.cross_attention_dim}] text "
                f"tokens, got {tuple(encoder_hidden_states.shape)}"
            )
        image_tokens = self.resampler(image_embeds)
        text = encoder_hidden_states.to(device=image_tokens.device, dtype=image_tokens.dtype)
        if image_tokens.shape[0] != text.shape[0]:
            if image_tokens.shape[0] == 1:
                image_tokens = image_tokens.expand(text.shape[0], -1, -1)
            elif text.shape[0] == 1:
                text = text.expand(image_tokens.shape[0], -1, -1)
            else:
                raise ValueError(
                    f"image_embeds: batch {image_tokens.shape[0]} does not match encoder_hidden_states batch "
                    f"{text.shape[0]}"
                )
        return torch.cat([text, image_tokens], dim=1)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        encoder_hidden_states: Tensor,
        image_embeds: Tensor,
        cond_frames: Tensor,
        control: ControlResiduals | None = None,
    ) -> Tensor:
        """Epsilon prediction for a chunk.

        Args:
            sample: ``[B, 4, 16, H, W]`` noisy latents.
            timestep: DDPM step(s) 0..999: number, 0-d, ``[1]`` or ``[B]``.
            encoder_hidden_states: ``[B, 77, 1024]`` text tokens (negative prompt for the uncond half).
            image_embeds: ``[B, 1024]`` pooled CLIP image embedding of the anchor (grey image for the uncond half).
            cond_frames: ``[B or 1, 8, 3, 8H, 8W]`` conditioning frames, RGB in [-1, 1].
            control: optional per-frame ControlNet residuals for the base model (after the CAM mergers).

        Returns:
            ``[B, 4, 16, H, W]`` epsilon, in the parameter dtype.
        """
        self.base_model._check_sample(sample)
        context = self.build_context(encoder_hidden_states, image_embeds)
        if context.shape[0] not in (1, sample.shape[0]):
            raise ValueError(
                f"encoder_hidden_states: batch {context.shape[0]} must be 1 or the sample batch {sample.shape[0]}"
            )
        cam_features = self.unet(sample, timestep, context, cond_frames)
        return self.base_model(sample, timestep, context, cam_features, control)

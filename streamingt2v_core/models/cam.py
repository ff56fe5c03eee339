"""Conditional Attention Module (CAM) and its cross-attention mergers.

The CAM (checkpoint prefix ``unet.``) is, in the official ``StreamingModelscope`` code, a ControlNet-style copy of
the UNet3D's encoder half and mid block. Where the official code differs from the paper we follow the code:

- it consumes the first ``num_cond_frames`` (8) *noisy latent* frames of the current chunk (``sample[:, :, :8]``)
  and the 77 text tokens (no APM tokens), besides the conditioning frames;
- the frame encoder ``E_cond`` (:class:`FrameConditioningEncoder`, key ``controlnet_cond_embedding``) encodes the
  8 conditioning RGB frames (last 8 frames of the previous chunk, in [-1, 1]) and is *added* after
  ``transformer_in``; its ``conv_out`` is zero-initialised;
- its output "zero convolutions" are identities (no parameters, no keys): the 12 skip features and the mid output
  go straight to the base UNet's mergers.

:class:`CrossAttentionMerger` (``base_model.cross_attention_merger_*.temporal_transformer``) injects one CAM
feature into one base-UNet feature: per pixel, the 16 frames of the base feature attend to the 8 CAM frames:

    x''  = MHA(Q = W_q P_in(GroupNorm(x_skip)), K = W_k x_cam, V = W_v x_cam)
    x''' = x_skip + P_out(W_o x'')

with ``P_out`` (``proj_out``) zero-initialised, so a fresh merger is the identity. (The paper has a single output
projection; the code has the attention's ``to_out`` and then ``proj_out``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Attention
from .config import UNet3DConfig
from .unet3d import UNet3DEncoder

__all__ = [
    "CAMFeatures",
    "FrameConditioningEncoder",
    "ConditionalAttentionModule",
    "TemporalCrossAttention",
    "CrossAttentionMerger",
]


@dataclass
class CAMFeatures:
    """CAM outputs: ``skips`` (one per base-UNet skip, ``[B*Fc, C, h, w]``) and ``mid`` (``[B*Fc, C, h, w]``)."""

    skips: list[Tensor]
    mid: Tensor
    num_cond_frames: int


class FrameConditioningEncoder(nn.Module):
    """E_cond: frame-wise conv stack 3 -> 32 -> 96 -> 256 -> 512 (three stride-2 stages) -> zero-init conv to 320.

    ``[N, 3, 8h, 8w]`` in [-1, 1] -> ``[N, C0, h, w]``. SiLU after every conv but the last; no normalisation.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.blocks) // 2)

    def forward(self, frames: Tensor) -> Tensor:
        h = F.silu(self.conv_in(frames))
        for conv in self.blocks:
            h = F.silu(conv(h))
        return self.conv_out(h)


class ConditionalAttentionModule(UNet3DEncoder):
    """CAM: UNet3D encoder + mid block copy with E_cond, run on the first ``num_cond_frames`` noisy frames.

    Keys: ``conv_in``, ``time_embedding``, ``transformer_in``, ``down_blocks``, ``mid_block`` (as the UNet3D, plain
    cross-attentions without APM) and ``controlnet_cond_embedding``.
    """

    def __init__(
        self,
        config: UNet3DConfig,
        num_cond_frames: int = 8,
        cond_embedding_channels: tuple[int, ...] = (32, 96, 256, 512),
        cond_in_channels: int = 3,
    ) -> None:
        super().__init__(config, image_tokens=0)
        self.num_cond_frames = num_cond_frames
        self.controlnet_cond_embedding = FrameConditioningEncoder(
            cond_in_channels, tuple(cond_embedding_channels), config.block_out_channels[0]
        )

    @classmethod
    def from_unet(cls, unet: UNet3DEncoder, **kwargs: object) -> "ConditionalAttentionModule":
        """A CAM whose encoder weights are copied from ``unet`` (as ControlNet init); E_cond is fresh."""
        cam = cls(unet.config, **kwargs)  # type: ignore[arg-type]
        own = cam.state_dict()
        src = {k: v for k, v in unet.state_dict().items() if k in own and not k.startswith("controlnet_cond")}
        # APM parameters of an extender base model have no counterpart in the CAM.
        cam.load_state_dict(src, strict=False)
        return cam.to(device=unet.device, dtype=unet.dtype)

    def forward(
        self, sample: Tensor, timestep: Tensor | float | int, encoder_hidden_states: Tensor, cond_frames: Tensor
    ) -> CAMFeatures:
        """CAM features for the base UNet's mergers.

        Args:
            sample: noisy chunk ``[B, 4, T, H, W]``; only frames ``[:num_cond_frames]`` are read (official code).
            timestep: as :class:`~streamingt2v_core.models.unet3d.UNet3D`.
            encoder_hidden_states: ``[B or 1, >=77, 1024]``; only the first 77 (text) tokens are used.
            cond_frames: ``[B or 1, num_cond_frames, 3, 8H, 8W]`` RGB in [-1, 1].
        """
        self._check_sample(sample)
        b, _, t, h, w = sample.shape
        fc = self.num_cond_frames
        if t < fc:
            raise ValueError(f"sample: expected at least num_cond_frames={fc} frames, got {t}")
        context = self._check_context(encoder_hidden_states, b)
        text = self.config.text_tokens
        if context.shape[1] < text:
            raise ValueError(f"encoder_hidden_states: expected at least {text} text tokens, got {context.shape[1]}")
        context = context[:, :text]
        scale = self.controlnet_cond_embedding.downscale
        expected = (fc, self.controlnet_cond_embedding.conv_in.in_channels, h * scale, w * scale)
        if (
            not isinstance(cond_frames, Tensor)
            or cond_frames.ndim != 5
            or tuple(cond_frames.shape[1:]) != expected
            or cond_frames.shape[0] not in (1, b)
        ):
            shape = tuple(cond_frames.shape) if isinstance(cond_frames, Tensor) else type(cond_frames).__name__
            raise ValueError(f"cond_frames: expected [B or 1, {', '.join(map(str, expected))}] in [-1, 1], got {shape}")

        emb = self.embed_timestep(timestep, b, fc)
        x = self.fold_frames(sample[:, :, :fc].to(device=self.device, dtype=self.dtype))
        frames = cond_frames.to(device=self.device, dtype=self.dtype)
        cond = self.controlnet_cond_embedding(frames.reshape(-1, *expected[1:]))
        if cond_frames.shape[0] != b:  # one set of frames shared by the CFG halves: encode once
            cond = cond.repeat(b, 1, 1, 1)
        hidden, skips = self.encode(x, emb, context, fc, input_addend=cond)
        mid = self.mid_block(hidden, emb, context, fc)
        return CAMFeatures(skips=skips, mid=mid, num_cond_frames=fc)


class TemporalCrossAttention(nn.Module):
    """The merger's body (key ``temporal_transformer``): norm, P_in, temporal cross-attention, zero-init P_out."""

    def __init__(self, channels: int, head_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.attention = Attention(channels, channels, channels // head_dim, head_dim)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor, cam: Tensor, num_frames: int, num_cond_frames: int) -> Tensor:
        """``x``: ``[B*F, C, H, W]`` base feature; ``cam``: ``[B*Fc, C, H, W]`` CAM feature -> merged ``x``."""
        bf, c, h, w = x.shape
        b = bf // num_frames
        if cam.shape != (b * num_cond_frames, c, h, w):
            raise ValueError(
                f"cam: expected CAM feature {(b * num_cond_frames, c, h, w)} for base feature {tuple(x.shape)}, "
                f"got {tuple(cam.shape)}"
            )
        # Spatio-temporal GroupNorm statistics per sample: view as (B, C, F, H, W).
        q = self.norm(x.view(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4))
        q = q.permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        kv = cam.view(b, num_cond_frames, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, num_cond_frames, c)
        out = self.proj_out(self.attention(self.proj_in(q), kv))
        out = out.view(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        return x + out


class CrossAttentionMerger(nn.Module):
    """One CAM -> base-UNet merger (``cross_attention_merger_*.N``); holds ``temporal_transformer``."""

    def __init__(self, channels: int, head_dim: int = 64, groups: int = 32) -> None:
        super().__init__()
        self.temporal_transformer = TemporalCrossAttention(channels, head_dim, groups)

    def forward(self, x: Tensor, cam: Tensor, num_frames: int, num_cond_frames: int) -> Tensor:
        return self.temporal_transformer(x, cam, num_frames, num_cond_frames)

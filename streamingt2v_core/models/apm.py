"""Appearance Preservation Module (APM).

Two parts, as in the official ``StreamingModelscope`` code:

1. :class:`AppearancePreservationModule` (the checkpoint's ``resampler.*``): a 2-layer MLP that turns the pooled
   OpenCLIP ViT-H/14 image embedding (1024) of the *anchor* frame (frame 0 of the first chunk) into 16 context
   tokens of 1024: ``Linear(1024, 1280) -> SiLU -> Linear(1280, 16*1024)``. The paper calls it an MLP producing
   k=16 tokens; the official class is named ``ImgEmbContextResampler`` but it is not a perceiver.
2. :class:`AppearanceMixingCrossAttention`: every spatial cross-attention (``attn2``) of the base UNet (16 of
   them) owns a token mixer: ``x_mixed = LayerNorm(Conv1d_{93->77, k=3}(ctx))`` with the 93 tokens (77 text + 16
   image) as Conv1d *channels* and the 1024 features as the sequence; keys/values then use
   ``ctx_text + SiLU(alpha) * x_mixed`` with ``alpha`` a scalar initialised to 0, so a fresh module is exactly the
   text-only cross-attention. The official code applies this mixing only in its xformers processor and silently
   drops it with other backends; we apply it always, whatever attention function is installed.

Unconditional branch (classifier-free guidance): the official code feeds the image encoder a *grey* image
(``zeros`` in [-1, 1]) and uses its resampled tokens, not zero tokens. Producing that embedding is the caller's job:
pass the pooled CLIP embedding of a mid-grey frame as ``image_embeds`` for the unconditional half of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Attention

__all__ = ["AppearancePreservationModule", "AppearanceMixingCrossAttention"]


class AppearancePreservationModule(nn.Module):
    """APM resampler MLP: pooled anchor image embedding ``[B, 1024]`` -> ``[B, 16, 1024]`` image tokens."""

    def __init__(
        self, image_embed_dim: int = 1024, inner_dim: int = 1280, num_tokens: int = 16, context_dim: int = 1024
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.context_dim = context_dim
        self.image_embed_dim = image_embed_dim
        self.context_embedding = nn.Sequential(
            nn.Linear(image_embed_dim, inner_dim),
            nn.SiLU(),
            nn.Linear(inner_dim, num_tokens * context_dim),
        )

    def forward(self, image_embeds: Tensor) -> Tensor:
        """``image_embeds``: ``[B, D]`` or ``[B, n_images, D]`` (averaged over images, as the official code)."""
        if image_embeds.ndim == 3:
            image_embeds = image_embeds.mean(dim=1)
        if image_embeds.ndim != 2 or image_embeds.shape[-1] != self.image_embed_dim:
            raise ValueError(
                f"image_embeds: expected [B, {self.image_embed_dim}] (pooled CLIP image embedding), "
                f"got {tuple(image_embeds.shape)}"
            )
        weight = self.context_embedding[0].weight
        tokens = self.context_embedding(image_embeds.to(device=weight.device, dtype=weight.dtype))
        return tokens.view(image_embeds.shape[0], self.num_tokens, self.context_dim)


class AppearanceMixingCrossAttention(Attention):
    """Spatial cross-attention with the APM token mixer (``conv``, ``conv_ln``, ``alpha`` inside ``attn2``)."""

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        heads: int,
        dim_head: int,
        text_tokens: int = 77,
        image_tokens: int = 16,
        kernel_size: int = 3,
    ) -> None:
        super().__init__(query_dim, context_dim, heads, dim_head)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size: expected an odd size ('same' padding), got {kernel_size}")
        self.text_tokens = text_tokens
        self.image_tokens = image_tokens
        # Tokens are the Conv1d channels, the context features its sequence ("same" padding along features).
        self.conv = nn.Conv1d(text_tokens + image_tokens, text_tokens, kernel_size, padding=kernel_size // 2)
        self.conv_ln = nn.LayerNorm(context_dim)
        self.alpha = nn.Parameter(torch.zeros(()))

    def prepare_context(self, context: Tensor) -> Tensor:
        """``[B, 77+16, D]`` -> ``[B, 77, D]`` = text + SiLU(alpha) * LayerNorm(Conv1d(context))."""
        expected = self.text_tokens + self.image_tokens
        if context.shape[1] != expected:
            raise ValueError(
                f"encoder_hidden_states: the APM cross-attention expects {self.text_tokens} text + "
                f"{self.image_tokens} image tokens = {expected}, got {context.shape[1]}"
            )
        mixed = self.conv_ln(self.conv(context))
        return context[:, : self.text_tokens] + F.silu(self.alpha) * mixed

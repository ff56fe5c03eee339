"""Multi-head attention with one pluggable attention function.

Every attention layer of our models is an :class:`Attention`; the actual ``softmax(QK^T/sqrt(d))V`` goes through
an :data:`AttentionFn` ``fn(q, k, v, heads) -> out`` with q/k/v shaped ``(batch, tokens, heads * dim_head)``.
That is exactly the signature of the host's ``comfy.ldm.modules.attention.optimized_attention``, so the ComfyUI
nodes inject the host's choice (xformers, sage, flash, split...) with ``model.set_attention_function(fn)``; the
default is :func:`sdpa_attention` (``torch.nn.functional.scaled_dot_product_attention``).

Projection names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) follow diffusers' ``Attention`` because the
checkpoints use them.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionFn",
    "sdpa_attention",
    "Attention",
    "install_attention_function",
    "AttentionFunctionMixin",
]

AttentionFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]

# Some CUDA SDPA kernels put the batch on a grid dimension limited to 65535 blocks ("invalid configuration
# argument"); temporal attentions have batch = B*H*W (28,800 for a CFG pair of 90x160 refiner latents), so larger
# videos could cross it. Splitting the batch is exact.
_MAX_SDPA_BATCH = 65535


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Default :data:`AttentionFn`: multi-head attention through ``F.scaled_dot_product_attention``.

    Args:
        q: ``(batch, q_tokens, heads * dim_head)``.
        k, v: ``(batch, kv_tokens, heads * dim_head)``.
        heads: number of heads.

    Returns:
        ``(batch, q_tokens, heads * dim_head)``, scale ``1/sqrt(dim_head)``, no mask.
    """
    b, n, inner = q.shape
    if inner % heads:
        raise ValueError(f"heads: {heads} does not divide the projection width {inner}")
    dh = inner // heads
    q4 = q.view(b, n, heads, dh).transpose(1, 2)
    k4 = k.view(b, k.shape[1], heads, dh).transpose(1, 2)
    v4 = v.view(b, v.shape[1], heads, dh).transpose(1, 2)
    if q.is_cuda and b > _MAX_SDPA_BATCH:
        step = _MAX_SDPA_BATCH // 2
        chunks = [
            F.scaled_dot_product_attention(q4[i : i + step], k4[i : i + step], v4[i : i + step])
            for i in range(0, b, step)
        ]
        out = torch.cat(chunks)
    else:
        out = F.scaled_dot_product_attention(q4, k4, v4)
    return out.transpose(1, 2).reshape(b, n, inner)


class Attention(nn.Module):
    """Multi-head (self- or cross-) attention: ``to_out(attn(to_q(x), to_k(c), to_v(c)))``.

    ``to_q``/``to_k``/``to_v`` have no bias and ``to_out.0`` has one, as in the ModelScope UNet3D. When the
    context has fewer rows than ``x`` (one context per video, ``x`` with its frames folded into the batch), K and V
    are projected once per video and the frames are folded into the query sequence instead of repeating K/V per
    frame: ``(B*F, N, C)`` queries become ``(B, F*N, C)``. Softmax is per query, so this is exact, and it avoids
    ``B*F`` copies of the context's keys and values.
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64) -> None:
        super().__init__()
        if heads < 1 or dim_head < 1:
            raise ValueError(f"heads/dim_head: expected positive ints, got {heads}/{dim_head}")
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        # diffusers keeps a Dropout at index 1; only index 0 carries weights (``to_out.0.*``).
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])
        self.attention_fn: AttentionFn | None = None

    def prepare_context(self, context: Tensor) -> Tensor:
        """Hook for subclasses that transform the context before K/V (the APM token mixer)."""
        return context

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, tokens, query_dim)``; ``context``: ``(batch or batch/r, ctx_tokens, context_dim)``."""
        ctx = x if context is None else self.prepare_context(context)
        q = self.to_q(x)
        k = self.to_k(ctx)
        v = self.to_v(ctx)
        fn = self.attention_fn or sdpa_attention
        qb, n, inner = q.shape
        if k.shape[0] != qb:
            if qb % k.shape[0]:
                raise ValueError(
                    f"context: batch {k.shape[0]} must divide the query batch {qb} (frames folded into the batch)"
                )
            out = fn(q.reshape(k.shape[0], -1, inner), k, v, self.heads).reshape(qb, n, inner)
        else:
            out = fn(q, k, v, self.heads)
        return self.to_out[0](out)


def install_attention_function(root: nn.Module, fn: AttentionFn | None) -> int:
    """Set ``fn`` (None = :func:`sdpa_attention`) on every :class:`Attention` under ``root``; returns how many."""
    if fn is not None and not callable(fn):
        raise ValueError(f"fn: expected a callable fn(q, k, v, heads) or None, got {type(fn).__name__}")
    count = 0
    for module in root.modules():
        if isinstance(module, Attention):
            module.attention_fn = fn
            count += 1
    return count


class AttentionFunctionMixin:
    """Gives a model ``set_attention_function(fn)``: the one injection point for the attention kernel."""

    def set_attention_function(self, fn: AttentionFn | None) -> None:
        """Use ``fn(q, k, v, heads)`` in every attention layer of this model (None = torch SDPA)."""
        install_attention_function(self, fn)  # type: ignore[arg-type]

"""Multi-head attention with one pluggable attention function.

Every attention layer of our models is an :class:`Attention`; the actual ``softmax(QK^T/sqrt(d))V`` goes through
an :data:`AttentionFn` ``fn(q, k, v, heads) -> out`` with q/k/v shaped ``(batch, tokens, heads * dim_head)``.
That is exactly the signature of the host's ``comfy.ldm.modules.attention.optimized_attention``, so the ComfyUI
nodes inject the host's choice (xformers, sage, flash, split...) with ``model.set_attention_function(fn)``; the
default is :func:`sdpa_attention` (``torch.nn.functional.scaled_dot_product_attention``).

Kernel limits. Temporal attention runs one short sequence per pixel, so its batch is ``B*H*W``: 28,800 sequences for
a CFG pair of 90x160 refiner latents, times 5 heads = 144,000 (batch x heads) at the first level. CUDA kernels put the
batch, the heads or their product on a grid axis limited to 65,535 blocks, and fail with "invalid configuration
argument" above it: PyTorch's memory-efficient and flash SDPA (batch on one axis, heads on another; pytorch#142228,
#146704), xformers >= 0.0.21 (batch x heads; xformers#845, which is why the host falls back from xformers when
``b * heads > 65535``), FlashAttention-2's split-KV path (batch x heads on ``grid.z``). :class:`Attention` therefore
cuts every call into pieces of at most ``max_batch_heads`` (batch x heads), whatever function is installed: our SDPA
or the host's. The default, :data:`DEFAULT_MAX_BATCH_HEADS` = 32,768 (2^15), keeps the product, hence each factor,
under every one of these limits with a factor-2 margin (kernels that round the grid up to a multiple of a block count
stay below 65,535 too), and it is the batch size the host's own ``attention_pytorch`` splits at on NVIDIA GPUs. The
official StreamingT2V code splits the batch into pieces of 16,384 sequences, which with 5-20 heads is 81,920-327,680
batch x heads: enough for the batch-only limit, not for kernels that multiply it by the heads. A piece of 32,768
sequences x heads still carries 0.8-1.2 M query tokens, so splitting costs nothing measurable. Splitting the batch is
exact (every sequence is attended to on its own). :func:`set_attention_batch_limit` changes it per model.

Projection names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) follow diffusers' ``Attention`` because the
checkpoints use them.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionFn",
    "sdpa_attention",
    "Attention",
    "install_attention_function",
    "set_attention_batch_limit",
    "split_attention_call",
    "DEFAULT_MAX_BATCH_HEADS",
    "AttentionFunctionMixin",
]

AttentionFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]

#: Most batch x heads one attention-kernel call gets (see the module docstring for the choice).
DEFAULT_MAX_BATCH_HEADS = 2**15


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
    out = F.scaled_dot_product_attention(q4, k4, v4)
    return out.transpose(1, 2).reshape(b, n, inner)


def split_attention_call(fn: AttentionFn, q: Tensor, k: Tensor, v: Tensor, heads: int, max_batch_heads: int) -> Tensor:
    """``fn(q, k, v, heads)`` in batch pieces of at most ``max_batch_heads // heads`` sequences (at least one).

    Exact: each sequence's attention depends on that sequence only. The pieces are written into one preallocated
    output, so a split call needs no extra copy of the result.
    """
    b = q.shape[0]
    step = max(1, max_batch_heads // heads)
    if b <= step:
        return fn(q, k, v, heads)
    out: Tensor | None = None
    for i in range(0, b, step):
        piece = fn(q[i : i + step], k[i : i + step], v[i : i + step], heads)
        if out is None:
            out = piece.new_empty((b,) + tuple(piece.shape[1:]))
        out[i : i + step] = piece
    assert out is not None
    return out


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
        #: Most batch x heads per attention-function call (:data:`DEFAULT_MAX_BATCH_HEADS` when None).
        self.max_batch_heads: int | None = None

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
        limit = self.max_batch_heads or DEFAULT_MAX_BATCH_HEADS
        qb, n, inner = q.shape
        if k.shape[0] != qb:
            if qb % k.shape[0]:
                raise ValueError(
                    f"context: batch {k.shape[0]} must divide the query batch {qb} (frames folded into the batch)"
                )
            q = q.reshape(k.shape[0], -1, inner)
            out = split_attention_call(fn, q, k, v, self.heads, limit).reshape(qb, n, inner)
        else:
            out = split_attention_call(fn, q, k, v, self.heads, limit)
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


def set_attention_batch_limit(root: nn.Module, max_batch_heads: int | None) -> int:
    """Cap batch x heads per attention call in every :class:`Attention` under ``root`` (None = the default).

    Returns how many layers were set.
    """
    if max_batch_heads is not None and (
        isinstance(max_batch_heads, bool) or not isinstance(max_batch_heads, int) or max_batch_heads < 1
    ):
        raise ValueError(f"max_batch_heads: expected a positive int or None, got {max_batch_heads!r}")
    count = 0
    for module in root.modules():
        if isinstance(module, Attention):
            module.max_batch_heads = max_batch_heads
            count += 1
    return count


class AttentionFunctionMixin:
    """Gives a model ``set_attention_function(fn)``: the one injection point for the attention kernel."""

    def set_attention_function(self, fn: AttentionFn | None) -> None:
        """Use ``fn(q, k, v, heads)`` in every attention layer of this model (None = torch SDPA)."""
        install_attention_function(self, fn)  # type: ignore[arg-type]

    def set_attention_batch_limit(self, max_batch_heads: int | None) -> None:
        """Cap batch x heads of every attention call of this model (None = :data:`DEFAULT_MAX_BATCH_HEADS`)."""
        set_attention_batch_limit(self, max_batch_heads)  # type: ignore[arg-type]

    def set_forward_chunking(self, max_elements: int | None) -> None:
        """Bound every feed-forward's intermediate (None = the default limit, 0 = off); see
        :func:`streamingt2v_core.models.blocks.set_forward_chunking`."""
        from .blocks import set_forward_chunking  # blocks imports this module

        set_forward_chunking(self, max_elements)  # type: ignore[arg-type]

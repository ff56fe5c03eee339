"""Building blocks of the ModelScope UNet3D, under diffusers' ``UNet3DConditionModel`` names.

All 2D/temporal layers work on frames folded into the batch, ``(B*F, C, H, W)`` with the frame index fastest
(row ``b*F + f``); temporal layers unfold it. The names (``resnets``, ``temp_convs``, ``attentions``,
``temp_attentions``, ``downsamplers``/``upsamplers``, ``conv1.0``/``conv2.3`` inside temporal convs,
``ff.net.0.proj`` ...) are the checkpoint's key names, so they must not change.

Dropout layers of the original (0.1 in the temporal convs) are inference no-ops; we keep ``nn.Identity``
placeholders so the ``nn.Sequential`` indices (hence the key names) stay those of the checkpoint, and a module left
in training mode still computes the inference function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .apm import AppearanceMixingCrossAttention
from .attention import Attention

__all__ = [
    "DEFAULT_FF_CHUNK_ELEMENTS",
    "set_forward_chunking",
    "timestep_embedding",
    "TimestepEmbedding",
    "ResnetBlock2D",
    "TemporalConvLayer",
    "FeedForward",
    "BasicTransformerBlock",
    "SpatialTransformer",
    "TemporalTransformer",
    "Downsample2D",
    "Upsample2D",
    "CrossAttnDownBlock3D",
    "DownBlock3D",
    "UNetMidBlock3DCrossAttn",
    "CrossAttnUpBlock3D",
    "UpBlock3D",
]


#: Forward chunking (diffusers' name): most elements of one feed-forward's GEGLU intermediate held at once.
#: A GEGLU of inner width ``i`` holds ``4 i`` elements per token while it runs (its ``2 i`` projection, the GELU of
#: the gate and the product), so a block cuts its tokens into pieces of ``max(1, limit // (4 i))``. 2^26 elements
#: (128 MiB in fp16) is 8,192 tokens per piece for ``transformer_in`` (inner 2048) at the published width: a GEMM
#: large enough to run at full speed on a GPU, and 84 pieces for a 1280x720 CFG refiner forward, whose whole
#: intermediate would otherwise be 10.5 GiB (bench/RESULTS.md). Smaller inputs are not cut at all.
DEFAULT_FF_CHUNK_ELEMENTS = 2**26


def set_forward_chunking(root: nn.Module, max_elements: int | None) -> int:
    """Bound the feed-forward intermediate of every :class:`BasicTransformerBlock` under ``root``.

    ``max_elements``: most GEGLU intermediate elements held at once (None = :data:`DEFAULT_FF_CHUNK_ELEMENTS`,
    0 = never chunk). Chunking is exact: LayerNorm, the feed-forward and the residual act on each token alone.
    Returns how many blocks were set.
    """
    if max_elements is not None and (
        isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 0
    ):
        raise ValueError(f"max_elements: expected a non-negative int (0 = off) or None, got {max_elements!r}")
    count = 0
    for module in root.modules():
        if isinstance(module, BasicTransformerBlock):
            module.ff_chunk_elements = max_elements
            count += 1
    return count


def _limit(block: "BasicTransformerBlock") -> int:
    return DEFAULT_FF_CHUNK_ELEMENTS if block.ff_chunk_elements is None else block.ff_chunk_elements


#: Elements a transformer holds per token and inner channel while one piece runs (input, norms, q/k/v, attention
#: output, residuals): sequences per piece are sized so a piece stays within the forward-chunking limit.
_TENSORS_PER_TOKEN = 16


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos | sin]`` (flip_sin_to_cos, frequency shift 0), always computed in fp32.

    ``timesteps``: 1-D, possibly fractional DDPM steps (0..999). Returns ``[len(timesteps), dim]`` fp32.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """``linear_2(SiLU(linear_1(t_emb)))``: 320 -> 1280 -> 1280 at full size."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, t_emb: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(t_emb)))


class ResnetBlock2D(nn.Module):
    """GroupNorm/SiLU/conv3x3 twice, timestep embedding added after the first conv, 1x1 shortcut if needed."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        # SiLU in place on the norms' fresh outputs: one full-size tensor less at the peak (exact).
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class TemporalConvLayer(nn.Module):
    """ModelScope temporal conv: 4 x [GroupNorm, SiLU, (dropout), Conv3d k=(3,1,1)] + residual; last conv zero-init."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()

        def conv() -> nn.Conv3d:
            return nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

        self.conv1 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Identity(), conv())
        self.conv3 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Identity(), conv())
        self.conv4 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Identity(), conv())
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bf, c, h, w = x.shape
        v = x.view(bf // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)
        y = self.conv4(self.conv3(self.conv2(self.conv1(v))))
        y = y + v
        return y.permute(0, 2, 1, 3, 4).reshape(bf, c, h, w)


class GEGLU(nn.Module):
    """``a * gelu(b)`` with ``[a | b] = proj(x)`` (exact GELU)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4x (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, second attention, GEGLU FF, each with a residual.

    The second attention is a cross-attention on the text context (spatial transformers; with the APM mixer when
    ``image_tokens > 0``) or a second self-attention (temporal transformers, ``context_dim=None``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        image_tokens: int = 0,
        text_tokens: int = 77,
        apm_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, None, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        if context_dim is not None and image_tokens > 0:
            self.attn2: Attention = AppearanceMixingCrossAttention(
                dim, context_dim, heads, dim_head, text_tokens, image_tokens, apm_kernel_size
            )
        else:
            self.attn2 = Attention(dim, context_dim, heads, dim_head)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.is_cross = context_dim is not None
        #: Forward-chunking limit (see :func:`set_forward_chunking`); None = the default, 0 = off.
        self.ff_chunk_elements: int | None = None

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context if self.is_cross else None) + x
        return self._ff_residual(x)

    def ff_chunk_tokens(self) -> int:
        """Tokens per feed-forward piece (0 = do not chunk)."""
        limit = DEFAULT_FF_CHUNK_ELEMENTS if self.ff_chunk_elements is None else self.ff_chunk_elements
        if limit == 0:
            return 0
        inner = self.ff.net[2].in_features
        return max(1, limit // (4 * inner))

    def _ff_residual(self, x: Tensor) -> Tensor:
        """``ff(norm3(x)) + x``, over pieces of the flattened tokens when the whole would exceed the limit.

        The pieces are written into one preallocated output (norm, feed-forward and residual of a piece in one go), so
        the peak is one piece's intermediate plus the input and the output, instead of ``4 x inner`` per token.
        """
        step = self.ff_chunk_tokens()
        flat = x.reshape(-1, x.shape[-1])
        n = flat.shape[0]
        if step == 0 or n <= step:
            return self.ff(self.norm3(x)) + x
        out = torch.empty_like(flat)
        for i in range(0, n, step):
            piece = flat[i : i + step]
            out[i : i + step] = self.ff(self.norm3(piece)) + piece
        return out.view(x.shape)


class SpatialTransformer(nn.Module):
    """Spatial transformer (diffusers ``Transformer2DModel`` with linear projections) on each frame."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        context_dim: int,
        groups: int,
        image_tokens: int = 0,
        text_tokens: int = 77,
        apm_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim, image_tokens, text_tokens, apm_kernel_size)]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        bf, c, h, w = x.shape
        limit = _limit(self.transformer_blocks[0])
        inner = self.proj_in.out_features
        frames = max(1, limit // (_TENSORS_PER_TOKEN * inner * h * w)) if limit else bf
        if frames >= bf:
            return self._frames(x, context)
        # Forward chunking over frames: every frame is its own sequence (GroupNorm, self-attention and the text
        # cross-attention are per frame), so pieces of frames are exact. Each frame gets its video's context row.
        if context.shape[0] not in (1, bf):
            context = context.repeat_interleave(bf // context.shape[0], dim=0)
        out = torch.empty_like(x)
        for i in range(0, bf, frames):
            ctx = context if context.shape[0] == 1 else context[i : i + frames]
            out[i : i + frames] = self._frames(x[i : i + frames], ctx)
        return out

    def _frames(self, x: Tensor, context: Tensor) -> Tensor:
        bf, c, h, w = x.shape
        t = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        t = self.proj_in(t)
        for block in self.transformer_blocks:
            t = block(t, context)
        t = self.proj_out(t)
        return t.view(bf, h, w, c).permute(0, 3, 1, 2) + x


class TemporalTransformer(nn.Module):
    """Temporal transformer (diffusers ``TransformerTemporalModel``): per pixel, attention over the frame axis.

    GroupNorm over ``(B, C, F, H, W)`` (eps 1e-6), Linear in, one block with two self-attentions and GEGLU FF,
    Linear out, residual. No positional encoding on the frame axis (as in ModelScope).
    """

    def __init__(self, channels: int, heads: int, dim_head: int, groups: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, None)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        t = self.norm(x.view(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4))  # (B, C, F, H, W)
        limit = _limit(self.transformer_blocks[0])
        inner = self.proj_in.out_features
        if not limit or b * h * w * num_frames * inner * _TENSORS_PER_TOKEN <= limit:
            return self._pixels(t, b * h * w).view(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(
                bf, c, h, w) + x
        # Forward chunking over pixels: every pixel's frames are one sequence (the GroupNorm, whose statistics span
        # the whole video, is done above), so pieces of image rows are exact.
        rows = max(1, limit // (_TENSORS_PER_TOKEN * inner * w * num_frames))
        out = torch.empty_like(x)
        out5 = out.view(b, num_frames, c, h, w)
        x5 = x.view(b, num_frames, c, h, w)
        for bi in range(b):
            for r in range(0, h, rows):
                piece = t[bi, :, :, r : r + rows]  # (C, F, r, W)
                n = piece.shape[2]
                y = self._pixels(piece.unsqueeze(0), n * w)  # (n*W, F, C)
                y = y.view(n, w, num_frames, c).permute(2, 3, 0, 1)
                out5[bi, :, :, r : r + rows] = y + x5[bi, :, :, r : r + rows]
        return out

    def _pixels(self, t: Tensor, sequences: int) -> Tensor:
        """``t`` ``(b, C, F, h, w)`` normed -> the transformer's output ``(b*h*w, F, C)`` (before the residual)."""
        num_frames, c = t.shape[2], t.shape[1]
        t = t.permute(0, 3, 4, 2, 1).reshape(sequences, num_frames, c)
        t = self.proj_in(t)
        for block in self.transformer_blocks:
            t = block(t)
        return self.proj_out(t)


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv (``padding`` an int or (rows, cols); MS-Vid2Vid-XL pads (2, 1))."""

    def __init__(self, channels: int, padding: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest upsampling + 3x3 conv.

    Default (ModelScope T2V / diffusers): to ``size``, the matching skip's size, so odd sizes (45 -> 23 -> 45) work.
    ``trim_rows > 0`` (MS-Vid2Vid-XL): exactly 2x, then ``trim_rows`` rows dropped at the top and at the bottom.
    """

    def __init__(self, channels: int, trim_rows: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.trim_rows = trim_rows

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        if self.trim_rows:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = x[..., self.trim_rows : x.shape[-2] - self.trim_rows, :]
        elif size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class _AttnSettings:
    """Arguments shared by every attention-carrying block."""

    def __init__(
        self, head_dim: int, context_dim: int, groups: int, image_tokens: int, text_tokens: int, apm_kernel: int
    ) -> None:
        self.head_dim = head_dim
        self.context_dim = context_dim
        self.groups = groups
        self.image_tokens = image_tokens
        self.text_tokens = text_tokens
        self.apm_kernel = apm_kernel

    def spatial(self, channels: int) -> SpatialTransformer:
        return SpatialTransformer(
            channels,
            channels // self.head_dim,
            self.head_dim,
            self.context_dim,
            self.groups,
            self.image_tokens,
            self.text_tokens,
            self.apm_kernel,
        )

    def temporal(self, channels: int) -> TemporalTransformer:
        return TemporalTransformer(channels, channels // self.head_dim, self.head_dim, self.groups)


class CrossAttnDownBlock3D(nn.Module):
    """``layers`` x (resnet -> temporal conv -> spatial transformer -> temporal transformer), then downsample."""

    has_attention = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        layers: int,
        eps: float,
        add_downsample: bool,
        downsample_padding: int | tuple[int, int],
        attn: _AttnSettings,
    ) -> None:
        super().__init__()
        g = attn.groups
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, g, eps)
                for i in range(layers)
            ]
        )
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, g) for _ in range(layers)])
        self.attentions = nn.ModuleList([attn.spatial(out_channels) for _ in range(layers)])
        self.temp_attentions = nn.ModuleList([attn.temporal(out_channels) for _ in range(layers)])
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, downsample_padding)]) if add_downsample else None
        )

    def forward(self, x: Tensor, temb: Tensor, context: Tensor, num_frames: int) -> tuple[Tensor, list[Tensor]]:
        skips: list[Tensor] = []
        for resnet, tconv, sattn, tattn in zip(self.resnets, self.temp_convs, self.attentions, self.temp_attentions):
            x = tconv(resnet(x, temb), num_frames)
            x = tattn(sattn(x, context), num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class DownBlock3D(nn.Module):
    """``layers`` x (resnet -> temporal conv), then downsample (none at the last level)."""

    has_attention = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        layers: int,
        eps: float,
        add_downsample: bool,
        downsample_padding: int | tuple[int, int],
        attn: _AttnSettings,
    ) -> None:
        super().__init__()
        g = attn.groups
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, g, eps)
                for i in range(layers)
            ]
        )
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, g) for _ in range(layers)])
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, downsample_padding)]) if add_downsample else None
        )

    def forward(self, x: Tensor, temb: Tensor, context: Tensor, num_frames: int) -> tuple[Tensor, list[Tensor]]:
        skips: list[Tensor] = []
        for resnet, tconv in zip(self.resnets, self.temp_convs):
            x = tconv(resnet(x, temb), num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UNetMidBlock3DCrossAttn(nn.Module):
    """resnet -> temporal conv -> [spatial transformer -> temporal transformer -> resnet -> temporal conv]."""

    def __init__(self, channels: int, temb_channels: int, eps: float, attn: _AttnSettings, layers: int = 1) -> None:
        super().__init__()
        g = attn.groups
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(channels, channels, temb_channels, g, eps) for _ in range(layers + 1)]
        )
        self.temp_convs = nn.ModuleList([TemporalConvLayer(channels, g) for _ in range(layers + 1)])
        self.attentions = nn.ModuleList([attn.spatial(channels) for _ in range(layers)])
        self.temp_attentions = nn.ModuleList([attn.temporal(channels) for _ in range(layers)])

    def forward(self, x: Tensor, temb: Tensor, context: Tensor, num_frames: int) -> Tensor:
        x = self.temp_convs[0](self.resnets[0](x, temb), num_frames)
        layers = zip(self.attentions, self.temp_attentions, self.resnets[1:], self.temp_convs[1:])
        for sattn, tattn, resnet, tconv in layers:
            x = tattn(sattn(x, context), num_frames)
            x = tconv(resnet(x, temb), num_frames)
        return x


class CrossAttnUpBlock3D(nn.Module):
    """``layers`` x (concat skip -> resnet -> temporal conv -> spatial -> temporal transformer), then upsample."""

    has_attention = True

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        temb_channels: int,
        layers: int,
        eps: float,
        add_upsample: bool,
        attn: _AttnSettings,
        upsample_trim_rows: int = 0,
    ) -> None:
        super().__init__()
        g = attn.groups
        resnets = []
        for i in range(layers):
            skip_ch = in_channels if i == layers - 1 else out_channels
            res_in = prev_output_channels if i == 0 else out_channels
            resnets.append(ResnetBlock2D(res_in + skip_ch, out_channels, temb_channels, g, eps))
        self.resnets = nn.ModuleList(resnets)
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, g) for _ in range(layers)])
        self.attentions = nn.ModuleList([attn.spatial(out_channels) for _ in range(layers)])
        self.temp_attentions = nn.ModuleList([attn.temporal(out_channels) for _ in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, upsample_trim_rows)]) if add_upsample else None

    def forward(
        self,
        x: Tensor | list[Tensor],
        skips: list[Tensor],
        temb: Tensor,
        context: Tensor,
        num_frames: int,
        upsample_size: tuple[int, int] | None,
    ) -> Tensor:
        """``x``: the input, or a one-element list holding it, which is emptied (so the caller holds no reference
        and the input is freed as soon as it is consumed)."""
        if isinstance(x, list):
            x = x.pop()
        for resnet, tconv, sattn, tattn in zip(self.resnets, self.temp_convs, self.attentions, self.temp_attentions):
            x = torch.cat([x, skips.pop()], dim=1)
            x = tconv(resnet(x, temb), num_frames)
            x = tattn(sattn(x, context), num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class UpBlock3D(nn.Module):
    """``layers`` x (concat skip -> resnet -> temporal conv), then upsample."""

    has_attention = False

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        temb_channels: int,
        layers: int,
        eps: float,
        add_upsample: bool,
        attn: _AttnSettings,
        upsample_trim_rows: int = 0,
    ) -> None:
        super().__init__()
        g = attn.groups
        resnets = []
        for i in range(layers):
            skip_ch = in_channels if i == layers - 1 else out_channels
            res_in = prev_output_channels if i == 0 else out_channels
            resnets.append(ResnetBlock2D(res_in + skip_ch, out_channels, temb_channels, g, eps))
        self.resnets = nn.ModuleList(resnets)
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, g) for _ in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, upsample_trim_rows)]) if add_upsample else None

    def forward(
        self,
        x: Tensor | list[Tensor],
        skips: list[Tensor],
        temb: Tensor,
        context: Tensor,
        num_frames: int,
        upsample_size: tuple[int, int] | None,
    ) -> Tensor:
        """``x``: the input, or a one-element list holding it, which is emptied (so the caller holds no reference
        and the input is freed as soon as it is consumed)."""
        if isinstance(x, list):
            x = x.pop()
        for resnet, tconv in zip(self.resnets, self.temp_convs):
            x = torch.cat([x, skips.pop()], dim=1)
            x = tconv(resnet(x, temb), num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


DOWN_BLOCKS = {"CrossAttnDownBlock3D": CrossAttnDownBlock3D, "DownBlock3D": DownBlock3D}
UP_BLOCKS = {"CrossAttnUpBlock3D": CrossAttnUpBlock3D, "UpBlock3D": UpBlock3D}

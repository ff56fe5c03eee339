"""Configuration dataclasses for the StreamingT2V models.

Three configs, each with ``full()`` (the published sizes) and ``tiny()`` (same structure, a few channels, for
CPU tests):

- :class:`UNet3DConfig`: the ModelScope text-to-video UNet3D (diffusers ``UNet3DConditionModel`` layout).
- :class:`ExtenderConfig`: the StreamingT2V extender = that UNet3D + 13 CAM mergers + 16 APM token mixers
  (``base_model``), the Conditional Attention Module (``unet``) and the APM resampler MLP (``resampler``).
- :class:`RefinerUNetConfig`: MS-Vid2Vid-XL, the same UNet3D architecture predicting ``v``.

The ``tiny()`` presets shrink channels, heads and groups but keep every *interface* dimension real (4 latent
channels, 1024-d context, 77 text + 16 image tokens, 1024-d image embedding, 8 conditioning frames, 16-frame
chunks) because the host's text/vision encoders and VAE only exist at their real sizes.

``to_dict()`` / ``from_dict()`` give plain JSON-able dicts, stored in the metadata of converted safetensors files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = ["UNet3DConfig", "ExtenderConfig", "RefinerUNetConfig"]

_C = TypeVar("_C", bound="_ConfigBase")

_DOWN_TYPES = ("CrossAttnDownBlock3D", "DownBlock3D")
_UP_TYPES = ("CrossAttnUpBlock3D", "UpBlock3D")


class _ConfigBase:
    """Shared ``to_dict`` / ``from_dict`` for the (possibly nested) config dataclasses."""

    # Fields holding a nested config, name -> class. Filled by subclasses.
    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists, nested configs become dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Inverse of :meth:`to_dict`. Unknown keys raise ``ValueError``; missing keys take the defaults."""
        if not isinstance(data, dict):
            raise ValueError(f"data: expected a dict for {cls.__name__}, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"data: unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in cls._nested and isinstance(value, dict):
                value = cls._nested[name].from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class UNet3DConfig(_ConfigBase):
    """ModelScope T2V UNet3D (``damo-vilab/text-to-video-ms-1.7b/unet/config.json``).

    ``attention_head_dim`` is the *size* of a head everywhere (spatial and temporal transformers use
    ``channels // attention_head_dim`` heads; ``transformer_in`` uses ``transformer_in_heads`` heads of that size),
    which is what diffusers does with its confusingly named ``attention_head_dim`` for this model.
    """

    in_channels: int = 4
    out_channels: int = 4
    sample_size: int = 32
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    up_block_types: tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 64
    transformer_in_heads: int = 8
    cross_attention_dim: int = 1024
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    # Padding of the stride-2 downsampling convs: an int, or (rows, cols). MS-Vid2Vid-XL uses (2, 1).
    downsample_padding: int | tuple[int, int] = 1
    # Rows trimmed at the top and at the bottom after each 2x nearest upsampling (MS-Vid2Vid-XL: 1). With 0 the
    # upsampling goes to the size of the matching skip (diffusers behaviour), so any latent size works.
    upsample_trim_rows: int = 0
    text_tokens: int = 77
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the config cannot build a UNet3D."""
        # dataclass fields may arrive as lists (from JSON); normalise to tuples.
        if isinstance(self.downsample_padding, list):
            object.__setattr__(self, "downsample_padding", tuple(self.downsample_padding))
        pad = self.downsample_padding
        if not (isinstance(pad, int) or (isinstance(pad, tuple) and len(pad) == 2)):
            raise ValueError(f"downsample_padding: expected an int or (rows, cols), got {pad!r}")
        if self.upsample_trim_rows < 0:
            raise ValueError(f"upsample_trim_rows: expected >= 0, got {self.upsample_trim_rows}")
        for name in ("down_block_types", "up_block_types", "block_out_channels"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        n = len(self.block_out_channels)
        if n < 1:
            raise ValueError("block_out_channels: expected at least one level")
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"down_block_types/up_block_types: expected {n} entries each (one per block_out_channels), got "
                f"{len(self.down_block_types)} and {len(self.up_block_types)}"
            )
        for t in self.down_block_types:
            if t not in _DOWN_TYPES:
                raise ValueError(f"down_block_types: unknown block {t!r}; expected one of {_DOWN_TYPES}")
        for t in self.up_block_types:
            if t not in _UP_TYPES:
                raise ValueError(f"up_block_types: unknown block {t!r}; expected one of {_UP_TYPES}")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block: expected >= 1, got {self.layers_per_block}")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(
                    f"block_out_channels: {c} is not divisible by norm_num_groups={self.norm_num_groups}"
                )
            if c % self.attention_head_dim:
                raise ValueError(
                    f"block_out_channels: {c} is not divisible by attention_head_dim={self.attention_head_dim}"
                )
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"prediction_type: expected 'epsilon' or 'v_prediction', got {self.prediction_type!r}"
            )

    def check_latent_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` if the up path cannot restore the skip sizes for ``height x width`` latents.

        Only the MS-Vid2Vid-XL resampling (asymmetric padding + row trim) restricts sizes: e.g. 90 rows work
        (90 -> 46 -> 24 -> 13 -> 24 -> 46 -> 90), 12 do not.
        """
        if self.upsample_trim_rows == 0 and self.downsample_padding == 1:
            return
        ph, pw = (self.downsample_padding,) * 2 if isinstance(self.downsample_padding, int) else self.downsample_padding
        h, w = height, width
        for _ in range(len(self.block_out_channels) - 1):
            h2, w2 = (h + 2 * ph - 3) // 2 + 1, (w + 2 * pw - 3) // 2 + 1
            up = (2 * h2 - 2 * self.upsample_trim_rows, 2 * w2) if self.upsample_trim_rows else (h, w)
            if up != (h, w):
                raise ValueError(
                    f"sample: latent size {height}x{width} is not supported by this UNet's resampling "
                    f"(downsample padding {self.downsample_padding}, row trim {self.upsample_trim_rows}): "
                    f"{h}x{w} -> {h2}x{w2} -> {up[0]}x{up[1]}; the refiner's native size is 90x160"
                )
            h, w = h2, w2

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding (4x the first block's channels, 1280 at full size)."""
        return self.block_out_channels[0] * 4

    @property
    def num_skips(self) -> int:
        """Number of down-path skip tensors (12 at full size): conv_in output + every layer + every downsample."""
        n = len(self.block_out_channels)
        return 1 + n * self.layers_per_block + (n - 1)

    def skip_channels(self) -> list[int]:
        """Channels of the down-path skip tensors in order (index 0 = conv_in/transformer_in output)."""
        ch = [self.block_out_channels[0]]
        for i, c in enumerate(self.block_out_channels):
            ch += [c] * self.layers_per_block
            if i < len(self.block_out_channels) - 1:
                ch.append(c)
        return ch

    def diffusers_kwargs(self) -> dict:
        """Constructor arguments of diffusers' ``UNet3DConditionModel`` for the same architecture.

        The reference model of the equivalence test and the benchmark. ``attention_head_dim`` is
        the head *size* for this model in diffusers (heads = C // 64 at full size).
        """
        return {
            "sample_size": self.sample_size,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": self.down_block_types,
            "up_block_types": self.up_block_types,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "cross_attention_dim": self.cross_attention_dim,
            "attention_head_dim": self.attention_head_dim,
            "norm_num_groups": self.norm_num_groups,
            "norm_eps": self.norm_eps,
            "downsample_padding": self.downsample_padding,
        }

    @classmethod
    def full(cls) -> "UNet3DConfig":
        """The published ModelScope T2V sizes (1.41 B parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> "UNet3DConfig":
        """Same structure with a few channels; real interface dims (4 latent channels, 1024-d context)."""
        return cls(
            sample_size=8,
            block_out_channels=(16, 32, 64, 64),
            attention_head_dim=8,
            norm_num_groups=8,
        )


@dataclass(frozen=True)
class RefinerUNetConfig(UNet3DConfig):
    """MS-Vid2Vid-XL UNet (``non_ema_0035000.pth``): the ModelScope UNet3D architecture, predicting ``v``.

    Same modules, keys (through ``key_maps.py``, which maps its LDM names) and shapes as the ModelScope UNet3D, with
    two differences in the resampling, read in its ``Vid2VidSDUNet`` code: the stride-2 downsampling convs pad 2 rows
    and 1 column, and every 2x upsampling drops its first and last row. That is how 90-row latents (720 pixels) go
    90 -> 46 -> 24 -> 13 and back exactly. ``sample_size`` is informational (refinement runs at 90x160 latents).
    """

    sample_size: int = 90
    downsample_padding: int | tuple[int, int] = (2, 1)
    upsample_trim_rows: int = 1
    prediction_type: str = "v_prediction"
    chunk_frames: int = 24

    @classmethod
    def full(cls) -> "RefinerUNetConfig":
        """The published MS-Vid2Vid-XL sizes (1,411,233,860 parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> "RefinerUNetConfig":
        """Same structure with a few channels (v-prediction)."""
        return cls(
            sample_size=10,
            block_out_channels=(16, 32, 64, 64),
            attention_head_dim=8,
            norm_num_groups=8,
        )


@dataclass(frozen=True)
class ExtenderConfig(_ConfigBase):
    """StreamingT2V extender: base UNet3D + CAM + APM (official ``StreamingModelscope`` branch).

    ``unet`` is the plain ModelScope architecture; the extender's ``base_model`` adds APM token mixers to every
    spatial cross-attention (:meth:`base_model_config` / ``num_image_tokens``) and one CAM merger per skip plus one
    for the mid output. The CAM (``unet`` submodule of the extender) copies the encoder half + mid block of ``unet``.
    """

    _nested: ClassVar[dict[str, type]] = {"unet": UNet3DConfig}

    unet: UNet3DConfig = field(default_factory=UNet3DConfig.full)
    num_frames: int = 16
    num_cond_frames: int = 8
    # E_cond (ControlNet-style conditioning embedding) channels; three stride-2 stages -> latent resolution.
    cond_embedding_channels: tuple[int, ...] = (32, 96, 256, 512)
    cond_in_channels: int = 3
    # APM
    num_image_tokens: int = 16
    image_embed_dim: int = 1024
    resampler_inner_dim: int = 1280
    apm_kernel_size: int = 3
    # CAM mergers: head size of the temporal cross-attention (channels // merger_head_dim heads).
    merger_head_dim: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNet3DConfig.from_dict(self.unet))
        if not isinstance(self.unet, UNet3DConfig):
            raise ValueError(f"unet: expected a UNet3DConfig, got {type(self.unet).__name__}")
        if not isinstance(self.cond_embedding_channels, tuple):
            object.__setattr__(self, "cond_embedding_channels", tuple(self.cond_embedding_channels))
        if len(self.cond_embedding_channels) != 4:
            raise ValueError(
                "cond_embedding_channels: expected 4 entries (three stride-2 stages take 8x pixels to latents), "
                f"got {self.cond_embedding_channels}"
            )
        if not 0 < self.num_cond_frames <= self.num_frames:
            raise ValueError(
                f"num_cond_frames: expected 1..num_frames ({self.num_frames}), got {self.num_cond_frames}"
            )
        if self.num_image_tokens < 1:
            raise ValueError(f"num_image_tokens: expected >= 1, got {self.num_image_tokens}")
        for c in self.unet.block_out_channels:
            if c % self.merger_head_dim:
                raise ValueError(f"merger_head_dim: {self.merger_head_dim} does not divide channels {c}")

    @property
    def context_tokens(self) -> int:
        """Tokens in the base model's context: 77 text + 16 image = 93."""
        return self.unet.text_tokens + self.num_image_tokens

    @classmethod
    def full(cls) -> "ExtenderConfig":
        """The published StreamingT2V sizes (base 1.48 B incl. mergers/APM, CAM 0.62 B, resampler 22.3 M)."""
        return cls()

    @classmethod
    def tiny(cls) -> "ExtenderConfig":
        """Tiny channels, real interface dims (93 tokens, 1024-d image embedding, 8 cond frames, 16 frames)."""
        unet = UNet3DConfig.tiny()
        return cls(
            unet=unet,
            cond_embedding_channels=(8, 8, 16, 16),
            resampler_inner_dim=32,
            merger_head_dim=unet.attention_head_dim,
        )

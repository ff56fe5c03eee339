"""Activation memory of one UNet forward, from a measured and fitted model (what the host's model management needs).

The host decides how much of a model to keep on the GPU, and whether cond and uncond run in one batch, from
``BaseModel.memory_required(input_shape)``: the bytes one forward needs on top of the weights. Its generic formula
(latent elements x a per-model factor) is a guess; this module replaces it for our UNets by a fitted model.

The model. In inference mode a forward frees every intermediate as soon as it is consumed, so its peak is reached in
one phase of the network (in our UNets: the level-0 up path, where the skips of every level are still held while the
widest feed-forward runs), and every tensor alive then is (latent positions) x (a width). Hence, for one config,

    peak activation bytes = dtype bytes x B*T*H*W x kappa

with ``kappa`` (elements per latent position) independent of the latent size; the measurements confirm it to 1%.
Where the peak is: the feed-forward of ``transformer_in`` (temporal attention at full latent resolution, 8 heads of
64 = 512 wide, GEGLU to 2 x 2048) holds its 4096-wide projection, its GELU and their product at once: about 80% of
the peak. At 1280x720 with CFG batch 2 in fp16 that is 10.5 of 13 GiB; processing those tokens in chunks would cut
the peak to a few GiB: forward chunking (``blocks.set_forward_chunking``, on by default) does, and :data:`MEASURED`
holds the coefficients measured at the published width with it and without.
Every width of the network is a multiple of the head size ``s``: the published configs have channels
(5s, 10s, 20s, 20s), ``transformer_in`` 8 heads of ``s``, E_cond channels (s/2, 3s/2, 4s, 8s) and s = 64. So we
measure the *same architecture scaled down* (s = 2, 4, 8: the same head counts, the same width ratios) and fit
``kappa(s) = slope * s + offset`` (affine: the widths scale with ``s``, the 4 latent channels and the 1024-d text
context do not). For configs outside that family (the tiny test presets), ``s`` is the largest equivalent head size,
``max(c0 / 5, transformer_in width / 8)``, which over-estimates rather than under-estimates.

How it was measured: ``bench/bench_memory.py`` runs forwards on the CPU under ``torch.profiler`` with
``profile_memory=True`` and takes the peak of the running sum of every tensor allocation and free inside the forward
(inputs and weights excluded), in fp32 (bytes scale with the dtype: every activation is in the parameter dtype).
Its table and fit are in ``bench/RESULTS.md``; ``FITS`` below holds the fitted numbers, and the benchmark prints how
far a fresh fit is from them. ``bench/gpu.sh`` checks the estimate against ``torch.cuda.max_memory_allocated`` on a
GPU (which also sees kernel workspaces, e.g. cuDNN's, that a CPU cannot), and :data:`SAFETY` covers those.

What the model assumes: memory-efficient attention (PyTorch SDPA's flash / memory-efficient kernels, xformers, sage:
no ``tokens x tokens`` score matrix), which is the host's default on CUDA. The host's ``split`` / ``sub-quadratic``
attentions on other devices size their own chunks from free memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ExtenderConfig, UNet3DConfig

__all__ = [
    "ActivationFit",
    "FITS",
    "MeasuredActivation",
    "MEASURED",
    "LiveTensorTracker",
    "measure_peak_bytes_tracked",
    "SAFETY",
    "FIXED_BYTES",
    "width_scale",
    "scaled_unet_config",
    "scaled_extender_config",
    "activation_bytes",
    "measure_peak_bytes",
]

#: Factor on the fitted peak for what the CPU measurement cannot see (allocator rounding, CUDA kernel workspaces).
SAFETY = 1.15
#: Bytes that do not scale with the latent: text-context keys/values, timestep embeddings (generous).
FIXED_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ActivationFit:
    """``kappa(s) = slope * s + offset`` elements of activation per latent position (B*T*H*W) at head size ``s``."""

    slope: float
    offset: float

    def kappa(self, scale: float) -> float:
        return self.slope * scale + self.offset


#: Fitted on the CPU by ``bench/bench_memory.py`` (see bench/RESULTS.md); per model kind:
#: ``unet3d`` (ModelScope T2V and the MS-Vid2Vid-XL refiner: same modules) and ``extender`` (base + CAM + APM; the
#: latent positions counted are those of the 16-frame chunk, the CAM's 8 frames are part of kappa).
FITS: dict[str, ActivationFit] = {
    # 12 points (base and refiner, s = 2, 4, 8, B*T*H*W 2048..8192): max error 1.0%; kappa(64) = 10,058
    "unet3d": ActivationFit(slope=157.1, offset=3.9),
    # 9 points (s = 2, 4, 8, batch 1 and 2): max error 5.3% (a 0.5 MiB fixed part); kappa(64) = 10,881
    "extender": ActivationFit(slope=169.9, offset=7.5),
}


@dataclass(frozen=True)
class MeasuredActivation:
    """Measured at the published width: ``kappa`` elements per latent position with forward chunking (the linear
    part), ``kappa_unchunked`` without (the feed-forward intermediates on top)."""

    kappa: float
    kappa_unchunked: float


#: Measured by ``bench/bench_activation_memory.py`` (bench/RESULTS.md, issue 25) at the published widths, fp16, CFG
#: batch 2, on the meta device: per model, chunked (2^24-element pieces, so a piece is a small fixed part) and
#: unchunked peaks at three latent sizes, fitted through the smallest and largest (the slope is ``kappa``; fixed parts
#: of 0.1-0.4 MiB, within FIXED_BYTES) and checked on the middle one (linear to 0.01 %).
#: ``unet3d``: the refiner (2x4x24x18x32 .. 2x4x24x42x80) and the base UNet3D (2x4x16x32x32 .. 2x4x16x64x80) measure
#: the same, chunked 2,884 and unchunked 10,372 (the same modules); at the real 2x4x24x90x160 directly: 3.71 GiB
#: chunked (default limit, kappa 2,884), 13.35 GiB unchunked.
#: ``extender`` (base + CAM + APM; positions are the 16-frame chunk's, the CAM's 8 conditioning frames at pixel
#: resolution are part of kappa): 2x4x16x16x16 .. 2x4x16x32x40, chunked 5,184 and unchunked 11,192; at the real
#: 2x4x16x32x32 directly 0.32 GiB chunked, 0.68 GiB unchunked. (Before this was measured the extender shipped the
#: refiner's values x 1.082, a ratio from the scaled-width fit: 3,123 chunked, 40 % under the measured 5,184.)
MEASURED: dict[str, MeasuredActivation] = {
    "unet3d": MeasuredActivation(kappa=2884.0, kappa_unchunked=10372.0),
    "extender": MeasuredActivation(kappa=5184.0, kappa_unchunked=11192.0),
}


def width_scale(config: UNet3DConfig) -> float:
    """The equivalent head size ``s`` of a UNet3D config (64 for the published ones)."""
    c0 = config.block_out_channels[0]
    return max(c0 / 5.0, config.transformer_in_heads * config.attention_head_dim / 8.0)


def scaled_unet_config(scale: int, refiner: bool = False) -> UNet3DConfig:
    """The published UNet3D (or MS-Vid2Vid-XL refiner) architecture with head size ``scale`` instead of 64."""
    from .config import RefinerUNetConfig

    cls = RefinerUNetConfig if refiner else UNet3DConfig
    return cls(
        block_out_channels=(5 * scale, 10 * scale, 20 * scale, 20 * scale),
        attention_head_dim=scale,
        norm_num_groups=5,
    )


def scaled_extender_config(scale: int) -> ExtenderConfig:
    """The published extender with head size ``scale`` (E_cond, resampler and merger widths scaled alike)."""
    if scale % 2:
        raise ValueError(f"scale: expected an even head size (E_cond's first width is scale / 2), got {scale}")
    return ExtenderConfig(
        unet=scaled_unet_config(scale),
        cond_embedding_channels=(scale // 2, 3 * scale // 2, 4 * scale, 8 * scale),
        resampler_inner_dim=20 * scale,
        merger_head_dim=scale,
    )


def activation_bytes(
    kind: str,
    config: UNet3DConfig,
    shape: tuple[int, ...] | list[int],
    dtype_bytes: int,
    chunk_elements: int | None = None,
) -> int:
    """Estimated peak activation bytes of one forward on a latent ``[B, C, T, H, W]`` (weights not included).

    ``MEASURED`` at the published width: ``kappa`` per latent position with forward chunking, plus the feed-forward
    intermediates, which chunking bounds by one piece (``chunk_elements``, None = the default limit, 0 = off).
    Other widths (the tiny test presets) scale by the scaled-width fit ``FITS``.

    Args:
        kind: ``"unet3d"`` (base UNet3D, refiner) or ``"extender"``.
        config: the UNet3D config (for the extender: ``ExtenderConfig.unet``).
        shape: the latent shape of one call, batch included (the host passes cond + uncond as batch 2).
        dtype_bytes: bytes per element of the dtype the model computes in (2 for fp16/bf16).
    """
    if kind not in FITS:
        raise ValueError(f"kind: expected one of {sorted(FITS)}, got {kind!r}")
    if len(shape) != 5:
        raise ValueError(f"shape: expected a video latent [B, C, T, H, W], got {list(shape)}")
    from .blocks import DEFAULT_FF_CHUNK_ELEMENTS

    b, _, t, h, w = (int(v) for v in shape)
    positions = b * t * h * w
    measured = MEASURED[kind]
    ratio = FITS[kind].kappa(width_scale(config)) / FITS[kind].kappa(64)
    linear = measured.kappa * ratio * positions
    ff = (measured.kappa_unchunked - measured.kappa) * ratio * positions
    limit = DEFAULT_FF_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    elements = linear + (ff if limit == 0 else min(ff, limit))
    return int(elements * dtype_bytes * SAFETY) + FIXED_BYTES


class LiveTensorTracker:
    """Peak bytes of live tensor storage created while it is active (a ``TorchDispatchMode``; works on meta tensors).

    Every op's outputs are inspected: a storage that is none of the op's inputs' and not already tracked is a new
    allocation of ``storage.nbytes()``; a ``weakref.finalize`` on the storage subtracts it when the last tensor
    using it dies (views share their base's storage, so they count once). On the meta device nothing is allocated
    or computed, so a full-width forward at the real 1280x720 shape takes seconds and no memory. What it counts is
    what a caching GPU allocator must hold for the forward's tensors; not kernel-internal workspaces (cuDNN's, or
    the score matrix of a non-fused attention: on meta, ``scaled_dot_product_attention`` is one op returning its
    output, which is the memory-efficient kernels' behaviour).
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._mode = None

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __enter__(self) -> "LiveTensorTracker":
        import weakref

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {a.untyped_storage()._cdata for a in tree_flatten((args, kwargs))[0]
                          if isinstance(a, torch.Tensor)}
                for t in tree_flatten(out)[0]:
                    if not isinstance(t, torch.Tensor):
                        continue
                    storage = t.untyped_storage()
                    key = storage._cdata
                    if key in inputs or key in tracker._sizes:
                        continue
                    tracker._sizes[key] = storage.nbytes()
                    tracker.live += storage.nbytes()
                    tracker.peak = max(tracker.peak, tracker.live)
                    weakref.finalize(storage, tracker._free, key)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def measure_peak_bytes_tracked(fn) -> int:
    """Peak live tensor bytes created by ``fn()`` (:class:`LiveTensorTracker`), under ``torch.inference_mode``; the
    output is dropped inside, so it counts while it is alive, like every other tensor."""
    import torch

    with torch.inference_mode(), LiveTensorTracker() as tracker:
        out = fn()
        del out
    return tracker.peak


def measure_peak_bytes(fn) -> int:
    """Peak bytes of tensor memory allocated by ``fn()`` on the CPU above what was allocated before it.

    Uses ``torch.profiler`` with ``profile_memory=True``: every allocation and free inside ``fn`` is an event with a
    signed size; the peak of their running sum is the peak of live tensor memory created by ``fn`` (the output
    included, the inputs and the weights, allocated before, excluded). Runs ``fn`` under ``torch.inference_mode``.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


"""The activation-memory measurement behind ``memory_estimate.MEASURED`` (``bench/bench_activation_memory.py``).

``LiveTensorTracker`` counts every new tensor storage an op returns and frees it when its last tensor dies, so a
forward on the meta device gives the peak of live activations without allocating them: that is how the published
widths were measured on a CPU. These tests check the tracker against the CPU profiler on real forwards of the same
code and that the shipped coefficients are what the tracker measures at the published width (the linearity in
latent positions that ``kappa`` assumes is checked by the bench, over 6-25x in positions: bench/RESULTS.md).
"""
from __future__ import annotations

import pytest
import torch

from streamingt2v_core.models import ExtenderConfig, StreamingT2VExtender, UNet3D
from streamingt2v_core.models.blocks import set_forward_chunking
from streamingt2v_core.models.memory_estimate import (
    MEASURED,
    measure_peak_bytes,
    measure_peak_bytes_tracked,
    scaled_unet_config,
)


def _inputs(b: int, t: int, h: int, w: int, device: str, dtype: torch.dtype, extender: bool = False) -> tuple:
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(b, 4, t, h, w, generator=g).to(device, dtype), torch.full((b,), 500.0, device=device),
            torch.randn(b, 77, 1024, generator=g).to(device, dtype))
    if extender:
        args += (torch.randn(b, 1024, generator=g).to(device, dtype),
                 (torch.rand(b, 8, 3, 8 * h, 8 * w, generator=g) * 2 - 1).to(device, dtype))
    return args


def test_tracker_on_meta_matches_the_cpu_profiler_on_a_real_forward():
    """The same forward (refiner architecture at head size 4, fp32, unchunked) measured three ways: the tracker on meta
    and on the CPU count the same tensors; the CPU profiler sees them plus the CPU kernels' own buffers, a few % more.
    (Chunked forwards are thousands of small ops, too slow for a real CPU forward here; the slow test below measures
    them on meta.)"""
    torch.manual_seed(0)
    model = UNet3D(scaled_unet_config(4, refiner=True)).eval()
    set_forward_chunking(model, 0)
    args = _inputs(2, 8, 10, 16, "cpu", torch.float32)
    profiled = measure_peak_bytes(lambda: model(*args))
    tracked_cpu = measure_peak_bytes_tracked(lambda: model(*args))
    meta = model.to("meta")
    meta_args = tuple(a.to("meta") for a in args)
    tracked_meta = measure_peak_bytes_tracked(lambda: meta(*meta_args))
    assert tracked_meta == pytest.approx(tracked_cpu, rel=0.02)
    assert tracked_cpu <= profiled <= 1.25 * tracked_cpu, (tracked_cpu, profiled)


@pytest.mark.slow
def test_shipped_coefficients_are_what_the_tracker_measures_at_the_published_width():
    """MEASURED re-measured at the smallest bench size of each kind (published widths, fp16, CFG batch 2): the
    refiner at 2x4x24x18x32 for "unet3d", the extender at 2x4x16x16x16; unchunked, and chunked in 2^24-element
    pieces as the bench fits kappa (a piece is then a small fixed part)."""
    from streamingt2v_core.models import RefinerUNetConfig

    with torch.device("meta"):
        refiner = UNet3D(RefinerUNetConfig.full()).to(torch.float16).eval()
        extender = StreamingT2VExtender(ExtenderConfig.full()).to(torch.float16).eval()
    for kind, model, (t, h, w), extra in (("unet3d", refiner, (24, 18, 32), False),
                                          ("extender", extender, (16, 16, 16), True)):
        args = _inputs(2, t, h, w, "meta", torch.float16, extender=extra)
        positions = 2 * t * h * w
        for limit, kappa in ((0, MEASURED[kind].kappa_unchunked), (2**24, MEASURED[kind].kappa)):
            set_forward_chunking(model, limit)
            measured = measure_peak_bytes_tracked(lambda: model(*args)) / 2 / positions
            assert measured == pytest.approx(kappa, rel=0.01), (kind, limit)

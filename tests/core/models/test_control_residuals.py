"""Per-frame ControlNet residuals in the core UNet3D and extender: where they are added, in which order with the
CAM mergers, identity at zero, and errors naming the input.

The residuals are what an SD 2.x ControlNet gives for the frames folded into the batch: one tensor per down-path
skip (index 0 = the conv_in/transformer_in output) and one for the mid block. They must reach the up path added to
exactly the skip they belong to, and the mid residual must be added to the mid block output.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamingt2v_core.models import ControlResiduals, ExtenderConfig, StreamingT2VExtender, UNet3D, UNet3DConfig

B, T, H, W = 2, 4, 4, 4


def _randomize(module: nn.Module, seed: int) -> None:
    """Random non-zero weights everywhere (also the zero-init gates): every path carries signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            elif p.ndim == 0:
                p.fill_(0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def _residuals(unet_config: UNet3DConfig, seed: int = 1, scale: float = 1.0, frames: int = B * T) -> ControlResiduals:
    """Random residuals with the skip/mid shapes of ``frames`` folded frames of H x W latents."""
    gen = torch.Generator().manual_seed(seed)
    sizes, h, w = [], H, W
    for level in range(len(unet_config.block_out_channels)):
        sizes.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    shapes = [(unet_config.block_out_channels[0], *sizes[0])]
    for level, c in enumerate(unet_config.block_out_channels):
        shapes += [(c, *sizes[level])] * unet_config.layers_per_block
        if level < len(unet_config.block_out_channels) - 1:
            shapes.append((c, *sizes[level + 1]))
    skips = [scale * torch.randn((frames, *s), generator=gen) for s in shapes]
    mid = scale * torch.randn((frames, unet_config.block_out_channels[-1], *sizes[-1]), generator=gen)
    return ControlResiduals(skips=skips, mid=mid)


class UpPathInputs:
    """Records what each up block receives: the hidden state and its skips (copied: the block pops them)."""

    def __init__(self, unet: UNet3D) -> None:
        self.hidden: list[torch.Tensor] = []
        self.block_skips: list[list[torch.Tensor]] = []
        self.handles = [block.register_forward_pre_hook(self._hook) for block in unet.up_blocks]

    def _hook(self, module, args):
        # The UNet hands an up block its input in a one-item list that the block empties (so the caller does not
        # hold it while the block runs); a bare tensor is accepted too.
        hidden = args[0][0] if isinstance(args[0], list) else args[0]
        self.hidden.append(hidden.clone())
        self.block_skips.append([s.clone() for s in args[1]])

    @property
    def skips(self) -> list[torch.Tensor]:
        """The skips in down-path order (skip 0 first): the up blocks take them from the end of the list."""
        out: list[torch.Tensor] = []
        for block in reversed(self.block_skips):
            out += block
        return out

    @property
    def mid(self) -> torch.Tensor:
        return self.hidden[0]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _run(model, args, control=None, unet=None):
    recorder = UpPathInputs(unet or model)
    try:
        with torch.no_grad():
            out = model(*args, control=control)
    finally:
        recorder.remove()
    return out, recorder


@pytest.fixture(scope="module")
def unet() -> UNet3D:
    torch.manual_seed(0)
    model = UNet3D(UNet3DConfig.tiny()).eval()
    _randomize(model, 0)
    return model


@pytest.fixture(scope="module")
def unet_args():
    gen = torch.Generator().manual_seed(3)
    return torch.randn(B, 4, T, H, W, generator=gen), torch.tensor([500.0, 420.0]), torch.randn(B, 77, 1024, generator=gen)


def test_zero_residuals_give_exactly_the_output_without_control(unet, unet_args):
    plain, _ = _run(unet, unet_args)
    zero = _residuals(unet.config, scale=0.0)
    with_zero, _ = _run(unet, unet_args, zero)
    assert torch.equal(with_zero, plain)  # strength 0: bit for bit the uncontrolled output
    nones = ControlResiduals(skips=[None] * unet.config.num_skips, mid=None)
    assert torch.equal(_run(unet, unet_args, nones)[0], plain)


def test_residuals_reach_every_skip_connection_and_the_mid_block(unet, unet_args):
    control = _residuals(unet.config)
    assert len(control.skips) == unet.config.num_skips == 12  # the SD 2.x layout: 12 skips + mid
    plain_out, plain = _run(unet, unet_args)
    out, seen = _run(unet, unet_args, control)
    assert len(seen.skips) == len(control.skips)
    for i, (with_control, without, residual) in enumerate(zip(seen.skips, plain.skips, control.skips)):
        # exactly skip i + residual i: the residual lands on its own skip connection, nowhere else
        assert torch.equal(with_control, without + residual), f"skip {i}"
    assert torch.equal(seen.mid, plain.mid + control.mid)
    assert not torch.allclose(out, plain_out)

    # one residual at a time changes only its own skip connection
    only_5 = ControlResiduals(skips=[r if i == 5 else None for i, r in enumerate(control.skips)], mid=None)
    _, seen_5 = _run(unet, unet_args, only_5)
    changed = [i for i, (a, b) in enumerate(zip(seen_5.skips, plain.skips)) if not torch.equal(a, b)]
    assert changed == [5]


def test_residuals_are_added_after_the_cam_mergers_in_the_extender():
    """Order with the CAM: merge first (the merger's query is the skip it was trained on), then the residual. The
    up path then sees merged + residual exactly; adding before the merge would give something else (checked)."""
    torch.manual_seed(0)
    config = ExtenderConfig.tiny()
    extender = StreamingT2VExtender(config).eval()
    _randomize(extender, 2)  # merger proj_out, E_cond conv_out and APM gates non-zero: the CAM acts
    gen = torch.Generator().manual_seed(4)
    sample = torch.randn(1, 4, 16, H, W, generator=gen)
    args = (sample, torch.tensor([700.0]), torch.randn(1, 77, 1024, generator=gen), torch.randn(1, 1024, generator=gen),
            torch.rand(1, 8, 3, 8 * H, 8 * W, generator=gen) * 2 - 1)
    control = _residuals(config.unet, seed=7, frames=16)
    base = extender.base_model
    _, plain = _run(extender, args, unet=base)
    _, seen = _run(extender, args, control, unet=base)
    for i, (with_control, merged, residual) in enumerate(zip(seen.skips, plain.skips, control.skips)):
        assert torch.equal(with_control, merged + residual), f"skip {i}"
    assert torch.equal(seen.mid, plain.mid + control.mid)

    # Teeth: the mergers are not the identity, so "residual before the merge" is a different function.
    cam = extender.unet(sample, args[1], extender.build_context(args[2], args[3]), args[4])
    skips_before = []
    hook = base.cross_attention_merger_down_blocks[3].register_forward_pre_hook(
        lambda m, a: skips_before.append(a[0].clone()))
    try:
        with torch.no_grad():
            extender(*args)
    finally:
        hook.remove()
    merger = base.cross_attention_merger_down_blocks[3]
    with torch.no_grad():
        merged_then_added = merger(skips_before[0], cam.skips[3], 16, 8) + control.skips[3]
        added_then_merged = merger(skips_before[0] + control.skips[3], cam.skips[3], 16, 8)
    assert torch.equal(merged_then_added, seen.skips[3])
    assert not torch.allclose(added_then_merged, merged_then_added, atol=1e-3)


def test_bad_residuals_are_refused_naming_control(unet, unet_args):
    control = _residuals(unet.config)
    with pytest.raises(ValueError, match="control: expected 12 skip residuals .* got 11"):
        _run(unet, unet_args, ControlResiduals(skips=control.skips[:11], mid=control.mid))
    wrong = list(control.skips)
    wrong[4] = wrong[4][:, :3]
    with pytest.raises(ValueError, match=r"control: skip residual 4 has shape \(8, 3, 2, 2\), the skip connection it "
                                         r"is added to has \(8, 32, 2, 2\)"):
        _run(unet, unet_args, ControlResiduals(skips=wrong, mid=control.mid))
    with pytest.raises(ValueError, match="control: the mid residual has shape"):
        _run(unet, unet_args, ControlResiduals(skips=control.skips, mid=control.mid[:1]))
    with pytest.raises(ValueError, match="control: expected ControlResiduals, got dict"):
        _run(unet, unet_args, {"output": control.skips})

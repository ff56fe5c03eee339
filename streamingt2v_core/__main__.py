"""Command line: inspect and convert StreamingT2V checkpoints.

Usage::

    python -m streamingt2v_core inspect PATH [--kind KIND]
        format, parts, parameter counts and dtypes of a checkpoint (reads no tensor data), the config and what
        was assumed; formats: official streaming_t2v.ckpt, community repack, diffusers UNet3D, MS-Vid2Vid-XL
        non_ema_0035000.pth, the original ModelScope text2video_pytorch_model.pth, converted safetensors
    python -m streamingt2v_core inspect --preset full|tiny [--kind KIND] [--keys PART]
        parameter counts of our own modules built on the meta device (no weights); with --keys, print
        ``key<TAB>shape`` lines in the official checkpoint naming for PART (base_model, cam, resampler: the
        prefix-stripped parts of streaming_t2v.ckpt; refiner: MS-Vid2Vid-XL LDM names; unet3d: diffusers names)
    python -m streamingt2v_core convert IN OUT --dtype fp16|bf16|fp32 [--kind KIND]
        write our safetensors (with the metadata the loader reads), part by part, one tensor in memory at a time

    python -m streamingt2v_core memory-plan --gpu-gib 12 [--workflow FILE] [--weights fp16|fp8]
        GPU memory per stage of the refined workflow (weights, activation peak, VAE decode) and whether it fits;
        the largest refine size that fits (streamingt2v_core/memory_plan.py)

KIND is extender, base_unet3d or refiner_unet.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

from torch import nn

from .models.key_maps import OFFICIAL_EXTENDER_PARTS, UNetKeyMap, UNetLayout
from .models.loading import (
    FORMAT_DESCRIPTIONS,
    KINDS,
    CheckpointError,
    build_model,
    convert_checkpoint,
    default_config,
    detect_checkpoint_format,
)

#: ``--keys`` parts: part -> (kind, official prefix to strip, or None for the refiner's LDM naming).
KEY_PARTS: dict[str, tuple[str, str | None]] = {
    **{part: ("extender", prefix) for prefix, part in OFFICIAL_EXTENDER_PARTS.items()},
    "refiner": ("refiner_unet", None),
    "unet3d": ("base_unet3d", ""),
}


def _format_shape(shape: Sequence[int]) -> str:
    return ",".join(str(int(s)) for s in shape)


def official_key_lines(part: str, preset: str = "full") -> list[str]:
    """``key<TAB>shape`` lines of one part of our module, in the official checkpoint naming, sorted like the
    reference key lists (Python ``sorted``; a scalar has an empty shape)."""
    if part not in KEY_PARTS:
        raise ValueError(f"part: expected one of {sorted(KEY_PARTS)}, got {part!r}")
    kind, prefix = KEY_PARTS[part]
    config = default_config(kind, preset)
    state = build_model(kind, config, device="meta").state_dict()
    if prefix is None:  # refiner: diffusers names of our UNet3D -> MS-Vid2Vid-XL LDM names
        key_map = UNetKeyMap(UNetLayout.from_config(config))
        entries = {
            key_map.diffusers_to_ldm_key(k): key_map.diffusers_to_ldm_shape(k, v.shape) for k, v in state.items()
        }
    else:
        entries = {k[len(prefix):]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}
    return [f"{key}\t{_format_shape(entries[key])}" for key in sorted(entries)]


def _count(module: nn.Module) -> tuple[int, int]:
    tensors = list(module.state_dict().values())
    return len(tensors), sum(t.numel() for t in tensors)


def _print_counts(kind: str, preset: str, out: TextIO) -> None:
    config = default_config(kind, preset)
    model = build_model(kind, config, device="meta")
    tensors, params = _count(model)
    out.write(f"{kind} ({preset} preset, built on the meta device, no weights)\n")
    rows: list[tuple[str, int, int]] = []
    if kind == "extender":
        for prefix, part in OFFICIAL_EXTENDER_PARTS.items():
            sub = [(k, v) for k, v in model.state_dict().items() if k.startswith(prefix)]
            rows.append((f"{part} ({prefix}*)", len(sub), sum(v.numel() for _, v in sub)))
            if part == "base_model":
                mergers = [v for k, v in sub if ".cross_attention_merger_" in k]
                apm = [v for k, v in sub if ".attn2." in k and k.rsplit(".", 2)[-2] in ("conv", "conv_ln", "attn2")]
                rows.append(("  of which CAM mergers", len(mergers), sum(v.numel() for v in mergers)))
                rows.append(("  of which APM mixers", len(apm), sum(v.numel() for v in apm)))
    else:
        rows.append(("unet", tensors, params))
    rows.append(("total", tensors, params))
    width = max(len(r[0]) for r in rows)
    for name, n, p in rows:
        out.write(f"  {name:<{width}}  {n:>6} tensors  {p:>15,} parameters\n")


def _print_info(path: str, kind: str | None, out: TextIO) -> None:
    info = detect_checkpoint_format(path, kind)
    out.write(f"path: {info.path}\n")
    out.write(f"format: {info.format} (container: {info.container})\n")
    out.write(f"what: {FORMAT_DESCRIPTIONS.get(info.format, info.format)}\n")
    out.write(f"kind: {info.kind}\n")
    config = info.config
    unet = getattr(config, "unet", config)
    out.write(
        f"config: {info.config_source}: {type(config).__name__}(block_out_channels={list(unet.block_out_channels)}, "
        f"layers_per_block={unet.layers_per_block}, cross_attention_dim={unet.cross_attention_dim}, "
        f"prediction_type={unet.prediction_type})\n"
    )
    if info.metadata:
        shown = {k: v for k, v in info.metadata.items() if k != "streamingt2v_config"}
        out.write(f"metadata: {shown}\n")
    out.write("parts (loaded):\n")
    width = max([len(p) for p in info.parts] + [4])
    for name, part in info.parts.items():
        dtypes = ", ".join(f"{d} x{n}" for d, n in sorted(part.dtypes.items()))
        out.write(f"  {name:<{width}}  {part.tensors:>6} tensors  {part.parameters:>15,} parameters  [{dtypes}]\n")
    total_tensors = sum(p.tensors for p in info.parts.values())
    out.write(f"  {'total':<{width}}  {total_tensors:>6} tensors  {info.parameters:>15,} parameters\n")
    if info.skipped_parts:
        out.write("skipped parts (present, not loaded):\n")
        for name, count in info.skipped_parts.items():
            out.write(f"  {name:<{width}}  {count:>6} tensors\n")
    if info.unexpected:
        out.write(f"unexpected keys ({len(info.unexpected)}): {', '.join(info.unexpected[:8])}\n")
    if info.config_file:
        out.write(f"config file: {info.config_file}\n")
    for note in info.assumptions:
        out.write(f"assumed: {note}\n")
    if info.foreign_objects:
        out.write(f"python objects outside the weights (read as inert stand-ins, never run): "
                  f"{', '.join(info.foreign_objects)}\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``python -m streamingt2v_core``; returns the exit status."""
    out = out or sys.stdout
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["memory-plan"]:
        import contextlib

        from .memory_plan import main as memory_plan_main

        with contextlib.redirect_stdout(out):
            return memory_plan_main(args_list[1:])
    parser = argparse.ArgumentParser(prog="python -m streamingt2v_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser("inspect", help="describe a checkpoint file, or our modules at a preset size")
    inspect.add_argument("path", nargs="?", help="checkpoint file or diffusers folder")
    inspect.add_argument("--preset", choices=("full", "tiny"), help="describe our modules instead of a file")
    inspect.add_argument("--kind", choices=KINDS, help="model kind (with PATH: the kind you expect)")
    inspect.add_argument("--keys", choices=sorted(KEY_PARTS), help="with --preset: print key<TAB>shape lines")

    convert = sub.add_parser("convert", help="convert a checkpoint to this pack's safetensors")
    convert.add_argument("src", help="input checkpoint (any supported format)")
    convert.add_argument("dst", help="output .safetensors")
    convert.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), required=True)
    convert.add_argument("--kind", choices=KINDS, help="the kind you expect (checked)")

    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            if args.preset:
                if args.path:
                    parser.error("inspect: give either PATH or --preset, not both")
                if args.keys:
                    kind = KEY_PARTS[args.keys][0]
                    if args.kind and args.kind != kind:
                        parser.error(f"--keys {args.keys} belongs to --kind {kind}, not {args.kind}")
                    out.write("\n".join(official_key_lines(args.keys, args.preset)) + "\n")
                else:
                    for kind in [args.kind] if args.kind else list(KINDS):
                        _print_counts(kind, args.preset, out)
                return 0
            if not args.path:
                parser.error("inspect: give a checkpoint PATH or --preset full|tiny")
            if args.keys:
                parser.error("--keys needs --preset")
            _print_info(args.path, args.kind, out)
            return 0
        info = convert_checkpoint(args.src, args.dst, dtype=args.dtype, kind=args.kind)
        skipped = ", ".join(f"{k} ({v} tensors)" for k, v in info.skipped_parts.items()) or "none"
        out.write(
            f"converted {info.path} ({info.format}, kind {info.kind}, {info.parameters:,} parameters) -> {args.dst} "
            f"as {args.dtype}; skipped: {skipped}\n"
        )
        return 0
    except CheckpointError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Time of the Model Loader's file list over a crowded models folder; prints a Markdown table.

The Model Loader lists only files whose index says they are one of our formats
(``streamingt2v_core.models.loading.scan.scan_checkpoint``: safetensors header, PyTorch zip ``data.pkl``; answers
cached by path, size and modification time). A real ``diffusion_models`` folder holds many unrelated models, and
the host rebuilds the list every time the web UI asks for the node definitions, so the list must stay fast.

The folder gets ``--files`` unrelated files (default 200) in the kinds a real install has, with real-sized indexes
(their tensors are tiny: only the index is ever read): image/video model safetensors with ``--keys`` tensor names
each (default 1,000; SDXL has ~2,500, Flux ~780), Lightning-style ``.ckpt`` zip pickles with as many keys and an
optimizer state, legacy pickles, VAEs, text files with weight suffixes, random bytes; plus our three tiny
checkpoints. Cold = first listing (every file scanned), warm = the next one (cache hits: one ``stat`` per file).

    python bench/bench_model_list.py                # 200 files, 1,000 keys each
    python bench/bench_model_list.py --keys 2500    # SDXL-sized indexes
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name  # noqa: E402

import torch  # noqa: E402


def write_folder(folder: Path, files: int, keys: int) -> dict[str, int]:
    from safetensors.torch import save_file

    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    kinds: dict[str, int] = {}
    for i in range(files):
        kind = ("image model safetensors", "lightning ckpt", "vae safetensors", "text file", "random bytes",
                "legacy pickle")[i % 6]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "image model safetensors":
            save_file({f"model.diffusion_model.input_blocks.{k}.weight": torch.zeros(1) for k in range(keys)},
                      str(folder / f"image_model_{i}.safetensors"))
        elif kind == "lightning ckpt":
            state = {f"model.diffusion_model.layer_{k}.weight": torch.zeros(1) for k in range(keys)}
            torch.save({"state_dict": state, "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(1)}}}], "epoch": 3},
                       folder / f"trained_{i}.ckpt")
        elif kind == "vae safetensors":
            save_file({f"encoder.down.{k}.block.0.conv1.weight": torch.zeros(1) for k in range(keys // 10)},
                      str(folder / f"vae_{i}.safetensors"))
        elif kind == "text file":
            (folder / f"notes_{i}.safetensors").write_text("download link: ...\n" * 50)
        elif kind == "random bytes":
            (folder / f"blob_{i}.bin").write_bytes(os.urandom(4096))
        else:
            torch.save({f"w{k}": torch.zeros(1) for k in range(keys // 10)}, folder / f"old_{i}.pth",
                       _use_new_zipfile_serialization=False)
    write_tiny_checkpoint(folder / "ours_extender.safetensors", "extender", "repack")
    write_tiny_checkpoint(folder / "text2video_pytorch_model.pth", "base_unet3d", "modelscope_t2v")
    write_tiny_checkpoint(folder / "ours_refiner_non_ema.pth", "refiner_unet", "ms_vid2vid_xl")
    return kinds


def list_ours(folder: Path) -> list[str]:
    """What the Model Loader does per file (``nodes/loader.py::model_file_list``), without the host."""
    from streamingt2v_core.models.loading.scan import scan_checkpoint

    return [p.name for p in sorted(folder.iterdir()) if scan_checkpoint(p).ours]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="unrelated files in the folder (default 200)")
    parser.add_argument("--keys", type=int, default=1000, help="tensor names per model file (default 1000)")
    args = parser.parse_args(argv)
    from streamingt2v_core.models.loading.scan import clear_scan_cache

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = write_folder(folder, args.files, args.keys)
        size = sum(p.stat().st_size for p in folder.iterdir())
        clear_scan_cache()
        start = time.perf_counter()
        listed = list_ours(folder)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = list_ours(folder)
        warm = time.perf_counter() - start
    assert listed == again == sorted(["ours_extender.safetensors", "text2video_pytorch_model.pth",
                                      "ours_refiner_non_ema.pth"]), listed
    total = args.files + 3
    print(f"device: {device_name(torch.device('cpu'))}; {datetime.date.today().isoformat()}")
    print(f"folder: {args.files} unrelated files ({', '.join(f'{n} {k}' for k, n in kinds.items())}) with "
          f"{args.keys} tensor names per model file, + 3 of ours; {size / 2**20:.1f} MiB on disk\n")
    print("| listing | files | listed | total ms | ms per file |")
    print("|---|---|---|---|---|")
    print(f"| cold (every index read) | {total} | {len(listed)} | {cold * 1e3:.0f} | {cold * 1e3 / total:.2f} |")
    print(f"| warm (cached by size + mtime) | {total} | {len(again)} | {warm * 1e3:.1f} | {warm * 1e3 / total:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

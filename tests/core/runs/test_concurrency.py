"""Two processes writing one run at once (two ComfyUI servers on one shared output folder).

Each process writes its own chunk versions and both write the same shared chunks, all at the same
time. Without the run's file lock, their read-modify-write of the manifest would lose records;
with it, every chunk either process wrote is listed and verifies, and the manifest is valid JSON.
"""
from __future__ import annotations

import multiprocessing as mp

import torch

from streamingt2v_core.runs import RunStore

H, W = 6, 6
N = 24
IDENTITY = "d" * 64
BASE = {"width": W, "height": H}


def frames(seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (8, H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def writer(root: str, tag: str, start, results) -> None:
    run = RunStore(root).open_or_create("shared", IDENTITY, BASE, [H, W, 3])
    start.wait()
    for i in range(1, N + 1):
        run.write(i, f"{tag}-{i}", frames(hash((tag, i)) % 10_000), parent=None, frame_range=[8 * i, 8 * i + 8],
                  seed=i, place=False)
        run.write(i, f"shared-{i}", frames(i), parent=None, frame_range=[8 * i, 8 * i + 8], seed=i, place=False)
    results.put(tag)


def test_two_processes_write_one_run_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(str(tmp_path), tag, start, results)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in procs) == ["a", "b"]

    run = RunStore(tmp_path).open("shared")
    m = run.manifest()
    assert len(m.chunks) == 3 * N  # a-i, b-i and the one shared-i: nothing lost, no duplicate
    for record in m.chunks.values():
        run.read(record, [H, W, 3])  # every file verifies against its record
    for i in range(1, N + 1):
        assert torch.equal(run.read(m.find(i, f"shared-{i}"), [H, W, 3]), frames(i))
    assert m.problems == []

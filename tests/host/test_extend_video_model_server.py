"""StreamingT2V Extend (video model) resumes after SIGKILL of the real server, bit-identical.

The pattern of test_run_store_server.py (its Server driver): the host's own main.py on a base folder of its own,
a graph with the host's UNETLoader / VAELoader / CLIPLoader (type wan) on the session's tiny Wan demo files
(scripts/demo_weights_wan.py: the real file names), CLIPTextEncode and EmptyImage feeding the node; killed hard
once the run store holds 2 chunks, then a fresh server must take them from disk and sample only the rest, the
chunks equal to an uninterrupted run's. The host builds UMT5 from a fixed config, so the server gets the demo's
tiny-model hooks as a one-file custom node of the test's base folder (test_run_store_server.server_base).
"""
from __future__ import annotations

import signal
import time
import uuid

import pytest
from test_run_store_server import HOST_DIR, RUN_TIMEOUT_S, Server, _timeline, server_base

from streamingt2v_core.runs import RunStore

pytestmark = pytest.mark.slow

CHUNKS = 4
KILL_AFTER = 2
def video_model_graph(run_name: str) -> dict:
    return {
        "1": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp16.safetensors", "type": "wan"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_vace_1.3B_fp16.safetensors",
                                                     "weight_dtype": "default"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "a cat walks on the street"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": ""}},
        "8": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 9, "color": 0x8844CC}},
        "9": {"class_type": "StreamingT2VExtendVideoModel", "inputs": {
            "model": ["2", 0], "vae": ["3", 0], "positive": ["6", 0], "negative": ["7", 0], "first_chunk": ["8", 0],
            "total_frames": 9 + 4 * CHUNKS, "chunk_frames": 9, "context_frames": 5, "method": "auto", "seed": 13,
            "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple", "run_name": run_name}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 1]}},
    }


def test_video_model_resume_after_sigkill_of_the_real_server(host_weights, models_dir, tmp_path):
    if not (HOST_DIR / "main.py").is_file():
        pytest.skip(f"no ComfyUI host at {HOST_DIR}")
    base = server_base(tmp_path, models_dir)
    store = RunStore(base / "output" / "StreamingT2V" / "runs")
    name, reference_name = "vm-killed-" + uuid.uuid4().hex[:6], "vm-reference-" + uuid.uuid4().hex[:6]

    first = Server(base, "first")
    try:
        first.queue(video_model_graph(name))
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(_timeline(store, name)) < 1 + KILL_AFTER:
            assert time.monotonic() < deadline, f"no {KILL_AFTER} chunks stored in time:\n{first.log()}"
            assert first.process.poll() is None, first.log()
            time.sleep(0.02)
        first.process.send_signal(signal.SIGKILL)  # hard, mid-chunk
        first.process.wait(timeout=30)
    finally:
        first.stop()

    run = store.open(name)
    stored = run.manifest().timeline_records()
    assert KILL_AFTER + 1 <= len(stored) < CHUNKS + 1, "the kill came too late to interrupt the run"
    for record in stored:
        run.read(record)

    second = Server(base, "second")
    try:
        entry = second.wait(second.queue(video_model_graph(name)))
        report = entry["outputs"]["9"]["streamingt2v_run"][0]
        done = len(stored) - 1
        assert report["sources"] == ["store"] * done + ["sampled"] * (CHUNKS - done), report
        resumed = run.manifest().timeline_records()
        report = second.wait(second.queue(video_model_graph(reference_name)))["outputs"]["9"]
        assert report["streamingt2v_run"][0]["sources"] == ["sampled"] * CHUNKS
        reference = store.open(reference_name).manifest().timeline_records()
        assert [r.sha256 for r in resumed] == [r.sha256 for r in reference]
        assert [r.digest for r in resumed] == [r.digest for r in reference]
    finally:
        second.stop()

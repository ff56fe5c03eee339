"""Each finished chunk on the Extend node while the run goes on, and Refine's window and decoded frames (issue 13.1).

The host's own channels are watched: its progress-bar hook (what the server turns into the node's preview image,
with the executing node's id) and ``PromptServer.send_progress_text`` (the node's progress text). The previews must
show the frames the run then outputs, arrive while the run goes on (before the next chunk is sampled), sit beside
the latent previews of the next chunk's steps, and be throttled when chunks come fast.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from test_extend_nodes import extend_graph, pack_module

EXTEND = "9"


class HostChannels:
    """Records what the pack hands the host's progress hook and progress text, in order."""

    def __init__(self, monkeypatch, comfy_host):
        import comfy.utils
        from comfy_execution.utils import get_executing_context
        from server import PromptServer

        self.events: list[tuple] = []
        self.extend = pack_module(comfy_host, "extend")
        self.previews = pack_module(comfy_host, "previews")

        def hook(value, total, preview, prompt_id=None, node_id=None):
            context = get_executing_context()
            self.events.append(("progress", context.node_id if context else None, value, total, preview))

        def send_progress_text(text, node_id, sid=None):
            self.events.append(("text", str(node_id), text))

        original = self.extend._sample_chunk

        def sample_chunk(*args, **kwargs):
            self.events.append(("sample",))
            return original(*args, **kwargs)

        monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
        monkeypatch.setattr(PromptServer.instance, "send_progress_text", send_progress_text)
        monkeypatch.setattr(self.extend, "_sample_chunk", sample_chunk)

    def images(self) -> list[tuple[int, object]]:
        """(event position, PIL image) of every preview image sent."""
        return [(i, e[4][1]) for i, e in enumerate(self.events) if e[0] == "progress" and e[4] is not None]

    def texts(self) -> list[str]:
        return [e[2] for e in self.events if e[0] == "text"]


def _same_image(a, b) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def _chunk_frames(video: torch.Tensor, index: int) -> torch.Tensor:
    """Chunk ``index``'s new frames in the output (first chunk 16 frames, then 8 per chunk)."""
    return video[:16] if index == 0 else video[16 + 8 * (index - 1):16 + 8 * index]


def test_each_finished_chunk_is_shown_on_the_node_while_the_run_goes_on(comfy_host, host_weights, run_prompt,
                                                                         monkeypatch):
    channels = HostChannels(monkeypatch, comfy_host)
    monkeypatch.setattr(channels.previews, "MIN_INTERVAL_S", 0.0)  # every chunk at once (throttling: below)
    channels.extend.CHUNK_CACHE.clear()
    video = run_prompt(extend_graph(total_frames=40, seed=11, steps=2))[EXTEND][0]  # chunks 1..3

    grids = [channels.previews.frames_grid(_chunk_frames(video, k)) for k in range(4)]
    assert grids[1].size == (4 * 64 + 3 * 4, 2 * 64 + 4)  # 8 new frames of 64x64 in a 4 x 2 grid, full size
    samples = [i for i, e in enumerate(channels.events) if e[0] == "sample"]
    assert len(samples) == 3
    images = channels.images()
    shown = {}
    for k, grid in enumerate(grids):
        hits = [i for i, image in images if _same_image(image, grid)]
        assert hits, f"chunk {k}'s frames were never the node's preview"
        shown[k] = hits[0]
    # While the run goes on: chunk k is on the node before chunk k + 1 goes to the sampler.
    assert shown[0] < samples[0] and shown[1] < samples[1] and shown[2] < samples[2], (shown, samples)
    # Every preview and progress value goes to the Extend node (the host's hook resolves the executing node).
    assert {e[1] for e in channels.events if e[0] == "progress"} == {EXTEND}

    # The latent previews of chunk 2's steps (Latent2RGB in this host) sit left of chunk 1's frames.
    steps = [image for i, image in images if samples[1] < i < samples[2] and image.width > grids[1].width]
    assert steps, "no latent step preview beside the last finished chunk"
    for image in steps:
        right = image.crop((image.width - grids[1].width, 0, image.width, grids[1].height))
        assert _same_image(right, grids[1]) and image.height == grids[1].height

    texts = channels.texts()
    assert {e[1] for e in channels.events if e[0] == "text"} == {EXTEND}
    assert texts[0].startswith("chunk 0 of 3: the first chunk")
    assert re.match(r"chunk 1 of 3, \d+\.\d s per chunk, about \d+ (s|min) left\nchunk 1: frames 16-23, "
                    r"sampled in \d+\.\d s$", texts[1]), texts[1]
    assert re.match(r"chunk 3 of 3, \d+\.\d s per chunk, done\nchunk 3: frames 32-39", texts[-1]), texts[-1]


def test_chunks_reused_in_a_burst_update_the_node_at_most_twice_a_second(comfy_host, host_weights, run_prompt,
                                                                         monkeypatch):
    extend = pack_module(comfy_host, "extend")
    extend.CHUNK_CACHE.clear()
    run_prompt(extend_graph(total_frames=40, seed=12))  # chunks 1..3 into the memory cache
    channels = HostChannels(monkeypatch, comfy_host)
    monkeypatch.setattr(channels.previews, "MIN_INTERVAL_S", 30.0)  # a burst, whatever the machine's speed
    video = run_prompt(extend_graph(total_frames=48, seed=12))[EXTEND][0]  # 1..3 reused at once, 4 sampled

    images = [image for _, image in channels.images()]
    shown = [k for k in range(5) if any(_same_image(im, channels.previews.frames_grid(_chunk_frames(video, k)))
                                        for im in images)]
    assert shown[0] == 0 and shown[-1] == 4, shown  # the first at once, the last always
    assert 1 not in shown and 2 not in shown, shown  # held back: the burst shows at most its latest
    assert channels.texts()[-1].startswith("chunk 4 of 4, ")


def test_chunk_previews_throttle_and_estimate_on_a_clock(comfy_host):
    previews = pack_module(comfy_host, "previews")
    now = [0.0]
    sent: list = []
    pbar = SimpleNamespace(current=0, total=30)
    pbar.update_absolute = lambda value, total=None, preview=None: sent.append(preview and preview[1].size)
    run = previews.ChunkPreviews(pbar, num_chunks=4, node_id=None, clock=lambda: now[0])
    frames = torch.zeros(8, 16, 16, 3, dtype=torch.uint8)

    def report(k, source="sampled"):
        return SimpleNamespace(index=k, source=source, line=lambda: f"chunk {k}")

    run.chunk_finished(report(0, "first chunk"), frames)
    for k in (1, 2):
        now[0] += 0.1  # reused, fast
        run.chunk_finished(report(k, "store"), frames)
    assert run.shown == [0]  # 1 and 2 held back
    run.before_sampling(3)  # 0.2 s after chunk 0: still held
    assert run.shown == [0]
    now[0] += 0.4
    run.step(1, 30, None)  # the throttle allows: the latest held chunk goes out at the next step
    assert run.shown == [0, 2]
    now[0] = 10.2
    text = run.chunk_finished(report(3), frames)  # the last chunk: shown; sampled from 0.2 s to 10.2 s
    assert run.shown == [0, 2, 3]
    assert text.splitlines()[0] == "chunk 3 of 3, 10.0 s per chunk, done"
    assert previews.eta_text(5, 20, 3.14) == "chunk 5 of 20, 3.1 s per chunk, about 47 s left"
    assert previews.eta_text(1, 300, 4.0) == "chunk 1 of 300, 4.0 s per chunk, about 20 min left"
    assert previews.eta_text(1, 3, None) == "chunk 1 of 3"


def test_refine_shows_the_window_being_refined_and_the_frames_decoded_so_far(comfy_host, host_encoder_weights,
                                                                             monkeypatch):
    from comfy_execution.utils import CurrentNodeContext
    from test_context_blend import text_cond, write_random_taesd, write_tiny_refiner
    from test_refine_nodes import refine_inputs

    events: list[tuple] = []
    import comfy.utils
    from server import PromptServer

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview, prompt_id=None, node_id=None: events.append(("image", preview)))
    monkeypatch.setattr(PromptServer.instance, "send_progress_text",
                        lambda text, node_id, sid=None: events.append(("text", str(node_id), text)))
    previews = pack_module(comfy_host, "previews")
    monkeypatch.setattr(previews, "MIN_INTERVAL_S", 0.0)
    refine = comfy_host.node_class("StreamingT2VRefine")
    model = comfy_host.node_class("StreamingT2VModelLoader").execute(
        model_name=write_tiny_refiner(comfy_host.models_dir), weight_dtype="fp32", kind="auto").result[0]
    vae = comfy_host.nodes.VAELoader().load_vae(write_random_taesd(comfy_host.models_dir))[0]
    frames = torch.rand(26, 32, 32, 3, generator=torch.Generator().manual_seed(4))
    with CurrentNodeContext("prompt", "16"):
        images, _ = refine.execute(images=frames, model=model, vae=vae, positive=text_cond(0), negative=text_cond(1),
                                   **refine_inputs(width=64, height=80, chunk=8, overlap=2, steps=2)).result

    texts = [e[2] for e in events if e[0] == "text"]
    assert {e[1] for e in events if e[0] == "text"} == {"16"}
    assert texts[0] == "refining: 2 steps over 4 windows of the latent"
    # 26 latent frames -> windows (0,8) (6,14) (12,20) (18,26), each step in order.
    windows = [t for t in texts if t.startswith("step ")]
    for step in (1, 2):
        expected = [f"step {step} of 2: window {k + 1} of 4 (latent frames {s}-{e - 1})"
                    for k, (s, e) in enumerate([(0, 8), (6, 14), (12, 20), (18, 26)])]
        got = [t for t in windows if t.startswith(f"step {step} ")]
        assert got[:4] == expected, windows
    # Decoding: 8 frames per VAE call; each decoded group is the node's preview, as the IMAGE output has it.
    decoded = [t for t in texts if t.startswith("decoded")]
    assert decoded == ["decoded frames 0-7 of 26", "decoded frames 8-15 of 26", "decoded frames 16-23 of 26",
                       "decoded frames 24-25 of 26 (done)"]
    shown = [e[1][1] for e in events if e[0] == "image" and e[1] is not None and e[1][2] is None]
    expected = [previews.frames_grid(images[a:b]) for a, b in ((0, 8), (8, 16), (16, 24), (24, 26))]
    assert len(shown) == 4 and all(_same_image(a, b) for a, b in zip(shown, expected))

"""Extend's ``color_match`` (issue 13.3) through the real host nodes.

* ``off`` is the default and the official behaviour: bit-identical frames to a graph without the input, through the
  real host sampler and VAE (tiny random extender), and the same chunk digests (the second graph reuses every chunk).
* With a chunk sampler whose colour drifts by a known Lab offset per chunk (the module's ``_sample_chunk``
  replaced by a stand-in that carries its conditioning frames forward, as the extender does, plus the drift),
  ``overlap`` and ``anchor`` remove the drift that ``off`` accumulates, measured with
  :func:`streamingt2v_core.metrics.drift.measure_drift_and_seams` (an outside reference: it knows nothing of the
  correction). The first chunk is a textured pan loaded with the host's LoadImage.
* ``color_match`` is part of each chunk's digest: changing it samples every chunk again; the same setting resumes
  from the run store bit-exactly (memory and the host's cache forgotten: what a restart does).
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from streamingt2v_core.color import lab_to_rgb, rgb_to_lab
from streamingt2v_core.metrics.drift import measure_drift_and_seams
from streamingt2v_core.metrics.synthetic_drift import loop_pan_video
from test_extend_nodes import SIZE, extend_graph, pack_module

EXTEND = "9"
DRIFT = np.array([1.5, 2.0, -1.5], np.float32)  # Lab units per chunk: delta E 2.9, just above noticeable
DRIFT_E = float(np.linalg.norm(DRIFT))
PAN_FILE = "color_match_pan.png"


def forget_extend(comfy_host, chunks: bool = True) -> None:
    """The Extend node runs again on the next queue: the host's cached outputs of Extend and its PreviewAny are
    dropped (the loaders' and text encoders' stay: nothing is loaded again), and with
    ``chunks`` the pack's in-memory chunk cache is emptied (what a restart does to a run)."""
    outputs = comfy_host.executor.caches.outputs
    if outputs.initialized:
        for node_id in (EXTEND, "10"):
            outputs.cache.pop(outputs.cache_key_set.get_data_key(node_id), None)
    if chunks:
        pack_module(comfy_host, "extend").CHUNK_CACHE.clear()


@pytest.fixture(scope="module")
def pan_first_chunk(comfy_host) -> torch.Tensor:
    """A 16-frame textured pan (muted, so offsets of a few Lab units stay in gamut) as an animated PNG in the host's
    input folder; returns the frames as LoadImage gives them."""
    video = np.rint(loop_pan_video(16, SIZE, SIZE, shift=2, seed=3) * 0.6 + 51).astype(np.uint8)
    images = [Image.fromarray(f) for f in video]
    images[0].save(comfy_host.input_dir / PAN_FILE, save_all=True, append_images=images[1:], duration=100, loop=0)
    return torch.from_numpy(video.astype(np.float32) / 255.0)


def pan_graph(**extend_inputs) -> dict:
    api = extend_graph(first_chunk=["20", 0], **extend_inputs)
    api["20"] = {"class_type": "LoadImage", "inputs": {"image": PAN_FILE}}
    return api


class DriftingSampleChunk:
    """Stands in for ``nodes.extend._sample_chunk`` (same signature): a chunk whose 16 frames continue the pan of
    its 8 conditioning frames with their colours, each frame offset by ``DRIFT`` in Lab (the chunk's own error), so
    without correction chunk k is ``k * DRIFT`` off the first chunk. Frames 0..7 are the re-generated conditioning
    frames (conditioning + drift) when ``decode_cond_frames`` asks for them (``overlap``), else the conditioning
    frames, as the real one returns. A little seeded pixel noise, so nothing matches by luck."""

    def __init__(self):
        self.decode_flags: list[bool] = []

    def __call__(self, model, positive, negative, anchor_embeds, grey_embeds, vae, cond, latent_shape, seed, steps,
                 cfg, sampler_name, scheduler, callback, decode_cond_frames: bool = False) -> torch.Tensor:
        self.decode_flags.append(bool(decode_cond_frames))
        cond = cond.detach().to("cpu", torch.float32)
        new = torch.stack([torch.roll(cond[-1], -2 * (j + 1), dims=1) for j in range(8)])  # the pan goes on
        lab = rgb_to_lab(torch.cat([cond, new]).numpy()) + DRIFT
        rgb = lab_to_rgb(lab) + np.random.default_rng(seed).normal(0.0, 0.004, lab.shape).astype(np.float32)
        out = torch.from_numpy(np.clip(rgb, 0.0, 1.0).astype(np.float32))
        if not decode_cond_frames:
            out[:8] = cond
        return out


def sources_of(comfy_host) -> list[str]:
    return comfy_host.ui_outputs()[EXTEND]["streamingt2v_run"][0]["sources"]


def test_color_match_off_is_the_default_bit_for_bit(comfy_host, host_weights, run_prompt, pan_first_chunk):
    """Through the real host sampler and VAE: off == no input, and its chunks have the digests of the old ones.
    (The pan as first chunk, as below: its anchor embedding is then computed once for the whole file.)"""
    forget_extend(comfy_host)
    default = run_prompt(pan_graph(total_frames=24, seed=31, steps=1))  # chunk 1 (the stand-in below chains 5)
    assert "1 sampled" in default[EXTEND][1]
    forget_extend(comfy_host)
    off = run_prompt(pan_graph(total_frames=24, seed=31, steps=1, color_match="off"))
    assert "1 sampled" in off[EXTEND][1] and "color_match" not in off[EXTEND][1]
    assert torch.equal(off[EXTEND][0], default[EXTEND][0])
    # Same digests: with only the host's cache forgotten, the graph without the input reuses all of off's chunks.
    forget_extend(comfy_host, chunks=False)
    again = run_prompt(pan_graph(total_frames=24, seed=31, steps=1))
    assert sources_of(comfy_host) == ["memory"] and torch.equal(again[EXTEND][0], default[EXTEND][0])


def test_overlap_and_anchor_remove_a_known_drift_that_off_accumulates(comfy_host, host_weights, run_prompt,
                                                                      monkeypatch, pan_first_chunk):
    sampler = DriftingSampleChunk()
    monkeypatch.setattr(pack_module(comfy_host, "extend"), "_sample_chunk", sampler)
    results = {}
    for mode in ("off", "overlap", "anchor"):
        forget_extend(comfy_host)
        sampler.decode_flags.clear()
        out = run_prompt(pan_graph(total_frames=56, seed=7, color_match=mode))  # chunks 1..5
        video, info = out[EXTEND][:2]
        assert video.shape == (56, SIZE, SIZE, 3) and "5 sampled" in info, info
        assert torch.equal(video[:16], pan_first_chunk), "LoadImage must give the pan unchanged"
        # only overlap asks the sampler to decode the re-generated conditioning frames
        assert sampler.decode_flags == [mode == "overlap"] * 5
        assert (f"color_match {mode}" in info) == (mode != "off"), info
        results[mode] = measure_drift_and_seams(video, "extension")

    off, overlap, anchor = results["off"], results["overlap"], results["anchor"]
    # off: the drift piles up, DRIFT per chunk, 5 DRIFT after 5 chunks (uint8 rounding, noise and gamut: 15 %).
    assert off.drift_per_chunk == pytest.approx(DRIFT_E, rel=0.15)
    assert off.final_delta_e == pytest.approx(5 * DRIFT_E, rel=0.15)
    for name, corrected in (("overlap", overlap), ("anchor", anchor)):
        assert corrected.drift_per_chunk < 0.15 * DRIFT_E, (name, corrected.drift_per_chunk)
        assert corrected.max_delta_e < 0.5 * DRIFT_E, (name, corrected.max_delta_e)
        assert corrected.final_delta_e < 0.1 * off.final_delta_e, (name, corrected.final_delta_e)


def test_color_match_is_in_the_chunk_digest_and_resumes_from_the_run_store_exactly(comfy_host, host_weights,
                                                                                   run_prompt, monkeypatch,
                                                                                   pan_first_chunk):
    sampler = DriftingSampleChunk()
    monkeypatch.setattr(pack_module(comfy_host, "extend"), "_sample_chunk", sampler)
    name = f"color-match-{uuid.uuid4().hex[:8]}"

    def queue(mode: str) -> tuple[torch.Tensor, str, int]:
        forget_extend(comfy_host)
        calls = len(sampler.decode_flags)
        video, info = run_prompt(pan_graph(total_frames=40, seed=9, disk_cache=True, run_name=name,
                                           color_match=mode))[EXTEND][:2]
        return video, info, len(sampler.decode_flags) - calls

    overlap, info, sampled = queue("overlap")
    assert sampled == 3 and sources_of(comfy_host) == ["sampled"] * 3, info
    resumed, info, sampled = queue("overlap")  # a restart: every chunk from the run store, bit for bit
    assert sampled == 0 and sources_of(comfy_host) == ["store"] * 3, info
    assert "(0 sampled, 3 reused (0 from memory, 3 from the run store)" in info, info
    assert torch.equal(resumed, overlap)

    anchor, info, sampled = queue("anchor")  # another setting: every chunk sampled again
    assert sampled == 3 and sources_of(comfy_host) == ["sampled"] * 3, info
    assert not torch.equal(anchor[16:], overlap[16:])
    off, info, sampled = queue("off")
    assert sampled == 3 and sources_of(comfy_host) == ["sampled"] * 3, info

    for mode, video in (("overlap", overlap), ("anchor", anchor), ("off", off)):  # each version stays in the store
        again, info, sampled = queue(mode)
        assert sampled == 0 and sources_of(comfy_host) == ["store"] * 3, (mode, info)
        assert torch.equal(again, video), mode

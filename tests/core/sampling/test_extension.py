"""Extension loop: stitching, seeds (per chunk too), exact resume, chunks without a whole-length buffer, bad input."""

import pytest
import torch

from streamingt2v_core.runs.errors import ChunkFailedError
from streamingt2v_core.sampling.extension import (
    ChunkProgress,
    chunk_seed,
    extend_chunks,
    extend_video,
    from_storage,
    to_storage,
)
from streamingt2v_core.sampling.samplers import make_generator

FRAME = (6, 5, 3)  # [H, W, C], ComfyUI IMAGE layout per frame


def first_chunk():
    return torch.rand(16, *FRAME, generator=make_generator(0))


class NoisySampler:
    """A deterministic stand-in for the extender: depends on cond frames, anchor and seed."""

    def __init__(self):
        self.calls = []

    def __call__(self, index, cond, anchor, seed):
        self.calls.append((index, cond.clone(), anchor.clone(), seed))
        g = make_generator(seed)
        noise = torch.rand(16, *FRAME, generator=g)
        base = torch.cat([cond, cond.flip(0)])  # 16 frames from the 8 conditioning ones
        return (0.6 * base + 0.3 * noise + 0.1 * anchor).clamp(0, 1)


@pytest.mark.parametrize("storage_dtype", [torch.uint8, torch.float16])
def test_stitching_keeps_frames_8_to_15(storage_dtype):
    sampler = NoisySampler()
    fc = first_chunk()
    video = extend_video(fc, sampler, 37, seed=5, storage_dtype=storage_dtype)
    assert video.shape == (37, *FRAME) and video.dtype == storage_dtype
    assert torch.equal(video[:16], to_storage(fc, storage_dtype))
    assert [c[0] for c in sampler.calls] == [1, 2, 3]
    assert [c[3] for c in sampler.calls] == [chunk_seed(5, i) for i in (1, 2, 3)]
    # Each chunk is conditioned on the stored last 8 frames and keeps its frames 8..15.
    for index, cond, anchor, seed in sampler.calls:
        start = 16 + 8 * (index - 1)
        assert torch.equal(cond, from_storage(video[start - 8:start]))
        assert torch.equal(anchor, from_storage(video[0]))
        regenerated = NoisySampler()(index, cond, anchor, seed)
        n = min(8, 37 - start)
        assert torch.equal(video[start:start + n], to_storage(regenerated[8:8 + n], storage_dtype))


def test_user_anchor_is_used():
    sampler = NoisySampler()
    anchor = torch.full(FRAME, 0.25)
    extend_video(first_chunk(), sampler, 24, anchor=anchor)
    assert torch.equal(sampler.calls[0][2], anchor)


def test_callback_after_every_chunk():
    seen = []
    extend_video(first_chunk(), NoisySampler(), 40, callback=lambda p: seen.append(
        (p.index, p.num_chunks, p.new_range, p.frames_done, p.video.shape[0], p.new_frames.shape[0])))
    assert seen == [(0, 4, (0, 16), 16, 16, 16), (1, 4, (16, 24), 24, 24, 8),
                    (2, 4, (24, 32), 32, 32, 8), (3, 4, (32, 40), 40, 40, 8)]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("storage_dtype", [torch.uint8, torch.float16])
@pytest.mark.parametrize("stop_after", [0, 2, 5])
def test_resume_after_interruption_is_bit_identical(storage_dtype, stop_after):
    total = 61
    full = extend_video(first_chunk(), NoisySampler(), total, seed=33, storage_dtype=storage_dtype)

    saved = {}

    def stop(progress: ChunkProgress):
        saved["frames"] = progress.video.clone()
        if progress.index == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        extend_video(first_chunk(), NoisySampler(), total, seed=33, storage_dtype=storage_dtype,
                     callback=stop)
    assert saved["frames"].shape[0] == 16 + 8 * stop_after

    resumed_sampler = NoisySampler()
    resumed = extend_video(first_chunk(), resumed_sampler, total, seed=33,
                           storage_dtype=storage_dtype, resume_frames=saved["frames"])
    assert resumed_sampler.calls[0][0] == stop_after + 1  # finished chunks are not redone
    assert resumed.dtype == full.dtype and torch.equal(resumed, full)


def test_resume_from_all_frames_generates_nothing():
    full = extend_video(first_chunk(), NoisySampler(), 32)
    sampler = NoisySampler()
    again = extend_video(first_chunk(), sampler, 32, resume_frames=full)
    assert sampler.calls == [] and torch.equal(again, full)


def test_storage_roundtrip():
    x = torch.rand(4, *FRAME, generator=make_generator(1))
    assert (from_storage(to_storage(x, torch.uint8)) - x).abs().max() <= 0.5 / 255 + 1e-7
    assert torch.equal(to_storage(torch.tensor([-1.0, 2.0]), torch.uint8), torch.tensor([0, 255], dtype=torch.uint8))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(total_frames=15), "total_frames"),
        (dict(first=torch.rand(7, *FRAME)), "first_chunk"),
        (dict(first=torch.full((16, *FRAME), float("nan"))), "first_chunk"),
        (dict(storage_dtype=torch.int32), "storage_dtype"),
        (dict(anchor=torch.rand(2, 2)), "anchor"),
        (dict(anchor=torch.full(FRAME, float("inf"))), "anchor"),
        (dict(resume_frames=torch.rand(20, *FRAME)), "resume_frames"),
        (dict(resume_frames=torch.rand(24, 1, 1, 1)), "resume_frames"),
        (dict(chunk=8), "chunk"),
    ],
)
def test_bad_input(kwargs, match):
    first = kwargs.pop("first", first_chunk())
    args = dict(total_frames=40)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        extend_video(first, NoisySampler(), **args)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda i, c, a, s: torch.rand(15, *FRAME), "chunk_sampler"),
        (lambda i, c, a, s: torch.full((16, *FRAME), float("nan")), "chunk_sampler output"),
        (lambda i, c, a, s: None, "chunk_sampler"),
    ],
)
def test_bad_sampler_output(bad, match):
    with pytest.raises(ValueError, match=match):
        extend_video(first_chunk(), bad, 24)


# ---------------------------------------------------------------------------------------------------------------------
# Chunks as a list (no whole-length buffer), per-chunk seeds, bounded memory
# ---------------------------------------------------------------------------------------------------------------------

def test_extend_chunks_returns_one_tensor_per_chunk_equal_to_extend_video():
    chunks = extend_chunks(first_chunk(), NoisySampler(), 37, seed=5)
    assert [c.shape[0] for c in chunks] == [16, 8, 8, 5]
    assert torch.equal(torch.cat(chunks), extend_video(first_chunk(), NoisySampler(), 37, seed=5))


def test_chunk_seeds_reroll_one_chunk_and_everything_after_it_changes():
    base = extend_chunks(first_chunk(), NoisySampler(), 48, seed=5)
    sampler = NoisySampler()
    rerolled = extend_chunks(first_chunk(), sampler, 48, seed=5, chunk_seeds={3: 12345})
    assert [c[3] for c in sampler.calls] == [chunk_seed(5, 1), chunk_seed(5, 2), 12345, chunk_seed(5, 4)]
    assert all(torch.equal(a, b) for a, b in zip(base[:3], rerolled[:3]))
    assert not torch.equal(base[3], rerolled[3])
    assert not torch.equal(base[4], rerolled[4])  # same seed, but conditioned on the re-rolled chunk 3


def test_keep_frames_keeps_memory_constant_in_the_length():
    held = []
    chunks = extend_chunks(first_chunk(), NoisySampler(), 400, keep_frames=16,
                           callback=lambda p: held.append(sum(c.shape[0] for c in p.chunks)))
    assert max(held) <= 16 + 8 and sum(c.shape[0] for c in chunks) >= 16
    full = extend_video(first_chunk(), NoisySampler(), 400)
    assert torch.equal(torch.cat(chunks)[-16:], full[-16:])


def test_progress_reports_each_chunk_seed_and_frames():
    seen = []
    extend_chunks(first_chunk(), NoisySampler(), 32, seed=9, chunk_seeds={2: 4},
                  callback=lambda p: seen.append((p.index, p.seed, p.new_frames.shape[0])))
    assert seen == [(0, None, 16), (1, chunk_seed(9, 1), 8), (2, 4, 8)]


def test_a_bad_chunk_is_a_chunk_failed_error_naming_it():
    def nan_at_2(index, cond, anchor, seed):
        out = NoisySampler()(index, cond, anchor, seed)
        return out * float("nan") if index == 2 else out

    with pytest.raises(ChunkFailedError) as err:
        extend_chunks(first_chunk(), nan_at_2, 40)
    assert err.value.index == 2 and "chunk 2 failed" in str(err.value)
    assert "run 'r1', chunk 2 failed" in str(err.value.in_run("r1"))


def test_resume_chunks_are_not_made_again():
    full = extend_chunks(first_chunk(), NoisySampler(), 40, seed=1)
    sampler = NoisySampler()
    again = extend_chunks(first_chunk(), sampler, 40, seed=1, resume_chunks=full[:2])
    assert [c[0] for c in sampler.calls] == [2, 3]
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    with pytest.raises(ValueError, match=r"resume_chunks\[1\]"):
        extend_chunks(first_chunk(), NoisySampler(), 40, resume_chunks=[full[0], full[1][:3]])


def test_a_sampler_returning_only_new_frames_has_them_kept_without_a_copy():
    made = []

    def new_only(index, cond, anchor, seed):
        frames = to_storage(NoisySampler()(index, cond, anchor, seed)[8:], torch.uint8)
        made.append(frames)
        return frames

    chunks = extend_chunks(first_chunk(), new_only, 37, seed=5, sampler_returns_new_frames=True)
    assert all(c.data_ptr() == m.data_ptr() for c, m in zip(chunks[1:], made))  # the same memory, not a copy
    assert torch.equal(torch.cat(chunks), extend_video(first_chunk(), NoisySampler(), 37, seed=5))
    with pytest.raises(ChunkFailedError, match=r"\[8, 6, 5, 3\]"):
        extend_chunks(first_chunk(), lambda i, c, a, s: torch.zeros(16, *FRAME), 24, sampler_returns_new_frames=True)

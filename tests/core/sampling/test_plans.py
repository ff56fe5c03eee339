"""Frame plans: exact coverage, chunk counts, bad input."""

import pytest

from streamingt2v_core.sampling.plans import extension_plan, refiner_plan, window_overlaps


def _assert_refiner_covers(n: int, chunk: int, overlap: int) -> None:
    windows = refiner_plan(n, chunk, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == n
    covered = [0] * n
    for s, e in windows:
        assert 0 <= s < e <= n
        assert e - s == min(chunk, n)
        for f in range(s, e):
            covered[f] += 1
    assert all(c >= 1 for c in covered), f"frame dropped for N={n}"
    overlaps = window_overlaps(windows)
    # Regular boundaries overlap by exactly O; only the last (end-aligned) one may overlap more.
    assert all(o == overlap for o in overlaps[:-1])
    if overlaps:
        assert overlap <= overlaps[-1] < chunk


def test_refiner_plan_covers_every_frame_8_to_2000():
    for n in range(8, 2001):
        _assert_refiner_covers(n, 24, 8)


@pytest.mark.parametrize("chunk,overlap", [(16, 4), (24, 0), (24, 23), (56, 32), (5, 1)])
def test_refiner_plan_covers_other_sizes(chunk, overlap):
    for n in range(1, 400):
        _assert_refiner_covers(n, chunk, overlap)


@pytest.mark.parametrize(
    "n,official_chunks,ours",
    # official (chunks, kept frames) from the study's Appendix A: 24->(1,24), 56->(3,56),
    # 80->(4,72), 240->(14,232), 600->(37,600), 1200->(74,1192); ours adds one end-aligned
    # window whenever the official plan would drop frames.
    [(24, 1, 1), (56, 3, 3), (80, 4, 5), (240, 14, 15), (600, 37, 37), (1200, 74, 75),
     (1201, 74, 75)],
)
def test_refiner_plan_chunk_counts(n, official_chunks, ours):
    windows = refiner_plan(n)
    assert len(windows) == ours
    regular = [w for w in windows if (w[0] % 16) == 0]
    assert len(regular) == official_chunks
    assert windows[-1] == (n - 24, n)


def test_refiner_plan_end_aligned_overlap():
    windows = refiner_plan(80)
    assert windows[-2:] == [(48, 72), (56, 80)]
    assert window_overlaps(windows) == [8, 8, 8, 16]


def test_refiner_plan_short_video_is_one_window():
    assert refiner_plan(10) == [(0, 10)]


@pytest.mark.parametrize(
    "n,chunks",
    # the official loop makes (n-8)//8 chunks for n a multiple of 8: 24->2, 80->9, 1200->149
    [(16, 1), (24, 2), (56, 6), (80, 9), (240, 29), (600, 74), (1200, 149), (1201, 150)],
)
def test_extension_plan_chunk_counts(n, chunks):
    plan = extension_plan(n)
    assert plan.num_chunks == chunks == len(plan.chunks)
    assert plan.total_frames == n
    assert plan.frames_generated == 16 + 8 * (chunks - 1)


def test_extension_plan_covers_every_frame_once():
    for n in range(16, 700):
        plan = extension_plan(n)
        produced = []
        for c in plan.chunks:
            produced.extend(range(*c.new_range))
            assert c.keep_range[1] - c.keep_range[0] == c.num_new_frames
            if c.index > 0:
                assert c.cond_range == (c.new_range[0] - 8, c.new_range[0])
                assert c.keep_range[0] == 8 and c.keep_range[1] <= 16
        assert produced == list(range(n))


def test_extension_plan_trims_last_chunk():
    plan = extension_plan(21)
    assert plan.num_chunks == 2
    last = plan.chunks[-1]
    assert last.cond_range == (8, 16) and last.new_range == (16, 21) and last.keep_range == (8, 13)
    assert plan.frames_generated == 24


def test_extension_plan_other_sizes():
    plan = extension_plan(30, first_chunk=10, chunk=12, cond_frames=4)
    assert [c.new_range for c in plan.chunks] == [(0, 10), (10, 18), (18, 26), (26, 30)]
    assert [c.cond_range for c in plan.chunks[1:]] == [(6, 10), (14, 18), (22, 26)]


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(total_frames=15), "total_frames"),
        (dict(total_frames=0), "total_frames"),
        (dict(total_frames=16.0), "total_frames"),
        (dict(total_frames=32, first_chunk=4), "first_chunk"),
        (dict(total_frames=32, chunk=8), "chunk"),
        (dict(total_frames=32, cond_frames=0), "cond_frames"),
    ],
)
def test_extension_plan_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        extension_plan(**kwargs)


@pytest.mark.parametrize(
    "args,name",
    [((0,), "num_frames"), ((48, 24, 24), "overlap"), ((48, 24, -1), "overlap"),
     ((48, 0, 0), "chunk"), ((48.5,), "num_frames")],
)
def test_refiner_plan_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        refiner_plan(*args)


def test_window_overlaps_rejects_gaps():
    with pytest.raises(ValueError, match="windows"):
        window_overlaps([(0, 10), (12, 20)])

"""Frame helpers of streamingt2v_core.video: geometry of the refiner's pad/crop, resize, uint8
storage and the streaming mp4 writer."""
from __future__ import annotations

import av
import pytest
import torch

from streamingt2v_core import video


def test_fit_size_matches_official_refiner_geometry():
    # 256x256 into 1280x720 (height x width = 720x1280): 720x720 content, 280 px pads each side.
    assert video.fit_size(256, 256, 720, 1280) == (720, 720)
    box = video.canvas_box(256, 256, 720, 1280)
    assert (box.top, box.left, box.height, box.width) == (0, 280, 720, 720)
    # Landscape content is bounded by the width instead.
    assert video.fit_size(256, 512, 720, 1280) == (640, 1280)


def test_pad_then_crop_is_identity_and_pads_are_black():
    frames = torch.rand(3, 10, 6, 3)
    padded, box = video.letterbox_frames(frames, 10, 16)
    assert padded.shape == (3, 10, 16, 3)
    assert (box.left, box.width) == (5, 6)
    assert torch.equal(video.crop_frames(padded, box), frames)
    assert padded[:, :, :5].abs().max() == 0 and padded[:, :, 11:].abs().max() == 0


def test_stretch_fills_canvas():
    out, box = video.letterbox_frames(torch.rand(2, 8, 8, 3), 4, 12, mode="stretch")
    assert out.shape == (2, 4, 12, 3) and box.is_full


def test_resize_bilinear_keeps_constants_and_range():
    frames = torch.full((2, 16, 16, 3), 0.25)
    up = video.resize_frames(frames, 40, 24, "bilinear")
    assert up.shape == (2, 40, 24, 3)
    assert torch.allclose(up, torch.full_like(up, 0.25), atol=1e-6)
    # Bicubic overshoots on a step edge; the result must stay a valid IMAGE.
    step = torch.zeros(1, 8, 8, 3)
    step[:, :, 4:] = 1.0
    cubic = video.resize_frames(step, 32, 32, "bicubic")
    assert cubic.min() >= 0.0 and cubic.max() <= 1.0


def test_resize_downscale_is_antialiased():
    # A 1-pixel checkerboard averages to grey when shrunk 4x with antialiasing; without it,
    # bilinear sampling would pick near-pure black/white pixels.
    board = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()
    frames = board[None, :, :, None].expand(1, 64, 64, 3).contiguous()
    small = video.resize_frames(frames, 16, 16, "bilinear")
    assert (small - 0.5).abs().max() < 0.05


def test_uint8_round_trip_error_is_half_a_level():
    frames = torch.rand(4, 5, 7, 3)
    back = video.uint8_to_frames(video.frames_to_uint8(frames))
    assert (back - frames).abs().max() <= 0.5 / 255 + 1e-6


def test_uint8_conversion_in_blocks_of_frames_is_the_whole_video_formula():
    # 3 frames of 1.2M values: blocks of 3 frames, then a partial block; out-of-range values clamp
    frames = torch.rand(7, 480, 832, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    frames[0, 0, :4, 0] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, 2.0])  # halves round to even
    expected = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(video.frames_to_uint8(frames), expected)
    half = frames[:2].half()
    assert torch.equal(video.frames_to_uint8(half), (half.float().clamp(0, 1) * 255).round().to(torch.uint8))


def test_frame_chunks_cover_every_frame_once():
    ranges = list(video.frame_chunks(10, 4))
    assert ranges == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize("call", [
    lambda: video.resize_frames(torch.rand(4, 4, 3), 2, 2),
    lambda: video.resize_frames(torch.rand(1, 4, 4, 3), 2, 2, "lanczos9"),
    lambda: video.pad_box(10, 10, 8, 20),
    lambda: video.fit_size(0, 4, 4, 4),
    lambda: video.letterbox_frames(torch.rand(1, 4, 4, 3), 4, 4, mode="zoom"),
    lambda: video.frame_chunks(5, 0).__next__(),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_streaming_writer_writes_every_frame(tmp_path):
    path = tmp_path / "out.mp4"
    # Odd width: padded to even inside the writer.
    with video.StreamingVideoWriter(path, width=33, height=24, fps=8) as writer:
        for start, end in video.frame_chunks(20, 6):
            ramp = torch.linspace(0, 1, end - start)[:, None, None, None]
            writer.write(ramp.expand(end - start, 24, 33, 3).contiguous())
    assert writer.frames_written == 20
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 8
    assert len(decoded) == 20
    assert decoded[0].shape == (24, 34, 3)
    # Lossy codec, but a flat grey ramp must survive to within a few levels.
    assert abs(int(decoded[0].mean()) - 0) <= 4 and abs(int(decoded[-1].mean()) - 255) <= 4


def test_streaming_writer_rejects_wrong_frame_size(tmp_path):
    with video.StreamingVideoWriter(tmp_path / "x.mp4", width=16, height=16, fps=8) as writer:
        with pytest.raises(ValueError, match="frames must be"):
            writer.write(torch.rand(1, 8, 16, 3))

"""Live previews of long runs: each finished Extend chunk, and Refine's window and decoded frames, on the node while
the run goes on.

Only the host's own mechanisms:

* the node's preview image: the ``preview`` of :meth:`comfy.utils.ProgressBar.update_absolute` (the host's progress
  hook sends it with the executing node's id, ``PREVIEW_IMAGE_WITH_METADATA``; the frontend draws the latest one
  on that node);
* the node's progress text: :meth:`server.PromptServer.send_progress_text` (the frontend's text preview widget at the
  bottom of the node).

Why not an ``executed`` message with the chunk as an image output: the frontend draws a node's progress preview in
preference to its outputs, so the next step's latent preview would hide a finished chunk at once. Instead, while a
chunk is sampled, each step's latent preview is drawn next to the last finished chunk's frames (one image: left the
chunk being sampled, right the last finished one); without latent previews (the host's default,
``--preview-method none``) the finished chunk alone is the node's preview.

Cheap: frames are downscaled to thumbnails (at most 128 px a side; NumPy and PIL on the CPU, single-threaded), the
JPEG is encoded by the server's event loop, never by the sampling thread, and the node is updated at most twice a
second: of chunks that finish faster (reused from memory or the run store, or tiny settings) the latest is shown once
the half second is over (at the next chunk's first sampling step at the latest) and the last one when the run ends.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

__all__ = [
    "THUMBNAIL_SIDE",
    "MIN_INTERVAL_S",
    "frames_grid",
    "side_by_side",
    "send_progress_text",
    "eta_text",
    "Throttle",
    "ChunkPreviews",
    "RefinePreviews",
]

logger = logging.getLogger(__name__)

#: Longest side of one frame's thumbnail in a preview (px).
THUMBNAIL_SIDE = 128
#: Frames per row of a preview grid (8 new frames: 4 x 2).
GRID_COLUMNS = 4
#: At most this many frames of a segment in one preview.
MAX_PREVIEW_FRAMES = 8
#: Node updates (image or text) at most every this many seconds (~2 a second).
MIN_INTERVAL_S = 0.5
_GAP = 4  # px between thumbnails / panels
_BACKGROUND = (32, 32, 32)


# ------------------------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------------------------

def _thumbnail(frame: torch.Tensor, max_side: int) -> Image.Image:
    """One ``[H, W, 3]`` frame (uint8, or float in [0, 1]) as a PIL thumbnail, longest side at most ``max_side``.

    Frames over twice that size are subsampled first (every step-th pixel), then PIL's box filter averages: a 720p
    frame costs about what a 256 px one does. NumPy and PIL, single-threaded: torch's threaded kernels would compete
    with the sampler for the cores (and are slower for this)."""
    h, w = int(frame.shape[0]), int(frame.shape[1])
    step = max(1, max(h, w) // (2 * max_side))
    x = frame.detach().to("cpu").numpy()[::step, ::step, :3]
    if x.dtype != np.uint8:
        x = (np.clip(np.nan_to_num(x.astype(np.float32, copy=False)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(x))
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if image.size == size else image.resize(size, Image.Resampling.BOX)


def frames_grid(frames: torch.Tensor, columns: int = GRID_COLUMNS, max_side: int = THUMBNAIL_SIDE,
                max_frames: int = MAX_PREVIEW_FRAMES) -> Image.Image:
    """Thumbnails of ``frames`` (``[n, H, W, 3]``) in a grid, ``columns`` per row; more than ``max_frames`` frames
    are sampled evenly (first and last kept)."""
    n = int(frames.shape[0])
    if n == 0:
        raise ValueError("frames: no frames to preview")
    picks = list(range(n)) if n <= max_frames else torch.linspace(0, n - 1, max_frames).round().long().tolist()
    thumbs = [_thumbnail(frames[i], max_side) for i in picks]
    tw, th = thumbs[0].size
    cols = min(columns, len(thumbs))
    rows = (len(thumbs) + cols - 1) // cols
    grid = Image.new("RGB", (cols * tw + (cols - 1) * _GAP, rows * th + (rows - 1) * _GAP), _BACKGROUND)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, cols)
        grid.paste(thumb, (c * (tw + _GAP), r * (th + _GAP)))
    return grid


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """``left`` scaled to ``right``'s height (nearest for small latent previews), then ``right``."""
    h = right.height
    w = max(1, round(left.width * h / max(1, left.height)))
    resample = Image.Resampling.NEAREST if left.height < h // 2 else Image.Resampling.BILINEAR
    left = left.convert("RGB").resize((w, h), resample)
    out = Image.new("RGB", (w + 2 * _GAP + right.width, h), _BACKGROUND)
    out.paste(left, (0, 0))
    out.paste(right.convert("RGB"), (w + 2 * _GAP, 0))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------------------------------

def _executing_node_id() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # pragma: no cover - hosts without the execution context (older than the pack needs)
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


def send_progress_text(text: str, node_id: str | None = None) -> bool:
    """Show ``text`` on the executing node (or ``node_id``) with the host's progress text; False when there is no
    server or node to show it on (a script, a benchmark)."""
    node_id = node_id if node_id is not None else _executing_node_id()
    if node_id is None:
        return False
    try:
        from server import PromptServer
    except ImportError:  # pragma: no cover - the pack outside the host
        return False
    server = getattr(PromptServer, "instance", None)
    if server is None or not hasattr(server, "send_progress_text"):
        return False
    server.send_progress_text(text, node_id, getattr(server, "client_id", None))
    return True


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return f"{round(seconds / 60)} min"
    return f"{max(1, round(seconds))} s"


def eta_text(done: int, total: int, seconds_per_item: float | None, what: str = "chunk") -> str:
    """``"chunk 5 of 20, 3.1 s per chunk, about 2 min left"`` (without the rate and estimate while unknown)."""
    text = f"{what} {done} of {total}"
    if seconds_per_item is None:
        return text
    text += f", {seconds_per_item:.1f} s per {what}"
    left = total - done
    return text + (f", about {_duration(left * seconds_per_item)} left" if left > 0 else ", done")


class Throttle:
    """At most one go every ``interval`` seconds (the first always goes)."""

    def __init__(self, interval: float = MIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


# ------------------------------------------------------------------------------------------------------------------
# Extend: every finished chunk
# ------------------------------------------------------------------------------------------------------------------

class _ComposingProgressBar:
    """A ``ProgressBar`` for the step callback: each step's latent preview goes out next to the last finished chunk."""

    def __init__(self, previews: "ChunkPreviews") -> None:
        self.previews = previews

    def update_absolute(self, value, total=None, preview=None) -> None:
        self.previews.step(value, total, preview)

    def update(self, value) -> None:
        pbar = self.previews.pbar
        pbar.update_absolute(pbar.current + value)


class ChunkPreviews:
    """Each finished chunk of one extension run on the Extend node: its new frames as the node's preview (beside
    the latent previews of the next chunk's steps) and the progress text, also logged.

    ``chunk_finished`` is called by :meth:`nodes.extend_run.ExtensionRun.chunk_finished` (the one place a finished
    chunk is reported), ``before_sampling`` before a chunk goes to the sampler, ``finish`` at the end.
    """

    def __init__(self, pbar: Any, num_chunks: int, node_id: str | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.pbar = pbar
        #: chunks after the first chunk (chunk k of n counts these)
        self.total = max(0, int(num_chunks) - 1)
        self.node_id = node_id if node_id is not None else _executing_node_id()
        self.clock = clock
        self.throttle = Throttle(MIN_INTERVAL_S, clock)
        self.sampled_seconds: list[float] = []
        self.last_text: str | None = None
        self.last_image: Image.Image | None = None  # the last finished chunk's grid, as shown
        self.shown: list[int] = []  # chunk indices whose preview went out (tests, benchmarks)
        self.overhead_s = 0.0  # time spent here on the sampling thread
        self._pending: tuple[Any, torch.Tensor] | None = None
        self._last_finish = clock()

    def progress_bar(self) -> _ComposingProgressBar:
        """The ``ProgressBar`` to give the step callback (previews composed with the last finished chunk)."""
        return _ComposingProgressBar(self)

    # -- events ---------------------------------------------------------------------------------------------------

    def step(self, value, total, preview) -> None:
        if self._pending is not None and self.throttle.ready():
            self._show()
        if preview is not None and self.last_image is not None:
            t0 = time.perf_counter()
            try:
                preview = ("JPEG", side_by_side(preview[1], self.last_image), None)
            except Exception as err:  # noqa: BLE001 - a preview must never stop sampling
                logger.debug("StreamingT2V Extend: preview composition failed: %s", err)
            self.overhead_s += time.perf_counter() - t0
        self.pbar.update_absolute(value, total, preview)

    def chunk_finished(self, report: Any, frames: torch.Tensor) -> str:
        """A chunk is done (``report``: an ``extend_run.ChunkReport``, ``frames``: its new frames, uint8). Returns
        the progress text (also logged by the caller)."""
        now = self.clock()
        if report.source == "sampled":
            self.sampled_seconds.append(now - self._last_finish)
        self._last_finish = now
        text = self.progress_text(report)
        self._pending = (report, frames)
        if report.index == self.total or self.throttle.ready():
            self._show()
        return text

    def before_sampling(self, index: int) -> None:
        """Chunk ``index`` goes to the sampler: show what is pending (a reused chunk held back by the throttle) now,
        or at its first step once the throttle allows."""
        if self._pending is not None and self.throttle.ready():
            self._show()
        self._last_finish = self.clock()  # its time counts from here (store lookups of reused chunks excluded)

    def finish(self) -> None:
        if self._pending is not None:
            self._show()

    # -- what is shown ------------------------------------------------------------------------------------------------

    def seconds_per_chunk(self) -> float | None:
        recent = self.sampled_seconds[-8:]
        return sum(recent) / len(recent) if recent else None

    def progress_text(self, report: Any) -> str:
        k = report.index
        if k == 0:
            head = f"chunk 0 of {self.total}: the first chunk" + (", extending" if self.total else "")
        else:
            head = eta_text(k, self.total, self.seconds_per_chunk())
        # Without the chunk's seed: its 19 digits pushed the end of the line (sampled or reused) off a 340 px node, and
        # the frontend's progress text shows two lines. The seeds are in the info output, the manifest and the run
        # readout's tooltip.
        line = report.line()
        seed = getattr(report, "seed", None)
        if seed is not None:
            line = line.replace(f", seed {seed}", "", 1)
        return f"{head}\n{line}"

    def _show(self) -> None:
        report, frames = self._pending
        self._pending = None
        t0 = time.perf_counter()
        text = self.progress_text(report)
        try:
            image = frames_grid(frames)
        except Exception as err:  # noqa: BLE001 - a preview must never stop the run
            logger.debug("StreamingT2V Extend: chunk preview failed: %s", err)
            image = None
        if image is not None:
            self.last_image = image
            self.shown.append(report.index)
        self.last_text = text
        send_progress_text(text, self.node_id)
        self.overhead_s += time.perf_counter() - t0
        if image is not None:
            # through the host's progress hook: the node's preview (it may raise the host's interrupt: the chunk is
            # stored already)
            self.pbar.update_absolute(self.pbar.current, self.pbar.total, ("JPEG", image, None))


# ------------------------------------------------------------------------------------------------------------------
# Refine: the window being refined, the frames decoded so far
# ------------------------------------------------------------------------------------------------------------------

class RefinePreviews:
    """Refine's progress on its node: while sampling, "step s of S, window k of n (latent frames a-b)"; while
    decoding, the latest decoded segment as the node's preview and "decoded frames a-b of N"."""

    def __init__(self, num_frames: int, node_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.num_frames = int(num_frames)
        self.node_id = node_id if node_id is not None else _executing_node_id()
        self.text_throttle = Throttle(MIN_INTERVAL_S, clock)
        self.image_throttle = Throttle(MIN_INTERVAL_S, clock)
        self.steps = 0
        self.step_index = 0
        self.windows: list[tuple[int, int]] = []
        self.texts: list[str] = []  # what was sent (tests)
        self.shown: list[int] = []  # first frame of each segment shown

    def _text(self, text: str, force: bool = False) -> None:
        if force or self.text_throttle.ready():
            self.texts.append(text)
            send_progress_text(text, self.node_id)

    # -- sampling -----------------------------------------------------------------------------------------------------

    def start_sampling(self, windows: list[tuple[int, int]], steps: int) -> None:
        self.windows, self.steps, self.step_index = list(windows), int(steps), 0
        self._text(f"refining: {steps} steps over {len(windows)} window{'s' * (len(windows) != 1)} of the latent",
                   force=True)

    def step_done(self, step: int) -> None:
        """The sampler finished step ``step`` (0-based)."""
        self.step_index = step + 1

    def window(self, index: int) -> None:
        """The model runs on window ``index`` of the current step."""
        if not self.windows:
            return
        s, e = self.windows[index]
        step = min(self.step_index + 1, self.steps)
        self._text(f"step {step} of {self.steps}: window {index + 1} of {len(self.windows)} "
                   f"(latent frames {s}-{e - 1})")

    def context_window_callback(self) -> Callable:
        """A host context-window callback (``IndexListCallbacks.EVALUATE_CONTEXT_WINDOWS``)."""
        def evaluate(handler, model, x_in, conds, timestep, model_options, window_idx, *rest) -> None:
            self.window(int(window_idx))

        return evaluate

    # -- decoding -----------------------------------------------------------------------------------------------------

    def decoded(self, start: int, frames: torch.Tensor) -> tuple[str, Image.Image, None] | None:
        """Frames ``start..`` were decoded: the progress text, and the preview to hand the decode's ProgressBar (None
        when throttled)."""
        end = start + int(frames.shape[0])
        last = end >= self.num_frames
        self._text(f"decoded frames {start}-{end - 1} of {self.num_frames}" + (" (done)" if last else ""),
                   force=last)
        if not (last or self.image_throttle.ready()):
            return None
        try:
            image = frames_grid(frames)
        except Exception as err:  # noqa: BLE001 - a preview must never stop the run
            logger.debug("StreamingT2V Refine: preview failed: %s", err)
            return None
        self.shown.append(start)
        return ("JPEG", image, None)

"""One extension run of the Extend node: chunk after chunk, each reused or sampled, stored as it finishes.

For every chunk :class:`ExtensionRun` decides where its frames come from, in this order:

1. ``kept``: below ``regenerate_from``, the run's stored timeline chunk exactly as it is;
2. ``memory``: the in-memory cache (the fast path), by (run folder, chunk digest);
3. ``store``: the run store on disk, by chunk digest, verified (a chunk that fails verification
   is moved aside, reported in the info output and the log, and sampled again);
4. ``sampled``: the host's sampler (:func:`nodes.extend._sample_chunk`).

A finished chunk is written to the store at once (atomically), so a crash, a restart or an
interruption loses at most the chunk in progress. A chunk that cannot be written (disk full,
read-only) is kept in memory and the run goes on, saying so in its info output and the log.

:meth:`ExtensionRun.chunk_finished` is the one place where a finished chunk is reported.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import comfy.model_management
import comfy.utils

from streamingt2v_core.checks import NonFiniteError
from streamingt2v_core.color import match_chunk_color
from streamingt2v_core.runs import ChunkCache, ChunkCorruptError, ChunkFailedError, ChunkRecord, ChunkWriteError, Run
from streamingt2v_core.runs.errors import RunStoreError
from streamingt2v_core.runs.memory import release_free_memory
from streamingt2v_core.sampling.extension import extend_chunks, last_frames
from streamingt2v_core.sampling.plans import ExtensionPlan, extension_plan
from streamingt2v_core.video import frames_to_uint8, uint8_to_frames

from .extend_digests import (ChunkSettings, base_digest, chunk_digest, chunk_settings, conditioning_digest,
                             first_chunk_digest)
from .previews import ChunkPreviews

__all__ = ["CHUNK_FRAMES", "COND_FRAMES", "ExtensionJob", "ChunkReport", "ExtensionResult", "ExtensionRun",
           "SampleChunk"]

logger = logging.getLogger(__name__)

CHUNK_FRAMES = 16
COND_FRAMES = 8
NEW_FRAMES = CHUNK_FRAMES - COND_FRAMES

#: ``sample_chunk(job, index, cond_frames, seed, callback) -> [job.chunk_frames, H, W, 3]`` float frames (CPU):
#: frames ``0..job.cond_frames-1`` re-generate (or repeat) the conditioning frames, the others are new.
SampleChunk = Callable[["ExtensionJob", int, torch.Tensor, int, Callable | None], torch.Tensor]


@dataclass
class ExtensionJob:
    """Everything one extension samples with (host objects included)."""

    model: Any
    vae: Any
    positive: list
    negative: list
    anchor_embeds: torch.Tensor
    grey_embeds: torch.Tensor
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    width: int
    height: int
    chunk_positives: list[list] | None = None
    chunk_prompts: list[str | None] | None = None
    prompt: str | None = None
    #: Per-chunk ControlNet slicing (``nodes.controlnet.ChunkControls``), None without a ControlNet.
    controls: Any = None
    #: Colour-drift correction of each sampled chunk (:data:`streamingt2v_core.color.COLOR_MATCH_MODES`);
    #: "overlap" needs the sampler to decode the re-generated conditioning frames too (:attr:`decode_cond_frames`).
    color_match: str = "off"
    #: "anchor": the first chunk's :class:`streamingt2v_core.color.LabStats`.
    color_reference: Any = None
    #: Pixel frames per chunk (conditioning included) and conditioning frames: 16/8 for the StreamingT2V extender;
    #: ``StreamingT2V Extend (video model)`` takes any lengths its VAE's temporal stride allows.
    chunk_frames: int = CHUNK_FRAMES
    cond_frames: int = COND_FRAMES
    _base: str | None = field(default=None, repr=False)
    _positive_digests: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (1, 4, self.chunk_frames, self.height // 8, self.width // 8)

    @property
    def new_frames(self) -> int:
        """New frames per chunk (the chunk's frames after its conditioning frames)."""
        return self.chunk_frames - self.cond_frames

    def extra_settings(self, index: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What chunk ``index`` depends on beyond Extend's settings (readable, hidden), for jobs of other nodes;
        None here, so Extend's digests stay what they were."""
        return None

    @property
    def decode_cond_frames(self) -> bool:
        """Whether the chunk sampler must decode frames ``0..cond_frames-1`` (the re-generated conditioning frames)."""
        return self.color_match == "overlap"

    @property
    def base_digest(self) -> str:
        if self._base is None:
            self._base = base_digest(self.model, self.vae, self.negative, self.anchor_embeds, self.grey_embeds,
                                     self.latent_shape)
        return self._base

    def positive_for(self, index: int) -> list:
        return self.positive if self.chunk_positives is None else self.chunk_positives[index]

    def positive_digest(self, index: int) -> str:
        pos = self.positive_for(index)
        key = id(pos)
        if key not in self._positive_digests:
            self._positive_digests[key] = conditioning_digest(pos)
        return self._positive_digests[key]

    def prompt_for(self, index: int) -> str | None:
        if self.chunk_prompts is not None and self.chunk_prompts[index] is not None:
            return self.chunk_prompts[index]
        return self.prompt


@dataclass
class ChunkReport:
    """What happened to one chunk (an info line, a manifest record, a future preview)."""

    index: int
    new_range: tuple[int, int]
    seed: int | None
    source: str  # "first chunk", "kept", "memory", "store", "sampled"
    file: str | None = None
    seconds: float | None = None
    prompt: str | None = None

    def line(self) -> str:
        s, e = self.new_range
        seed = "" if self.seed is None else f", seed {self.seed}"
        what = {"first chunk": "first chunk as given", "kept": "kept as stored (regenerate_from)",
                "memory": "reused (memory)", "store": "reused (run store)"}.get(self.source, "sampled")
        if self.source == "sampled" and self.seconds is not None:
            what += f" in {self.seconds:.1f} s"
        return f"chunk {self.index}: frames {s}-{e - 1}{seed}, {what}"


@dataclass
class ExtensionResult:
    frames: torch.Tensor
    reports: list[ChunkReport]
    notes: list[str]
    run: Run | None
    #: What the node's ``run`` output gives: ``<run name>@<timeline id>``, naming exactly this video (Load Run loads
    #: it, or says that the run no longer holds it); "" without a run store.
    run_ref: str = ""

    def count(self, *sources: str) -> int:
        return sum(r.source in sources for r in self.reports)

    @property
    def counters(self) -> dict[str, int]:
        reused = self.count("memory", "store", "kept")
        return {"sampled": self.count("sampled"), "reused": reused, "cached": reused,
                "memory": self.count("memory"), "store": self.count("store"), "kept": self.count("kept")}


class ExtensionRun:
    """One extension of ``first_chunk`` to ``total_frames`` frames (see the module docstring).

    Args:
        job: what to sample with.
        sample_chunk: one chunk through the host (see :data:`SampleChunk`).
        run: the run store folder (None: memory only).
        cache: the in-memory cache (None: none).
        regenerate_from: chunks ``1..N-1`` are kept exactly as the run's timeline holds them
            (0: off); needs ``run``.
        chunk_seeds: per-chunk seed overrides.
        keep_frames: keep only the last frames in memory (the video goes to the store only).
    """

    def __init__(self, job: ExtensionJob, sample_chunk: SampleChunk, *, run: Run | None = None,
                 cache: ChunkCache | None = None, regenerate_from: int = 0, chunk_seeds: dict[int, int] | None = None,
                 keep_frames: int | None = None) -> None:
        self.job = job
        self.sample_chunk = sample_chunk
        self.run = run
        self.cache = cache
        self.regenerate_from = int(regenerate_from or 0)
        self.chunk_seeds = dict(chunk_seeds or {})
        self.keep_frames = keep_frames
        self.reports: list[ChunkReport] = []
        self.notes: list[str] = list(run.notes) if run is not None else []  # e.g. a manifest rebuilt on opening
        self._files: list[str | None] = []
        self._pinned: list[ChunkRecord] = []
        self._store_ok = run is not None
        self._plan: ExtensionPlan | None = None
        self._pbar = None
        self.previews: ChunkPreviews | None = None
        self._total_steps = 1

    # -- set-up (before any sampling) ----------------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.run.folder if self.run is not None else ""

    def pinned_records(self) -> list[ChunkRecord]:
        """The timeline chunks ``regenerate_from`` keeps; a clear error when the run has fewer."""
        n = self.regenerate_from
        if n <= 1:
            return []
        if self.run is None:
            raise ValueError("regenerate_from: keeps chunks from the run store, but disk_cache is off")
        records = self.run.manifest().timeline_records()
        if len(records) < n:
            held = f"chunks 0-{len(records) - 1}" if records else "no chunks"
            raise ValueError(f"regenerate_from: run {self.run.name!r} holds {held} ({len(records)} chunks), so "
                             f"regenerate_from must be at most {len(records)}, got {n}")
        return records[:n]

    # -- the run ----------------------------------------------------------------------------------------

    def execute(self, first: torch.Tensor, total_frames: int, seed: int) -> ExtensionResult:
        """Extend ``first`` (``[F0, H, W, 3]`` float at the working size) and build the IMAGE output."""
        f0 = first.shape[0]
        job = self.job
        plan = extension_plan(total_frames, first_chunk=f0, chunk=job.chunk_frames, cond_frames=job.cond_frames)
        self._plan = plan
        self._pinned = self.pinned_records()
        self._total_steps = max(1, (plan.num_chunks - 1) * self.job.steps)
        self._pbar = comfy.utils.ProgressBar(self._total_steps)
        self.previews = ChunkPreviews(self._pbar, plan.num_chunks)
        first_u8 = frames_to_uint8(first)
        self._store_first_chunk(first_u8, plan)
        try:
            chunks = extend_chunks(first, self._chunk, total_frames, seed=seed, chunk_seeds=self.chunk_seeds,
                                   chunk=job.chunk_frames, cond_frames=job.cond_frames, storage_dtype=torch.uint8,
                                   keep_frames=self.keep_frames, sampler_returns_new_frames=True)
        except ChunkFailedError as err:
            if self.run is None:
                raise
            raise err.in_run(self.run.name) from err
        self.previews.finish()
        if self.keep_frames is None:
            frames = _to_image(chunks, total_frames)
            frames[:f0] = first  # the first chunk exactly as given, not its uint8 copy
        else:
            frames = uint8_to_frames(last_frames(chunks, self.keep_frames))
        chunks.clear()
        ref = ""
        if self.run is not None:
            stored = self._files if self._store_ok else [None]
            ref = f"{self.run.name}@{self.run.record_timeline(stored, total_frames, seed, self.job.prompt)}"
        return ExtensionResult(frames, self.reports, self.notes, self.run, ref)

    def _store_first_chunk(self, first_u8: torch.Tensor, plan: ExtensionPlan) -> None:
        digest0 = first_chunk_digest(first_u8)
        record = None
        if self.run is not None:
            self.run.begin(plan.total_frames, plan.first_chunk, plan.chunk, plan.cond_frames, plan.num_chunks)
            record = self._stored_checked(0, digest0)
            if record is not None:
                self._place(0, record)
            else:
                record = self._write(0, digest0, first_u8, parent=None, frame_range=[0, first_u8.shape[0]])[0]
        self._files = [record.file if record is not None else None]
        self.chunk_finished(ChunkReport(0, plan.chunks[0].new_range, None, "first chunk",
                                        record.file if record else None, prompt=self.job.prompt_for(0)), first_u8)

    def _chunk(self, index: int, cond: torch.Tensor, anchor: torch.Tensor, seed: int) -> torch.Tensor:
        """The chunk sampler of the core loop: the chunk's new frames (uint8) from the first source that has them."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        job = self.job
        spec = self._plan.chunks[index]
        stored_range = [spec.new_range[0], spec.new_range[0] + job.new_frames]
        parent = self._files[index - 1] if index - 1 < len(self._files) else None
        frames, record, seconds = None, None, None
        settings: ChunkSettings | None = None
        if index < len(self._pinned):
            record = self._pinned[index]
            source = "kept"
            try:
                frames = self.run.read(record, [job.height, job.width, 3])
            except ChunkCorruptError as err:
                raise ValueError(f"regenerate_from: {err}; lower regenerate_from to {index} or below so it is "
                                 f"made again") from err
            self._place(index, record)
        else:
            settings = chunk_settings(job, index)
            key = chunk_digest(settings, seed, frames_to_uint8(cond))
            source = "memory"
            frames = self.cache.get(self.scope, key) if self.cache is not None else None
            if frames is None:
                source = "store"
                record = self._stored(index, key)
                if record is not None:
                    frames = self._read(record)
                    if frames is None:
                        record = None  # failed verification: moved aside, made again below
            if frames is None:
                source = "sampled"
                t0 = time.perf_counter()
                callback = self._step_callback(index)
                self.previews.before_sampling(index)
                try:
                    out = self.sample_chunk(job, index, cond, seed, callback)
                except NonFiniteError as err:  # a step of this chunk went NaN/inf (nodes/validation.py)
                    raise ChunkFailedError(index, f"{err}; nothing of this chunk was kept, the chunks before it "
                                                  f"are (queue again to resume from this chunk)") from None
                want = (job.chunk_frames, job.height, job.width, 3)
                if not torch.is_tensor(out) or tuple(out.shape) != want:
                    got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
                    raise ChunkFailedError(index, f"the sampled chunk is {got}, expected {want}")
                if not bool(torch.isfinite(out).all()):
                    # uint8 would hide it: NaN must never reach the store or the next chunk's conditioning
                    raise ChunkFailedError(index, "the sampled frames hold NaN or inf values; nothing of this chunk "
                                                  "was stored, the chunks before it are")
                out = self._color_matched(out, cond)
                frames = frames_to_uint8(out[job.cond_frames:].to("cpu", torch.float32))
                seconds = time.perf_counter() - t0
            else:
                self._pbar.update_absolute(index * job.steps, self._total_steps)
            if record is None and self._store_ok:
                record = self._stored_checked(index, key) if source == "memory" else None
                if record is None:
                    record, frames = self._write(index, key, frames, parent=parent, frame_range=stored_range,
                                                 seed=seed, prompt=job.prompt_for(index), settings=settings.readable,
                                                 seconds=seconds)
            if record is not None and source != "sampled":
                self._place(index, record)
            if self.cache is not None:
                self.cache.put(self.scope, key, frames)
        self._files.append(record.file if record is not None and self._store_ok else None)
        release_free_memory()  # RSS stays at what is alive: the chunks so far plus a constant
        self.chunk_finished(ChunkReport(index, spec.new_range, seed, source, record.file if record else None,
                                        seconds, job.prompt_for(index)), frames)
        # The new frames as they are (uint8): the core loop keeps this very tensor, shared with the cache.
        return frames

    def chunk_finished(self, report: ChunkReport, frames: torch.Tensor) -> None:
        """THE place a finished chunk is reported: info line, log, progress text and the chunk's preview on the node
        (:class:`.previews.ChunkPreviews`).

        ``frames`` are the chunk's new frames (uint8 ``[n, H, W, 3]``, all stored ones, even where the last chunk
        is trimmed).
        """
        self.reports.append(report)
        text = self.previews.chunk_finished(report, frames) if self.previews is not None else report.line()
        if report.index > 0:
            logger.info("StreamingT2V Extend%s: %s", f" (run {self.run.name})" if self.run else "",
                        text.replace("\n", " | "))

    def _color_matched(self, out: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The sampled chunk with its new frames colour-matched (``color_match``), before they are stored and
        become the next chunk's conditioning; "off" returns ``out`` itself."""
        mode = self.job.color_match
        if mode == "off":
            return out
        return match_chunk_color(out, mode, cond_frames=cond, reference=self.job.color_reference,
                                 num_cond=self.job.cond_frames)

    # -- store helpers ----------------------------------------------------------------------------------

    def _stored_checked(self, index: int, key: str) -> ChunkRecord | None:
        """The stored chunk whose frames this run holds already (memory, or chunk 0 as given), its file checked
        cheaply (:meth:`Run.check`), so the run folder and the output never disagree: a file altered on disk is moved
        aside, said so, and None returned (the caller writes the frames again)."""
        record = self._stored(index, key)
        if record is None:
            return None
        try:
            self.run.check(record)
        except ChunkCorruptError as err:
            message = f"{err}; it is written again from the frames in memory"
            logger.warning("StreamingT2V Extend: %s", message)
            self.notes.append(f"⚠ {message}")
            return None
        return record

    def _stored(self, index: int, key: str) -> ChunkRecord | None:
        if self.run is None:
            return None
        try:
            return self.run.find(index, key)
        except RunStoreError as err:
            self._store_failed(index, err)
            return None

    def _read(self, record: ChunkRecord) -> torch.Tensor | None:
        try:
            return self.run.read(record, [self.job.height, self.job.width, 3])
        except ChunkCorruptError as err:
            message = f"{err}; it was not used and is sampled again"
            logger.warning("StreamingT2V Extend: %s", message)
            self.notes.append(f"⚠ {message}")
            return None

    def _write(self, index: int, key: str, frames: torch.Tensor, **fields) -> tuple[ChunkRecord | None, torch.Tensor]:
        if not self._store_ok:
            return None, frames
        try:
            return self.run.write(index, key, frames, **fields)
        except (ChunkWriteError, RunStoreError) as err:
            self._store_failed(index, err)
            return None, frames

    def _place(self, index: int, record: ChunkRecord) -> None:
        if not self._store_ok:
            return
        try:
            self.run.place(index, record)
        except (ChunkWriteError, RunStoreError) as err:
            self._store_failed(index, err)

    def _store_failed(self, index: int, err: Exception) -> None:
        """Writing to the store failed: go on in memory and say so (never silently)."""
        if not self._store_ok:
            return
        self._store_ok = False
        message = (f"{err}. The run goes on in memory: chunk {index} and the chunks after it are in this output only, "
                   f"not in the run store (free disk space or make the folder writable, then queue again to store them)")
        logger.warning("StreamingT2V Extend: %s", message)
        self.notes.append(f"⚠ {message}")

    def _step_callback(self, index: int) -> Callable | None:
        from .initial_chunk import step_callback

        pbar = self.previews.progress_bar() if self.previews is not None else self._pbar
        return step_callback(self.job.model, pbar, (index - 1) * self.job.steps, self._total_steps)


def _to_image(chunks: list[torch.Tensor], total_frames: int) -> torch.Tensor:
    """The float32 IMAGE from uint8 chunks, filled chunk by chunk (no second whole-video copy)."""
    first = chunks[0]
    out = torch.empty((total_frames, *first.shape[1:]), dtype=torch.float32)
    pos = 0
    for c in chunks:
        n = min(c.shape[0], total_frames - pos)
        out[pos:pos + n].copy_(c[:n]).div_(255.0)
        pos += n
    if pos != total_frames:
        raise RuntimeError(f"the chunks hold {pos} frames, expected {total_frames}")
    return out

"""The persistent run store: finished chunks of long videos, verified on every read.

Layout (default root: ``<ComfyUI output>/StreamingT2V/runs``)::

    <root>/<run_name>/
        manifest.json                      what the run holds (see :mod:`.manifest`)
        .lock                              OS lock around every manifest update
        chunks/chunk_00037_<digest16>.safetensors   one file per finished chunk: uint8 [n, H, W, 3]
        chunks/*.corrupt-<time>            files that failed verification, moved aside (never deleted)
        videos/*.mp4                       file-backed videos made by Load Run

Rules:

* chunk files are safetensors (never pickle), written atomically (:mod:`.files`), named by chunk
  index + a short settings digest, so several versions of chunk ``k`` sit side by side and going
  back to an old seed finds the old file;
* the manifest is rewritten atomically under the run's file lock (read-modify-write), so two
  processes sharing the folder never lose each other's updates, and either can resume the other;
* every read checks the file's SHA-256 against the manifest and the tensor's dtype and shape; a
  chunk that fails is moved aside, logged in the manifest's ``problems`` and reported to the
  caller as :class:`~.errors.ChunkCorruptError`, never returned;
* nothing generated is ever deleted by the store.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import ChunkCorruptError, ChunkWriteError, RunFolderError, RunStoreError
from .files import LOCK_NAME, locked, move_aside, write_atomic
from .manifest import FORMAT, MANIFEST_NAME, ChunkRecord, Manifest, Timeline, parse_manifest, utc_now

__all__ = [
    "CHUNKS_DIR",
    "VIDEOS_DIR",
    "RunInfo",
    "RunStore",
    "Run",
    "chunk_file_name",
    "encode_chunk",
    "decode_chunk",
    "slugify",
    "auto_run_name",
    "validate_run_name",
    "video_frames",
]

CHUNKS_DIR = "chunks"
VIDEOS_DIR = "videos"
TENSOR_KEY = "frames"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")


# ------------------------------------------------------------------------------------------------ names

def slugify(text: str, max_len: int = 40) -> str:
    """A readable folder-name part of ``text``: ``"A cat walks!"`` -> ``"a-cat-walks"`` (ASCII, <= max_len)."""
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[:max_len]
        slug = cut.rsplit("-", 1)[0] if "-" in cut[max_len // 2:] else cut
    return slug.strip("-") or "run"


def auto_run_name(hint: str, identity: str, date: str | None = None) -> str:
    """``<date>_<slug of hint>_<identity[:8]>``, e.g. ``2026-12-01_a-cat-walks_1a2b3c4d``."""
    return f"{date or time.strftime('%Y-%m-%d')}_{slugify(hint)}_{identity[:8]}"


def validate_run_name(name: str) -> str:
    """A run name usable as one folder name; raises :class:`RunFolderError` naming ``run_name``."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith((" ", ".")):
        raise RunFolderError(str(name), f"run_name: expected a folder name of 1-100 letters, digits, '.', '_', "
                                        f"'-' or spaces (not starting with '.'), got {name!r}")
    return name


def chunk_file_name(index: int, digest: str) -> str:
    return f"chunk_{index:05d}_{digest[:16]}.safetensors"


# ------------------------------------------------------------------------------------------------ payloads

def encode_chunk(frames: torch.Tensor, index: int, digest: str) -> bytes:
    """The safetensors bytes of a chunk (uint8 ``[n, H, W, 3]``), with its index and digest as metadata."""
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"chunk {index}: expected uint8 frames [n, H, W, C], got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    # One metadata entry: safetensors writes several in a random order, and the same chunk must give the same
    # bytes in every process (content addressing, concurrent writers, hashes compared across runs).
    meta = json.dumps({"format": FORMAT, "index": index, "digest": digest}, sort_keys=True)
    return st_save({TENSOR_KEY: frames.detach().to("cpu").contiguous()}, metadata={"streamingt2v": meta})


def decode_chunk(data: bytes) -> torch.Tensor:
    tensors = st_load(data)
    if set(tensors) != {TENSOR_KEY}:
        raise ValueError(f"expected one tensor {TENSOR_KEY!r}, found {sorted(tensors)}")
    return tensors[TENSOR_KEY]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _writer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------------ store

@dataclass
class RunInfo:
    """One run folder as listed by :meth:`RunStore.list_runs` (``problem`` set when unreadable)."""

    name: str
    updated: str = ""
    identity: str = ""
    chunks: int = 0
    total_frames: int = 0
    frames_stored: int = 0
    problem: str | None = None


class RunStore:
    """The folder of runs (``root``); opens, creates and lists :class:`Run` folders."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)

    def folder(self, name: str) -> str:
        return os.path.join(self.root, validate_run_name(name))

    def run_names(self) -> list[str]:
        """Names of the folders under the root that hold a ``manifest.json`` (sorted)."""
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in entries if _NAME_RE.match(n) and os.path.isfile(os.path.join(self.root, n, MANIFEST_NAME))]

    def list_runs(self) -> list[RunInfo]:
        out = []
        for name in self.run_names():
            try:
                m = Run(self, name).manifest()
            except RunStoreError as err:
                out.append(RunInfo(name=name, problem=str(err)))
                continue
            records = m.timeline_records()
            out.append(RunInfo(name=name, updated=m.updated, identity=m.identity, chunks=len(records),
                               total_frames=m.timeline.total_frames, frames_stored=video_frames(m)))
        return out

    def latest(self) -> str | None:
        """The most recently updated readable run, or None."""
        runs = [r for r in self.list_runs() if r.problem is None]
        return max(runs, key=lambda r: r.updated).name if runs else None

    def find_identity(self, identity: str) -> str | None:
        """The most recently updated run with this identity digest, or None."""
        runs = [r for r in self.list_runs() if r.problem is None and r.identity == identity]
        return max(runs, key=lambda r: r.updated).name if runs else None

    def open(self, name: str) -> "Run":
        """An existing run (its manifest must be readable and ours)."""
        run = Run(self, validate_run_name(name))
        if not os.path.isfile(run.manifest_path):
            raise RunFolderError(name, f"run {name!r}: no such run in {self.root}")
        run.manifest()
        return run

    def open_or_create(self, name: str, identity: str, base: dict[str, Any], frame_shape: list[int]) -> "Run":
        """The run ``name`` for ``identity``: created if absent, reused if it has the same identity.

        Raises :class:`RunFolderError` (naming ``run_name``) for a folder that holds files but no
        manifest (not ours), a foreign/older/newer manifest, or a run made with different base
        settings (another first chunk or working size). Nothing in such a folder is touched.
        """
        folder = self.folder(name)
        self._refuse_foreign(name, folder)
        try:
            os.makedirs(folder, exist_ok=True)
            with locked(folder):
                self._refuse_foreign(name, folder)
                run = Run(self, name)
                if os.path.isfile(run.manifest_path):
                    m = run.manifest()
                    if m.identity != identity:
                        raise RunFolderError(name, _conflict_message(name, m, base))
                    return run
                now = utc_now()
                m = Manifest(run_name=name, identity=identity, created=now, updated=now, base=dict(base),
                             frame_shape=list(frame_shape))
                os.makedirs(run.chunks_dir, exist_ok=True)
                write_atomic(run.manifest_path, m.to_json().encode())
                return run
        except OSError as err:
            raise RunStoreError(name, f"run {name!r}: cannot create or open the run folder {folder} "
                                      f"({err.strerror or err})") from err

    def open_auto(self, identity: str, hint: str, base: dict[str, Any], frame_shape: list[int],
                  date: str | None = None) -> "Run":
        """The "auto" run: the most recent run with this identity (any day), else a new one named
        :func:`auto_run_name` (with a numeric suffix in the unlikely case that name is taken)."""
        found = self.find_identity(identity)
        if found is not None:
            return self.open_or_create(found, identity, base, frame_shape)
        name = auto_run_name(hint, identity, date)
        for n in range(1, 100):
            candidate = name if n == 1 else f"{name}-{n}"
            try:
                return self.open_or_create(candidate, identity, base, frame_shape)
            except RunFolderError:
                continue
        raise RunStoreError(name, f"run {name!r}: no free folder name under {self.root}")

    @staticmethod
    def _refuse_foreign(name: str, folder: str) -> None:
        """A folder with files but no manifest is not a run of ours: refuse, touching nothing."""
        if not os.path.isdir(folder) or os.path.isfile(os.path.join(folder, MANIFEST_NAME)):
            return
        # Ours even without a manifest yet: the lock, another process's manifest being written (its temp file)
        # and an empty chunks/ folder (a creator that is half-way, or stopped before its manifest).
        entries = sorted(e for e in os.listdir(folder)
                         if e != LOCK_NAME and not (e.startswith(f".{MANIFEST_NAME}.") and e.endswith(".tmp")))
        chunks = os.path.join(folder, CHUNKS_DIR)
        if not entries or (entries == [CHUNKS_DIR] and os.path.isdir(chunks) and not os.listdir(chunks)):
            return
        raise RunFolderError(name, f"run_name: the folder {folder} holds files ({', '.join(entries[:5])}) but no "
                                   f"manifest.json, so it is not a StreamingT2V run; it was left as it is: "
                                   f"choose another run_name")


def _conflict_message(name: str, m: Manifest, base: dict[str, Any]) -> str:
    theirs = ", ".join(f"{k} {m.base[k]!r}" for k in ("prompt", "width", "height", "first_chunk_frames")
                       if k in m.base)
    ours = ", ".join(f"{k} {base[k]!r}" for k in ("prompt", "width", "height", "first_chunk_frames") if k in base)
    return (f"run_name: the run {name!r} was made from another first chunk or working size ({theirs}; this graph: "
            f"{ours}), so its chunks cannot continue this video. Nothing was overwritten: choose another run_name, "
            f"or 'auto' to find or start the run that matches")


def video_frames(m: Manifest) -> int:
    """Frames the timeline holds (its chunks' frames, trimmed to ``total_frames``)."""
    records = m.timeline_records()
    if not records:
        return 0
    stored = records[0].shape[0] + sum(r.shape[0] for r in records[1:])
    return min(stored, m.timeline.total_frames) if m.timeline.total_frames else stored


# ------------------------------------------------------------------------------------------------ one run

class Run:
    """One run folder. Every method re-reads the manifest (cached by file identity), so several
    processes can work on one run."""

    def __init__(self, store: RunStore, name: str) -> None:
        self.store = store
        self.name = name
        self.folder = os.path.join(store.root, name)
        self.manifest_path = os.path.join(self.folder, MANIFEST_NAME)
        self.chunks_dir = os.path.join(self.folder, CHUNKS_DIR)
        self.videos_dir = os.path.join(self.folder, VIDEOS_DIR)
        self._cached: tuple[tuple[int, int, int], Manifest] | None = None

    def __repr__(self) -> str:
        return f"Run({self.name!r} in {self.store.root!r})"

    # -- manifest --------------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The current manifest (parsed again only when the file changed)."""
        try:
            st = os.stat(self.manifest_path)
        except FileNotFoundError:
            raise RunFolderError(self.name, f"run {self.name!r}: manifest.json is missing in {self.folder}") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        with open(self.manifest_path, encoding="utf-8") as f:
            m = parse_manifest(f.read(), self.name)
        self._cached = (key, m)
        return m

    def _update(self, change) -> Any:
        """Read-modify-write of the manifest under the run's lock; ``change(m)`` returns
        ``(result, changed)`` and the manifest is rewritten only when ``changed``."""
        with locked(self.folder):
            self._cached = None
            m = self.manifest()
            result, changed = change(m)
            if changed:
                m.updated = utc_now()
                write_atomic(self.manifest_path, m.to_json().encode())
                self._cached = None
            return result

    def begin(self, total_frames: int, first_chunk: int, chunk: int, cond_frames: int, num_chunks: int) -> None:
        """Record the plan being made; the timeline keeps at most its first ``num_chunks`` chunks."""
        def change(m: Manifest):
            new = Timeline(total_frames, first_chunk, chunk, cond_frames, m.timeline.files[:num_chunks])
            if new == m.timeline:
                return None, False
            m.timeline = new
            return None, True

        try:
            self._update(change)
        except OSError as err:
            raise RunStoreError(self.name, f"run {self.name!r}: cannot update the manifest in {self.folder} "
                                           f"({err.strerror or err})") from err

    def place(self, index: int, record: ChunkRecord) -> bool:
        """Put a stored chunk (reused or kept) on the timeline; True if it changed. A failed write
        raises :class:`ChunkWriteError`."""
        files = self.manifest().timeline.files
        if index < len(files) and files[index] == record.file:
            return False  # already there (a plain resume): no lock, no write

        def change(m: Manifest):
            if record.file not in m.chunks:
                return False, False
            changed = m.timeline.place(index, record.file, record.parent)
            return changed, changed

        try:
            return self._update(change)
        except OSError as err:
            raise ChunkWriteError(self.name, index, err.strerror or str(err), err.errno) from err

    # -- reading -----------------------------------------------------------------------------------

    def find(self, index: int, digest: str) -> ChunkRecord | None:
        return self.manifest().find(index, digest)

    def read(self, record: ChunkRecord, frame_shape: list[int] | tuple[int, ...] | None = None) -> torch.Tensor:
        """The verified frames of ``record``: SHA-256, dtype uint8 and shape checked.

        On a mismatch the file is moved aside, the problem is logged in the manifest and
        :class:`ChunkCorruptError` (naming run, chunk and why) is raised.
        """
        for attempt in range(2):
            frames, reason = self._check(record, frame_shape)
            if frames is not None:
                return frames
            # Another writer may have replaced this file and its record meanwhile: look once more.
            self._cached = None
            fresh = self.manifest().chunks.get(record.file)
            if attempt == 0 and fresh is not None and fresh.sha256 != record.sha256:
                record = fresh
                continue
            break
        moved = self._quarantine(record, reason)
        raise ChunkCorruptError(self.name, record.index, reason, moved)

    def _check(self, record: ChunkRecord, frame_shape) -> tuple[torch.Tensor | None, str]:
        path = os.path.join(self.chunks_dir, record.file)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, f"file {record.file} is missing"
        except OSError as err:
            return None, f"file {record.file} cannot be read ({err.strerror or err})"
        if len(data) != record.size:
            return None, f"file {record.file} has {len(data)} bytes, the manifest records {record.size} (truncated or replaced)"
        if _sha256(data) != record.sha256:
            return None, f"file {record.file}: SHA-256 differs from the manifest (altered or replaced)"
        try:
            frames = decode_chunk(data)
        except Exception as err:  # noqa: BLE001 - any unreadable payload is a verification failure
            return None, f"file {record.file} is not a readable chunk ({err})"
        if frames.dtype != torch.uint8 or list(frames.shape) != list(record.shape):
            return None, (f"file {record.file} holds {frames.dtype} {list(frames.shape)}, the manifest records "
                          f"{record.dtype} {record.shape}")
        if frame_shape is not None and list(frames.shape[1:]) != list(frame_shape):
            return None, f"file {record.file} holds frames of {list(frames.shape[1:])}, this run needs {list(frame_shape)}"
        return frames, ""

    def _quarantine(self, record: ChunkRecord, reason: str) -> str | None:
        def change(m: Manifest):
            current = m.chunks.get(record.file)
            if current is not None and current.sha256 != record.sha256:
                return None, False  # already replaced by a good write
            path = os.path.join(self.chunks_dir, record.file)
            moved = move_aside(path) if os.path.exists(path) else None
            m.chunks.pop(record.file, None)
            if record.file in m.timeline.files:
                del m.timeline.files[m.timeline.files.index(record.file):]
            m.add_problem(record.index, record.file, reason, moved and os.path.basename(moved))
            return moved, True

        try:
            return self._update(change)
        except OSError:
            return None  # read-only store: the bad file stays where it is, and is still never used

    def timeline_chunks(self, frame_shape: list[int] | None = None) -> Iterator[tuple[ChunkRecord, torch.Tensor]]:
        """The timeline's chunks in order, each verified (see :meth:`read`)."""
        m = self.manifest()
        shape = frame_shape or m.frame_shape
        for record in m.timeline_records():
            yield record, self.read(record, shape)

    # -- writing -----------------------------------------------------------------------------------

    def write(self, index: int, digest: str, frames: torch.Tensor, *, parent: str | None, frame_range: list[int],
              seed: int | None = None, prompt: str | None = None, settings: dict[str, Any] | None = None,
              seconds: float | None = None, place: bool = True) -> tuple[ChunkRecord, torch.Tensor]:
        """Store a finished chunk and put it on the timeline.

        Returns the record and the frames now in the store: ``frames`` itself, or, when another
        process stored this chunk (same index and digest) first, its verified frames, so every
        later chunk is conditioned on what the store holds. A failed write raises
        :class:`ChunkWriteError`; the caller still has ``frames``.
        """
        frames = frames.detach().to("cpu", torch.uint8).contiguous()
        data = encode_chunk(frames, index, digest)
        name = chunk_file_name(index, digest)
        record = ChunkRecord(file=name, index=index, digest=digest, parent=parent, frames=list(frame_range),
                             shape=list(frames.shape), dtype="uint8", sha256=_sha256(data), size=len(data),
                             seed=seed, prompt=prompt, settings=dict(settings or {}),
                             seconds=None if seconds is None else round(float(seconds), 3), written=utc_now(),
                             writer=_writer())
        path = os.path.join(self.chunks_dir, name)

        def change(m: Manifest):
            existing = m.chunks.get(name)
            if existing is not None and existing.digest == digest:
                theirs, _ = self._check(existing, list(frames.shape[1:]))
                if theirs is not None:
                    changed = place and m.timeline.place(index, name, parent)
                    return (existing, theirs), changed
            os.makedirs(self.chunks_dir, exist_ok=True)
            write_atomic(path, data)
            m.chunks[name] = record
            if place:
                m.timeline.place(index, name, parent)
            return (record, frames), True

        try:
            return self._update(change)
        except OSError as err:
            raise ChunkWriteError(self.name, index, err.strerror or str(err), err.errno) from err

    # -- summary -----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What the web readout needs: the timeline and every stored version, per chunk."""
        m = self.manifest()

        def brief(r: ChunkRecord) -> dict[str, Any]:
            # seeds as text: they exceed the 2**53 a JavaScript number holds exactly
            return {"index": r.index, "file": r.file, "parent": r.parent,
                    "seed": None if r.seed is None else str(r.seed), "prompt": r.prompt,
                    "settings": r.settings, "frames": r.frames}

        return {
            "exists": True,
            "name": self.name,
            "folder": self.folder,
            "identity": m.identity,
            "created": m.created,
            "updated": m.updated,
            "base": m.base,
            "frame_shape": m.frame_shape,
            "timeline": {"total_frames": m.timeline.total_frames, "first_chunk": m.timeline.first_chunk,
                         "files": [r.file for r in m.timeline_records()]},
            "frames_stored": video_frames(m),
            "versions": sorted((brief(r) for r in m.chunks.values()), key=lambda b: (b["index"], b["file"])),
            "problems": m.problems[-20:],
        }

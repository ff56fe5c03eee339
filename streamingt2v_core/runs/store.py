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

import errno
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .chunkfile import TENSOR_KEY, chunk_file_name, decode_chunk, encode_chunk, sha256
from .errors import ChunkCorruptError, ChunkWriteError, ManifestDamagedError, RunFolderError, RunStoreError
from .files import LOCK_NAME, locked, move_aside, write_atomic
from .manifest import MANIFEST_NAME, ChunkRecord, Manifest, Timeline, parse_manifest, utc_now
from .names import (RESERVED_NAMES, auto_run_name, name_problem, slugify, split_ref, timeline_id,
                    validate_run_name)
from .rebuild import chunk_file_names, has_own_chunk_files, rebuild_manifest
from .timelines import TimelinesMixin, frames_of

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
    "split_ref",
    "timeline_id",
    "RESERVED_NAMES",
    "TENSOR_KEY",
    "READ_ONLY_ERRNOS",
]

logger = logging.getLogger(__name__)

CHUNKS_DIR = "chunks"
VIDEOS_DIR = "videos"
#: What a read-only folder (an archive, a share mounted read-only) answers a write with.
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
def _writer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


#: path -> (inode, size, mtime_ns, sha256) of chunk files this process verified or wrote: a file whose size and
#: mtime did not change since is not read again when its frames come from memory (see :meth:`Run.check`).
_VERIFIED: dict[str, tuple[int, int, int, str]] = {}
#: run folder -> (manifest stat, chunks/ stat, manifest rebuilt in memory): listing a damaged run twice rebuilds once.
_REBUILT: dict[str, tuple[Any, Any, Manifest]] = {}
_cache_lock = threading.Lock()


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _remember_verified(path: str, sha: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    with _cache_lock:
        _VERIFIED[path] = (st.st_ino, st.st_size, st.st_mtime_ns, sha)


# ------------------------------------------------------------------------------------------------ store

@dataclass
class RunInfo:
    """One run folder as listed by :meth:`RunStore.list_runs` (``problem`` set when unreadable).

    ``note``: set when the manifest was rebuilt from the chunk files in memory (what was rebuilt); ``created``:
    when the run began; ``timelines``: the videos Extend nodes made from it (:meth:`Run.timelines`)."""

    name: str
    updated: str = ""
    identity: str = ""
    chunks: int = 0
    total_frames: int = 0
    frames_stored: int = 0
    problem: str | None = None
    created: str = ""
    note: str | None = None
    timelines: list[dict[str, Any]] = field(default_factory=list)


class RunStore:
    """The folder of runs (``root``); opens, creates and lists :class:`Run` folders."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)

    def folder(self, name: str) -> str:
        return os.path.join(self.root, validate_run_name(name))

    def run_names(self) -> list[str]:
        """Names of the folders under the root that hold a ``manifest.json`` or chunk files (sorted)."""
        try:
            entries = sorted(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [n for n in entries if name_problem(n) is None and (
            os.path.isfile(os.path.join(self.root, n, MANIFEST_NAME))
            or chunk_file_names(os.path.join(self.root, n, CHUNKS_DIR)))]

    def list_runs(self) -> list[RunInfo]:
        out = []
        for name in self.run_names():
            run = Run(self, name)
            try:
                m = run.manifest()
            except RunStoreError as err:
                out.append(RunInfo(name=name, problem=str(err)))
                continue
            records = m.timeline_records()
            out.append(RunInfo(name=name, updated=m.updated, identity=m.identity, chunks=len(records),
                               total_frames=m.timeline.total_frames, frames_stored=video_frames(m),
                               created=m.created, note=m.rebuilt, timelines=run.timelines(m)))
        return out

    def latest(self) -> str | None:
        """The most recently updated readable run, or None."""
        runs = [r for r in self.list_runs() if r.problem is None]
        return max(runs, key=lambda r: r.updated).name if runs else None

    def find_identity(self, identity: str) -> str | None:
        """The most recently updated run with this identity digest (a damaged one that can be rebuilt included),
        or None."""
        runs = [r for r in self.list_runs() if r.problem is None and r.identity == identity]
        return max(runs, key=lambda r: r.updated).name if runs else None

    def open(self, name: str) -> "Run":
        """An existing run (its manifest must be readable and ours, or rebuildable from its chunk files)."""
        run = Run(self, validate_run_name(name))
        if not os.path.isfile(run.manifest_path) and not chunk_file_names(run.chunks_dir):
            known = self.run_names()
            hint = f" (runs there: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''})" if known else \
                " (it holds no runs)"
            raise RunFolderError(name, f"run {name!r}: no such run in {self.root}{hint}")
        run.manifest()
        return run

    def open_or_create(self, name: str, identity: str, base: dict[str, Any], frame_shape: list[int]) -> "Run":
        """The run ``name`` for ``identity``: created if absent, reused if it has the same identity.

        A damaged or missing manifest is rebuilt from the run's verified chunk files (and written, the damaged
        file kept aside); the report is in the run's ``notes``. A run on a read-only folder (an archive, a share
        mounted read-only) is opened read-only: what is stored is reused, and only a write of something new fails.
        Raises :class:`RunFolderError` (naming ``run_name``) for a folder that holds files but no manifest and no
        chunks of ours (not ours), a foreign/older/newer manifest, or a run made with different base settings
        (another first chunk or working size). Nothing in such a folder is touched.
        """
        folder = self.folder(name)
        name = os.path.basename(folder)  # NFC
        self._refuse_foreign(name, folder)
        try:
            os.makedirs(folder, exist_ok=True)
            with locked(folder):
                self._refuse_foreign(name, folder)
                run = Run(self, name)
                if os.path.isfile(run.manifest_path) or chunk_file_names(run.chunks_dir):
                    m = run.manifest()
                    if m.identity != identity:
                        raise RunFolderError(name, _conflict_message(name, m, base, identity))
                    if m.rebuilt:
                        run.notes.append(f"⚠ run {name!r}: {m.rebuilt}; the rebuilt manifest was written")
                        run._write_manifest(m)
                    return run
                now = utc_now()
                m = Manifest(run_name=name, identity=identity, created=now, updated=now, base=dict(base),
                             frame_shape=list(frame_shape))
                os.makedirs(run.chunks_dir, exist_ok=True)
                write_atomic(run.manifest_path, m.to_json().encode())
                return run
        except OSError as err:
            run = Run(self, name)
            if err.errno in READ_ONLY_ERRNOS and (os.path.isfile(run.manifest_path)
                                                  or chunk_file_names(run.chunks_dir)):
                return self._open_read_only(run, identity, base, err)
            raise RunStoreError(name, f"run {name!r}: cannot create or open the run folder {folder} "
                                      f"({err.strerror or err})") from err

    def _open_read_only(self, run: "Run", identity: str, base: dict[str, Any], err: OSError) -> "Run":
        m = run.manifest()
        if m.identity != identity:
            raise RunFolderError(run.name, _conflict_message(run.name, m, base, identity))
        run.read_only = err.strerror or str(err)
        if m.rebuilt:
            run.notes.append(f"⚠ run {run.name!r}: {m.rebuilt}; the folder is read-only ({run.read_only}), so the "
                             f"rebuilt manifest is used in memory only")
        logger.info("StreamingT2V run store: run %r is read-only (%s): stored chunks are reused, new ones cannot be "
                    "stored", run.name, run.read_only)
        return run

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
        """A folder with files but neither a manifest nor chunk files of ours is not a run: refuse, touching
        nothing."""
        if not os.path.isdir(folder) or os.path.isfile(os.path.join(folder, MANIFEST_NAME)):
            return
        # Ours even without a manifest yet: the lock, another process's manifest being written (its temp file)
        # and an empty chunks/ folder (a creator that is half-way, or stopped before its manifest).
        entries = sorted(e for e in os.listdir(folder)
                         if e != LOCK_NAME and not (e.startswith(f".{MANIFEST_NAME}.") and e.endswith(".tmp")))
        chunks = os.path.join(folder, CHUNKS_DIR)
        if not entries or (entries == [CHUNKS_DIR] and os.path.isdir(chunks) and not os.listdir(chunks)):
            return
        if has_own_chunk_files(chunks):
            return  # a run whose manifest is gone: rebuilt from its chunk files
        raise RunFolderError(name, f"run_name: the folder {folder} holds files ({', '.join(entries[:5])}) but no "
                                   f"manifest.json and no chunk files of ours, so it is not a StreamingT2V run; it "
                                   f"was left as it is: choose another run_name")


def _conflict_message(name: str, m: Manifest, base: dict[str, Any], identity: str = "") -> str:
    keys = ("prompt", "width", "height", "first_chunk_frames")
    differ = [k for k in keys if k in m.base and k in base and m.base[k] != base[k]]
    if differ:
        theirs = ", ".join(f"{k} {m.base[k]!r}" for k in differ)
        ours = ", ".join(f"{k} {base[k]!r}" for k in differ)
        what = f"another first chunk or working size ({theirs}; this graph: {ours})"
    else:
        same = ", ".join(f"{k} {base[k]!r}" for k in keys if k in base)
        what = (f"another first chunk: the same {same or 'settings'}, but other frames (its first chunk "
                f"{m.identity[:8]}, made {m.created[:16].replace('T', ' ')} UTC; this graph's {identity[:8] or '?'}: "
                f"e.g. an Initial Chunk with another seed)")
    return (f"run_name: the run {name!r} was made from {what}, so its chunks cannot continue this video. Nothing was "
            f"overwritten: choose another run_name, or 'auto' to find or start the run that matches")


def video_frames(m: Manifest) -> int:
    """Frames the timeline holds (its chunks' frames, trimmed to ``total_frames``)."""
    return frames_of(m.timeline_records(), m.timeline.total_frames)


# ------------------------------------------------------------------------------------------------ one run

class Run(TimelinesMixin):
    """One run folder. Every method re-reads the manifest (cached by file identity), so several
    processes can work on one run.

    ``read_only``: why the folder cannot be written (None: it can, as far as we know); ``notes``: what opening
    it found that the node must report (a rebuilt manifest)."""

    def __init__(self, store: RunStore, name: str) -> None:
        self.store = store
        self.name = name
        self.folder = os.path.join(store.root, name)
        self.manifest_path = os.path.join(self.folder, MANIFEST_NAME)
        self.chunks_dir = os.path.join(self.folder, CHUNKS_DIR)
        self.videos_dir = os.path.join(self.folder, VIDEOS_DIR)
        self._cached: tuple[tuple[int, int, int], Manifest] | None = None
        self.read_only: str | None = None
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"Run({self.name!r} in {self.store.root!r})"

    # -- manifest --------------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The current manifest (parsed again only when the file changed).

        A manifest that is missing (with chunk files there), not JSON or has malformed fields is rebuilt in memory
        from the verified chunk files (:mod:`.rebuild`; its ``rebuilt`` says what was rebuilt): reading works
        on a read-only folder too; the rebuilt manifest is written by the next change (the damaged file is kept).
        """
        key = _stat_key(self.manifest_path)
        if key is not None and self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        if key is None:
            if not chunk_file_names(self.chunks_dir):
                raise RunFolderError(self.name, f"run {self.name!r}: manifest.json is missing in {self.folder}")
            return self._rebuilt(key, f"run {self.name!r}: manifest.json is missing")
        try:
            with open(self.manifest_path, encoding="utf-8", errors="replace") as f:
                m = parse_manifest(f.read(), self.name)
        except FileNotFoundError:
            return self.manifest()  # replaced between stat and open: read the new one
        except ManifestDamagedError as err:
            return self._rebuilt(key, str(err).replace("; the folder was left as it is", ""))
        self._cached = (key, m)
        return m

    def _rebuilt(self, key, why: str) -> Manifest:
        chunks_key = _stat_key(self.chunks_dir)
        with _cache_lock:
            cached = _REBUILT.get(self.folder)
        if cached is not None and cached[0] == key and cached[1] == chunks_key:
            return cached[2]
        m = rebuild_manifest(self.folder, self.chunks_dir, self.name, why)
        with _cache_lock:
            _REBUILT[self.folder] = (key, chunks_key, m)
        logger.warning("StreamingT2V run store: %s", m.rebuilt)
        return m

    def _write_manifest(self, m: Manifest) -> None:
        """Write ``m`` (under the lock, by the caller); a rebuilt one keeps the damaged file aside and says so."""
        if m.rebuilt:
            moved = move_aside(self.manifest_path, "damaged") if os.path.exists(self.manifest_path) else None
            m.add_problem(None, MANIFEST_NAME, m.rebuilt, moved and os.path.basename(moved))
            m.rebuilt = None
            with _cache_lock:
                _REBUILT.pop(self.folder, None)
        m.updated = utc_now()
        write_atomic(self.manifest_path, m.to_json().encode())
        self._cached = None

    def _update(self, change) -> Any:
        """Read-modify-write of the manifest under the run's lock; ``change(m)`` returns
        ``(result, changed)`` and the manifest is rewritten only when ``changed`` (or rebuilt)."""
        with locked(self.folder):
            self._cached = None
            m = self.manifest()
            result, changed = change(m)
            if changed or m.rebuilt:
                self._write_manifest(m)
            return result

    def begin(self, total_frames: int, first_chunk: int, chunk: int, cond_frames: int, num_chunks: int) -> None:
        """Record the plan being made; the timeline keeps at most its first ``num_chunks`` chunks (no write, and
        no lock, when it is already so: a resume on a read-only folder)."""
        def new_timeline(m: Manifest) -> Timeline:
            return Timeline(total_frames, first_chunk, chunk, cond_frames, m.timeline.files[:num_chunks])

        current = self.manifest()
        if not current.rebuilt and new_timeline(current) == current.timeline:
            return

        def change(m: Manifest):
            new = new_timeline(m)
            if new == m.timeline:
                return None, False
            m.timeline = new
            return None, True

        try:
            self._update(change)
        except OSError as err:
            if self.read_only and err.errno in READ_ONLY_ERRNOS:
                return  # the plan is not recorded; what is stored is still reused (a new chunk's write says so)
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

    def check(self, record: ChunkRecord) -> None:
        """That ``record``'s file still holds what the manifest records, cheaply: when its size and mtime are those
        this process last verified, nothing is read; else it is verified in full (:meth:`read`: a bad file is moved
        aside and :class:`ChunkCorruptError` raised). For chunks whose frames come from memory, so the run folder
        and the output never disagree."""
        path = os.path.join(self.chunks_dir, record.file)
        try:
            st = os.stat(path)
        except OSError:
            st = None
        with _cache_lock:
            known = _VERIFIED.get(path)
        if st is not None and known == (st.st_ino, st.st_size, st.st_mtime_ns, record.sha256):
            return
        self.read(record)

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
        if sha256(data) != record.sha256:
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
        _remember_verified(path, record.sha256)
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

    def timeline_chunks(self, frame_shape: list[int] | None = None,
                        records: list[ChunkRecord] | None = None) -> Iterator[tuple[ChunkRecord, torch.Tensor]]:
        """The chunks of the timeline (or of ``records``, from :meth:`resolve`) in order, each verified (see
        :meth:`read`)."""
        m = self.manifest()
        shape = frame_shape or m.frame_shape
        for record in (m.timeline_records() if records is None else records):
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
        current = self.manifest()
        # What a rebuild needs besides the record's fields (all of them follow from the digest: see .chunkfile).
        meta: dict[str, Any] = {"parent": parent, "frames": list(frame_range), "seed": seed, "prompt": prompt,
                                "settings": dict(settings or {}), "chunk": current.timeline.chunk,
                                "cond_frames": current.timeline.cond_frames}
        if index == 0:
            meta.update(identity=current.identity, base=current.base)
        data = encode_chunk(frames, index, digest, meta)
        name = chunk_file_name(index, digest)
        record = ChunkRecord(file=name, index=index, digest=digest, parent=parent, frames=list(frame_range),
                             shape=list(frames.shape), dtype="uint8", sha256=sha256(data), size=len(data),
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
            _remember_verified(path, record.sha256)
            m.chunks[name] = record
            if place:
                m.timeline.place(index, name, parent)
            return (record, frames), True

        try:
            return self._update(change)
        except OSError as err:
            reason = err.strerror or str(err)
            if err.errno in READ_ONLY_ERRNOS:
                reason = (f"the run folder {self.folder} is read-only ({reason}); the chunks it holds were reused, "
                          f"but this chunk is new and must be written")
            raise ChunkWriteError(self.name, index, reason, err.errno) from err

    # -- summary -----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What the web readout needs: the timeline and every stored version, per chunk; the recorded timelines
        (:meth:`timelines`) and, for a manifest rebuilt in memory, what was rebuilt (``note``)."""
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
            "timelines": self.timelines(m),
            "note": m.rebuilt,
        }

"""The run manifest (``manifest.json``): what a run folder holds, in plain JSON.

One manifest per run folder records:

* ``format`` and ``version``: a manifest of another program, or of an older or newer version of
  this one, is recognised and reported, never reinterpreted;
* ``identity``: the run-identity digest (the first chunk and the working size), so the "auto" run
  name finds the same run again after a restart or on another day;
* ``chunks``: every chunk file ever finished in this run, keyed by file name, with its index,
  frame range, seed, prompt, the digest of the settings it was made with, the chunk it was
  conditioned on (``parent``), timings and the SHA-256, shape and dtype of its payload. Several
  versions of chunk ``k`` (re-rolls, other settings) sit side by side; none is ever dropped;
* ``timeline``: the chunk files that make up the video as last extended, in order, a consistent
  chain (each conditioned on the one before); Load Run reads this;
* ``timelines``: every video an Extend node produced from this run, by timeline id (the ``run``
  output names one: ``<run name>@<id>``), with its base seed, frames and the time it was made, so
  two Extend nodes sharing a run (other seeds, other lengths) each keep their own video;
* ``problems``: chunks that failed verification, when, why and where their files were moved (and
  a manifest that was rebuilt from the chunk files).

Adding ``timelines`` kept the format readable by version 1 readers (they ignore the key), so the
version stays 1.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ManifestDamagedError, RunFolderError

__all__ = ["FORMAT", "VERSION", "MANIFEST_NAME", "ChunkRecord", "Timeline", "Manifest", "parse_manifest", "utc_now"]

FORMAT = "streamingt2v-run"
VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_PROBLEMS = 200


def utc_now() -> str:
    """UTC time as ISO 8601 with milliseconds (sorts as text)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class ChunkRecord:
    """One finished chunk file of a run.

    Attributes:
        file: file name in the run's ``chunks/`` folder (``chunk_<index>_<digest[:16]>.safetensors``).
        index: chunk index (0 = the first chunk as given).
        digest: digest of everything the chunk depends on (its settings digest; the reuse key).
        parent: file of the chunk whose frames conditioned this one (None for chunk 0).
        frames: ``[start, end)`` of the stored frames in the video (a trimmed last chunk stores
            all of its new frames; the timeline's ``total_frames`` trims).
        shape, dtype: of the stored tensor, ``[n, H, W, 3]`` uint8.
        sha256, size: of the payload file's bytes.
        seed: the chunk's seed (None for chunk 0).
        prompt: the prompt text the chunk used, when known.
        settings: the chunk's settings in readable form (what the web readout compares).
        seconds: time to make the chunk (sampling + decoding), None for chunk 0.
        written: UTC time it was written; writer: ``host:pid`` of the writer.
    """

    file: str
    index: int
    digest: str
    parent: str | None
    frames: list[int]
    shape: list[int]
    dtype: str
    sha256: str
    size: int
    seed: int | None = None
    prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    written: str = ""
    writer: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChunkRecord":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class Timeline:
    """The chunk files that make up the video, in order (a chain: each conditioned on the one before)."""

    total_frames: int = 0
    first_chunk: int = 0
    chunk: int = 16
    cond_frames: int = 8
    files: list[str] = field(default_factory=list)

    def place(self, index: int, file: str, parent: str | None) -> bool:
        """Put ``file`` at ``index``; True if the timeline changed.

        A different chunk at ``index`` replaces the old one and drops everything after it (their
        conditioning changed; their files stay in the run). A chunk whose parent is not the
        timeline's chunk ``index - 1`` (another writer changed the timeline meanwhile) is not
        placed, so the timeline stays one consistent chain.
        """
        if index == 0:
            if self.files[:1] == [file]:
                return False
            self.files = [file]
            return True
        if len(self.files) < index or self.files[index - 1] != parent:
            return False
        if len(self.files) > index:
            if self.files[index] == file:
                return False
            self.files[index] = file
            del self.files[index + 1:]
            return True
        self.files.append(file)
        return True


@dataclass
class Manifest:
    run_name: str
    identity: str
    created: str
    updated: str
    base: dict[str, Any] = field(default_factory=dict)
    frame_shape: list[int] = field(default_factory=list)
    chunks: dict[str, ChunkRecord] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: timeline id -> {"files", "total_frames", "seed", "prompt", "made", "chunk", "cond_frames"}
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Set (never written) when this manifest was rebuilt from the chunk files in memory: what was rebuilt.
    rebuilt: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, **asdict(self)}
        data.pop("rebuilt")
        return json.dumps(data, indent=1) + "\n"

    def find(self, index: int, digest: str) -> ChunkRecord | None:
        for record in self.chunks.values():
            if record.index == index and record.digest == digest:
                return record
        return None

    def versions(self, index: int) -> list[ChunkRecord]:
        return [r for r in self.chunks.values() if r.index == index]

    def timeline_records(self) -> list[ChunkRecord]:
        """The timeline's chunk records in order (a file missing from ``chunks`` ends the list)."""
        out = []
        for name in self.timeline.files:
            record = self.chunks.get(name)
            if record is None:
                break
            out.append(record)
        return out

    def add_problem(self, index: int | None, file: str, reason: str, moved_to: str | None) -> None:
        self.problems.append({"time": utc_now(), "index": index, "file": file, "reason": reason,
                              "moved_to": moved_to})
        del self.problems[:-MAX_PROBLEMS]


def parse_manifest(text: str, run: str) -> Manifest:
    """Parse ``manifest.json`` text; a foreign, older, newer or damaged manifest raises
    :class:`RunFolderError` naming ``run`` and what was found."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ManifestDamagedError(run, f"run {run!r}: manifest.json is not valid JSON ({err}); the folder was "
                                        f"left as it is") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise RunFolderError(run, f"run {run!r}: manifest.json is not a StreamingT2V run manifest (format "
                                  f"{found!r}, expected {FORMAT!r}); this folder belongs to something else and "
                                  f"was left as it is: choose another run_name")
    version = data.get("version")
    if version != VERSION:
        if isinstance(version, int) and version < VERSION:
            age = f"an older version of this pack (manifest version {version})"
        elif isinstance(version, int):
            age = f"a newer version of this pack (manifest version {version})"
        else:
            age = f"an unknown version ({version!r})"
        raise RunFolderError(run, f"run {run!r}: made by {age}; this version reads manifest version {VERSION}. "
                                  f"Nothing was changed: use another run_name (or the pack version that made it)")
    return _manifest_from(data, run)


_INT = (int,)
_KINDS = {"text": (str,), "integer": _INT, "object": (dict,), "list": (list,), "number": (int, float)}


def _get(data: dict, key: str, kind: str, where: str, run: str, default: Any = ..., nullable: bool = False) -> Any:
    """``data[key]`` checked to be of ``kind``; else :class:`ManifestDamagedError` naming the field (``where``)."""
    name = f"{where}.{key}" if where else key
    if key not in data:
        if default is not ...:
            return default
        raise ManifestDamagedError(run, f"run {run!r}: manifest.json is damaged (the field {name!r} is missing); "
                                        f"the folder was left as it is")
    value = data[key]
    if value is None and nullable:
        return None
    ok = isinstance(value, _KINDS[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
    if not ok:
        raise ManifestDamagedError(run, f"run {run!r}: manifest.json is damaged (the field {name!r} should be "
                                        f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}, found {value!r:.60}); the "
                                        f"folder was left as it is")
    return value


def _int_list(data: dict, key: str, where: str, run: str) -> list[int]:
    values = _get(data, key, "list", where, run)
    for i, v in enumerate(values):
        _get({str(i): v}, str(i), "integer", f"{where}.{key}" if where else key, run)
    return list(values)


def _record_from(name: str, d: Any, run: str) -> ChunkRecord:
    where = f"chunks.{name}"
    if not isinstance(d, dict):
        _get({where: d}, where, "object", "", run)
    return ChunkRecord(
        file=_get(d, "file", "text", where, run), index=_get(d, "index", "integer", where, run),
        digest=_get(d, "digest", "text", where, run), parent=_get(d, "parent", "text", where, run, nullable=True),
        frames=_int_list(d, "frames", where, run), shape=_int_list(d, "shape", where, run),
        dtype=_get(d, "dtype", "text", where, run), sha256=_get(d, "sha256", "text", where, run),
        size=_get(d, "size", "integer", where, run),
        seed=_get(d, "seed", "integer", where, run, None, nullable=True),
        prompt=_get(d, "prompt", "text", where, run, None, nullable=True),
        settings=dict(_get(d, "settings", "object", where, run, {})),
        seconds=_get(d, "seconds", "number", where, run, None, nullable=True),
        written=_get(d, "written", "text", where, run, ""), writer=_get(d, "writer", "text", where, run, ""),
    )


def _manifest_from(data: dict, run: str) -> Manifest:
    chunks = {name: _record_from(name, rec, run) for name, rec in _get(data, "chunks", "object", "", run).items()}
    t = _get(data, "timeline", "object", "", run)
    files = _get(t, "files", "list", "timeline", run)
    for i, f in enumerate(files):
        _get({str(i): f}, str(i), "text", "timeline.files", run)
    timeline = Timeline(total_frames=_get(t, "total_frames", "integer", "timeline", run),
                        first_chunk=_get(t, "first_chunk", "integer", "timeline", run),
                        chunk=_get(t, "chunk", "integer", "timeline", run, 16),
                        cond_frames=_get(t, "cond_frames", "integer", "timeline", run, 8), files=list(files))
    timelines = _get(data, "timelines", "object", "", run, {})
    for tid, entry in timelines.items():
        _get({tid: entry}, tid, "object", "timelines", run)
        _get(entry, "files", "list", f"timelines.{tid}", run)
        _get(entry, "total_frames", "integer", f"timelines.{tid}", run)
    return Manifest(
        run_name=_get(data, "run_name", "text", "", run), identity=_get(data, "identity", "text", "", run),
        created=_get(data, "created", "text", "", run), updated=_get(data, "updated", "text", "", run),
        base=dict(_get(data, "base", "object", "", run, {})), frame_shape=_int_list(data, "frame_shape", "", run),
        chunks=chunks, timeline=timeline, problems=list(_get(data, "problems", "list", "", run, [])),
        timelines=dict(timelines),
    )

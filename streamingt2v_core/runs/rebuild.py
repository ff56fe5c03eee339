"""Rebuilding a run's manifest from its chunk files, when ``manifest.json`` is cut, garbled or gone.

Every chunk file carries in its metadata what its manifest record holds (:mod:`.chunkfile`): index, digest, parent,
frame range, seed, prompt, settings, the hash of its frames; chunk 0 also the run's identity and base. A file is
used only when it verifies on its own: its name matches its metadata, it decodes as uint8 frames of the run's
size, and its frames match their recorded hash. Files that do not are listed in the report and left where they
are. The timeline becomes the longest chain of verified chunks (each conditioned on the one before), the most
recently written one on a tie; its length is its last chunk's end (a trimmed last chunk comes back whole).
"""
from __future__ import annotations

import os
import time
from typing import Any

from .chunkfile import CHUNK_FILE_RE, chunk_metadata, decode_chunk, frames_sha256, read_header, sha256
from .errors import ManifestDamagedError
from .manifest import ChunkRecord, Manifest, Timeline

__all__ = ["chunk_file_names", "has_own_chunk_files", "rebuild_manifest"]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def chunk_file_names(chunks_dir: str) -> list[str]:
    """The files in ``chunks_dir`` named like chunk files (sorted); [] when there is no such folder."""
    try:
        return sorted(n for n in os.listdir(chunks_dir) if CHUNK_FILE_RE.match(n))
    except OSError:
        return []


def has_own_chunk_files(chunks_dir: str) -> bool:
    """Whether ``chunks_dir`` holds a chunk file with this pack's metadata (its header is read, nothing else)."""
    return any(read_header(os.path.join(chunks_dir, n)) is not None for n in chunk_file_names(chunks_dir))


def _verify(path: str, name: str) -> tuple[ChunkRecord | None, dict[str, Any], str]:
    """(record, metadata, "") for a chunk file that verifies on its own, else (None, {}, why not)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        mtime = os.stat(path).st_mtime
    except OSError as err:
        return None, {}, f"cannot be read ({err.strerror or err})"
    meta = chunk_metadata(data)
    if meta is None:
        return None, {}, "has no run-store metadata"
    match = CHUNK_FILE_RE.match(name)
    index, digest = meta.get("index"), meta.get("digest")
    if not isinstance(index, int) or not isinstance(digest, str) or index != int(match[1]) \
            or not digest.startswith(match[2]):
        return None, {}, "its name does not match its metadata"
    if "frames_sha256" not in meta:
        return None, {}, "was written by an older version, without the checksum that would verify it"
    try:
        frames = decode_chunk(data)
    except Exception as err:  # noqa: BLE001 - any unreadable payload fails verification
        return None, {}, f"is not a readable chunk ({err})"
    if frames.ndim != 4 or str(frames.dtype) != "torch.uint8":
        return None, {}, f"holds {frames.dtype} {list(frames.shape)}, not uint8 frames"
    if frames_sha256(frames) != meta["frames_sha256"]:
        return None, {}, "its frames do not match their checksum (altered)"
    frame_range = meta.get("frames")
    record = ChunkRecord(
        file=name, index=index, digest=digest, parent=meta.get("parent"),
        frames=list(frame_range) if isinstance(frame_range, list) else [0, frames.shape[0]],
        shape=list(frames.shape), dtype="uint8", sha256=sha256(data), size=len(data), seed=meta.get("seed"),
        prompt=meta.get("prompt"), settings=dict(meta.get("settings") or {}), written=_iso(mtime),
        writer="rebuilt from its chunk file")
    meta["_mtime"] = mtime
    return record, meta, ""


def _ranges(indices: list[int]) -> str:
    out: list[str] = []
    for i in sorted(set(indices)):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)


def rebuild_manifest(folder: str, chunks_dir: str, name: str, why: str) -> Manifest:
    """A manifest for run ``name`` from the verified chunk files in ``chunks_dir``; its ``rebuilt`` attribute says
    what was rebuilt from what. Raises :class:`ManifestDamagedError` (``why`` and why nothing could be rebuilt)."""
    records: dict[str, ChunkRecord] = {}
    metas: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for file in chunk_file_names(chunks_dir):
        record, meta, reason = _verify(os.path.join(chunks_dir, file), file)
        if record is None:
            skipped.append(f"{file} {reason}")
        else:
            records[file], metas[file] = record, meta
    firsts = [f for f, r in records.items() if r.index == 0 and isinstance(metas[f].get("identity"), str)]
    if not firsts:
        found = f"{len(records)} verified chunk files but no chunk 0 among them" if records else \
            "no chunk file that verifies"
        detail = f" ({'; '.join(skipped[:3])}{'; ...' if len(skipped) > 3 else ''})" if skipped else ""
        raise ManifestDamagedError(name, f"{why}. It cannot be rebuilt: {os.path.join(folder, 'chunks')} holds "
                                         f"{found}{detail}")
    first = max(firsts, key=lambda f: metas[f]["_mtime"])
    identity, frame_shape = metas[first]["identity"], records[first].shape[1:]
    for f in [f for f, r in records.items() if r.shape[1:] != frame_shape or
              (r.index == 0 and metas[f].get("identity") not in (None, identity))]:
        skipped.append(f"{f} belongs to another first chunk or frame size")
        del records[f]

    depth: dict[str, int] = {}

    def chain_depth(file: str) -> int:  # chunks from chunk 0 to ``file``, each conditioned on the one before
        if file not in depth:
            depth[file] = -1  # (a cycle ends here)
            r = records[file]
            if r.index == 0:
                depth[file] = 0
            elif r.parent in records and records[r.parent].index == r.index - 1 and chain_depth(r.parent) >= 0:
                depth[file] = depth[r.parent] + 1
        return depth[file]

    last = max(records, key=lambda f: (chain_depth(f), metas[f]["_mtime"]))
    chain = [last]
    while records[chain[-1]].index > 0:
        chain.append(records[chain[-1]].parent)
    chain.reverse()
    meta_last = metas[last]
    timeline = Timeline(total_frames=records[last].frames[1], first_chunk=records[chain[0]].shape[0],
                        chunk=int(meta_last.get("chunk", 16)), cond_frames=int(meta_last.get("cond_frames", 8)),
                        files=chain)
    times = [m["_mtime"] for m in metas.values()]
    m = Manifest(run_name=name, identity=identity, created=_iso(min(times)), updated=_iso(max(times)),
                 base=dict(metas[first].get("base") or {}), frame_shape=list(frame_shape), chunks=records,
                 timeline=timeline)
    report = (f"{why}. It was rebuilt from {len(records)} verified chunk files (chunks "
              f"{_ranges([r.index for r in records.values()])}); the timeline is chunks 0-{len(chain) - 1} "
              f"({timeline.total_frames} frames)")
    if skipped:
        report += f"; not used: {'; '.join(skipped[:5])}{'; ...' if len(skipped) > 5 else ''}"
    m.rebuilt = report
    return m

"""The timelines of a run: every video an Extend node made from it, by id (what its ``run`` output names,
``<run name>@<timeline id>``), so two Extend nodes sharing a run (other seeds, lengths) each keep their own video.

A timeline id is ``<total frames>f-<the last chunk's digest[:16]>``: with the chunks' parent links it finds the
video even without the manifest's record of it (a rebuilt manifest).
"""
from __future__ import annotations

import logging
from typing import Any

from .errors import RunFolderError
from .manifest import ChunkRecord, Manifest, utc_now
from .names import TIMELINE_ID_RE, timeline_id

__all__ = ["TimelinesMixin", "frames_of"]

logger = logging.getLogger(__name__)


def frames_of(records: list[ChunkRecord], total_frames: int) -> int:
    """Frames of a chain of chunks, trimmed to ``total_frames`` (0: untrimmed)."""
    if not records:
        return 0
    stored = sum(r.shape[0] for r in records)
    return min(stored, total_frames) if total_frames else stored


class TimelinesMixin:
    """:class:`~.store.Run`'s timeline methods (they use its ``name``, ``manifest()`` and ``_update()``)."""

    def record_timeline(self, files: list[str | None], total_frames: int, seed: int | None,
                        prompt: str | None = None) -> str:
        """The id of the video an Extend node just made from this run (its chunk ``files``, None where a chunk could
        not be stored), recorded in the manifest's ``timelines`` with its seed and time when it is new (a failed
        write is only logged: the id alone finds the chunks, see :meth:`resolve`)."""
        m = self.manifest()
        last = m.chunks.get(files[-1]) if files and files[-1] else None
        if last is None or not all(files):
            return timeline_id(total_frames, None)
        tid = timeline_id(total_frames, last.digest)
        entry = m.timelines.get(tid)
        if entry is not None and entry.get("files") == list(files):
            return tid
        plan = m.timeline
        new = {"files": list(files), "total_frames": int(total_frames), "seed": seed, "prompt": prompt,
               "made": utc_now(), "chunk": plan.chunk, "cond_frames": plan.cond_frames}

        def change(m: Manifest):
            m.timelines[tid] = new
            return None, True

        try:
            self._update(change)
        except OSError as err:
            logger.info("StreamingT2V run store: run %r: timeline %s not recorded (%s)", self.name, tid,
                        err.strerror or err)
        return tid

    def resolve(self, tid: str) -> tuple[list[ChunkRecord], int]:
        """The chunk records and frame count of timeline ``tid`` (from :meth:`record_timeline`): from the manifest's
        ``timelines``, else (a rebuilt manifest) by following the parents of its last chunk back to chunk 0. Raises
        :class:`RunFolderError` saying what is missing when the run no longer holds that video."""
        m = self.manifest()
        match = TIMELINE_ID_RE.match(tid or "")
        if match is None:
            raise RunFolderError(self.name, f"run {self.name!r}: {tid!r} is not a timeline id (expected "
                                            f"'<frames>f-<the last chunk's digest>', as Extend's run output gives)")
        total, digest16 = int(match[1]), match[2]
        if digest16 == "incomplete":
            raise RunFolderError(self.name, f"run {self.name!r}: the Extend that gave this run could not store all "
                                            f"of its chunks (see its info output), so its video cannot be loaded "
                                            f"from the run; queue it again once the folder can be written")
        entry = m.timelines.get(tid)
        if entry is not None:
            records = [m.chunks.get(f) for f in entry["files"]]
            missing = [f for f, r in zip(entry["files"], records) if r is None]
        else:
            last = [r for r in m.chunks.values() if r.digest.startswith(digest16)]
            records, missing = list(last[:1]), ([] if last else [f"the chunk with digest {digest16}"])
            while records and records[-1].index > 0 and not missing:
                parent = m.chunks.get(records[-1].parent or "")
                if parent is None or parent.index != records[-1].index - 1:
                    missing.append(records[-1].parent or f"chunk {records[-1].index - 1}")
                else:
                    records.append(parent)
            records.reverse()
        if missing:
            raise RunFolderError(self.name, f"run {self.name!r} changed: the video {tid} ({total} frames) that Extend "
                                            f"made needs {missing[0]}, which the run no longer holds (moved aside "
                                            f"after failing verification: see the manifest's problems). Nothing was "
                                            f"loaded; queue that Extend again to make it again")
        return records, frames_of(records, total)

    def timelines(self, m: Manifest | None = None) -> list[dict[str, Any]]:
        """The recorded timelines, oldest first, for the readout and Load Run's list: id, ``ref`` (what the run
        output gives), base seed (text: JavaScript numbers lose digits past 2**53), frames, chunks, when made, the
        prompt, whether it is the run's current timeline, and a short ``label``."""
        m = m or self.manifest()
        out = []
        for tid, e in sorted(m.timelines.items(), key=lambda kv: kv[1].get("made", "")):
            seed = e.get("seed")
            made = str(e.get("made", ""))[:16].replace("T", " ")
            out.append({"id": tid, "ref": f"{self.name}@{tid}", "seed": None if seed is None else str(seed),
                        "total_frames": e.get("total_frames"), "chunks": len(e.get("files", [])), "made": e.get("made"),
                        "prompt": e.get("prompt"),
                        "current": e.get("files") == m.timeline.files
                        and m.timeline.total_frames in (0, e.get("total_frames")),
                        "label": f"seed {seed}, {e.get('total_frames')} frames, {made} UTC"})
        return out

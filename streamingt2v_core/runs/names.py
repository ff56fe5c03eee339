"""Run names: what a run folder may be called, the "auto" names, and ``<run name>@<timeline id>`` references
(Extend's ``run`` output), with errors that name ``run_name``, what is wrong and what is allowed."""
from __future__ import annotations

import re
import time
import unicodedata

from .errors import RunFolderError

__all__ = ["RESERVED_NAMES", "slugify", "auto_run_name", "name_problem", "validate_run_name", "split_ref",
           "timeline_id", "TIMELINE_ID_RE"]

#: Words the nodes read as something else (Load Run: the most recent run; Extend: find or start the run of this
#: first chunk), so no run may be called that (in any case: some file systems ignore case).
RESERVED_NAMES = ("latest", "auto")
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
#: ``<run name>@<timeline id>``; a timeline id is ``<total frames>f-<the last chunk's digest[:16]>``.
TIMELINE_ID_RE = re.compile(r"^(\d+)f-([0-9a-z]{1,16})$")


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


def name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > 100 or len(name.encode("utf-8")) > 200:
        return f"it has {len(name)} characters ({len(name.encode('utf-8'))} bytes in UTF-8), more than 100 (200)"
    for c in name:
        if unicodedata.category(c)[0] not in "LMN" and c not in " ._-":
            what = unicodedata.name(c, "").lower() or f"U+{ord(c):04X}"
            return f"{c!r} ({what}) is not allowed"
    if unicodedata.category(name[0])[0] not in "LN":
        return f"it starts with {name[0]!r}"
    if name.endswith((" ", ".")):
        return f"it ends with {name[-1]!r}"
    if name.lower() in RESERVED_NAMES:
        return (f"{name!r} is a reserved word (StreamingT2V Load Run reads 'latest' as the most recently updated "
                f"run, Extend reads 'auto' as the run of the same first chunk)")
    if name.split(".")[0].strip().lower() in _WINDOWS_DEVICES:
        return f"{name!r} is a device name on Windows"
    return None


def validate_run_name(name: str) -> str:
    """A run name usable as one folder name, NFC-normalised (as macOS and Linux then agree); raises
    :class:`RunFolderError` naming ``run_name``, what is wrong and which characters are allowed."""
    problem = name_problem(unicodedata.normalize("NFC", name)) if isinstance(name, str) else "it is not text"
    if problem:
        raise RunFolderError(str(name), f"run_name: {name!r} cannot be a run name: {problem}. A run name is 1-100 "
                                        f"letters (of any script), digits, '.', '_', '-' or spaces, starting with a "
                                        f"letter or digit, not ending with '.' or a space, and not "
                                        f"{' or '.join(repr(w) for w in RESERVED_NAMES)}")
    return unicodedata.normalize("NFC", name)


def split_ref(text: str) -> tuple[str, str | None]:
    """``"<run name>@<timeline id>"`` (Extend's ``run`` output; a Load Run list entry may follow it with a label in
    parentheses) -> (run name, timeline id); a plain run name -> (name, None). Run names hold no '@'."""
    text = (text or "").strip()
    if "@" not in text:
        return text, None
    name, _, tid = text.partition("@")
    return name.strip(), tid.split(" (", 1)[0].strip()


def timeline_id(total_frames: int, last_digest: str | None) -> str:
    """The id of the timeline of ``total_frames`` frames that ends with the chunk of ``last_digest`` (None: a
    timeline whose chunks were not all stored)."""
    return f"{int(total_frames)}f-{last_digest[:16] if last_digest else 'incomplete'}"

"""Run identity and recovery: names, timelines (what Extend's ``run`` output names), manifests rebuilt from the
chunk files, read-only runs, and the cheap check of a chunk file whose frames come from memory."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess

import pytest
import torch

from streamingt2v_core.runs import (ChunkCorruptError, ChunkWriteError, ManifestDamagedError, RunFolderError,
                                    RunStore, files, split_ref)
from streamingt2v_core.runs import store as store_module

from tests.core.runs.test_store import BASE, IDENTITY, H, W, fill, frames, new_run, snapshot


def records_by_file(run):
    return {name: (r.index, r.digest, r.parent, r.frames, r.shape, r.sha256, r.size, r.seed, r.prompt, r.settings)
            for name, r in run.manifest().chunks.items()}


# ------------------------------------------------------------------------------------------------ names

@pytest.mark.parametrize("name", ["Straße am Abend", "日本の猫", "क्या बात", "Ünïcödé-run_2.b", "x" * 100])
def test_run_names_of_any_script_are_accepted(tmp_path, name):
    run = new_run(tmp_path, name)
    assert run.name == name and os.path.isdir(run.folder)
    assert RunStore(tmp_path).run_names() == [name]


@pytest.mark.parametrize("name,why", [
    ("latest", "reserved word"), ("Auto", "reserved word"), ("LATEST", "reserved word"),
    ("a@b", "'@' (commercial at) is not allowed"), ("a/b", "'/' (solidus) is not allowed"),
    ("nul", "device name"), ("-x", "starts with '-'"), ("x" * 101, "more than 100"),
])
def test_unusable_names_are_refused_saying_why_and_what_is_allowed(tmp_path, name, why):
    with pytest.raises(RunFolderError) as err:
        new_run(tmp_path, name)
    message = str(err.value)
    assert message.startswith("run_name:") and why in message
    assert "letters (of any script), digits, '.', '_', '-' or spaces" in message and "not letters" not in message
    assert not os.listdir(tmp_path)


def test_a_run_ref_splits_into_name_and_timeline():
    assert split_ref("my run@40f-0123456789abcdef") == ("my run", "40f-0123456789abcdef")
    assert split_ref("my run@40f-0123456789abcdef (seed 3, 40 frames, 2026-12-07 03:10 UTC)")[1] == \
        "40f-0123456789abcdef"
    assert split_ref(" plain ") == ("plain", None)


# ------------------------------------------------------------------------------------------------ messages

def test_another_first_chunk_with_the_same_prompt_and_size_is_told_apart(tmp_path):
    new_run(tmp_path)
    with pytest.raises(RunFolderError) as err:
        new_run(tmp_path, identity="b" * 64)
    message = str(err.value)
    # Before: "(prompt 'a cat walks', width 5, ...; this graph: prompt 'a cat walks', width 5, ...)": the same twice.
    assert "other frames" in message and "aaaaaaaa" in message and "bbbbbbbb" in message
    assert message.count("'a cat walks'") == 1


@pytest.mark.parametrize("broken,field_name", [
    ({"chunks": []}, "'chunks' should be an object"),
    ({"timeline": {"total_frames": "40", "first_chunk": 16, "files": []}}, "'timeline.total_frames' should be an "
                                                                           "integer"),
    ({"frame_shape": None}, "'frame_shape' should be a list"),
])
def test_a_malformed_manifest_names_the_field_not_a_python_error(tmp_path, broken, field_name):
    run = new_run(tmp_path)
    data = json.loads(open(run.manifest_path).read())
    data.update(broken)
    open(run.manifest_path, "w").write(json.dumps(data))
    with pytest.raises(ManifestDamagedError) as err:
        RunStore(tmp_path).open("run-a")  # no chunk files: nothing to rebuild from
    assert field_name in str(err.value) and "attribute" not in str(err.value)


# ------------------------------------------------------------------------------------------------ timelines

def test_each_timeline_of_a_run_stays_loadable_by_its_id(tmp_path):
    run = new_run(tmp_path)
    a = fill(run, 3, tag="a")  # one video: seed 1
    tid_a = run.record_timeline([r.file for r in a], 40, 1, "a cat walks")
    b1, _ = run.write(1, "b1", frames(50), parent=a[0].file, frame_range=[16, 24], seed=9)
    b2, _ = run.write(2, "b2", frames(51), parent=b1.file, frame_range=[24, 32], seed=9)
    tid_b = run.record_timeline([a[0].file, b1.file, b2.file], 30, 2, "a cat walks")
    assert tid_a != tid_b and run.manifest().timeline.files == [a[0].file, b1.file, b2.file]
    records, n = run.resolve(tid_a)
    assert [r.file for r in records] == [r.file for r in a] and n == 40
    records, n = run.resolve(tid_b)
    assert [r.file for r in records] == [a[0].file, b1.file, b2.file] and n == 30
    listed = {t["id"]: t for t in run.timelines()}
    assert listed[tid_a]["seed"] == "1" and listed[tid_b]["seed"] == "2" and listed[tid_b]["current"]
    assert not listed[tid_a]["current"] and listed[tid_a]["ref"] == f"run-a@{tid_a}" and "seed 1" in \
        listed[tid_a]["label"]
    assert RunStore(tmp_path).list_runs()[0].timelines == run.timelines()
    # Without the recorded entry (e.g. a rebuilt manifest) the id alone finds the chain through the parents.
    data = json.loads(open(run.manifest_path).read())
    data["timelines"] = {}
    open(run.manifest_path, "w").write(json.dumps(data))
    assert [r.file for r in run.resolve(tid_a)[0]] == [r.file for r in a]
    # A chunk of that video moved aside: the refusal says the run changed and what is missing.
    os.remove(os.path.join(run.chunks_dir, a[2].file))
    with pytest.raises(ChunkCorruptError):
        run.read(a[2])
    with pytest.raises(RunFolderError) as err:
        run.resolve(tid_a)
    assert "changed" in str(err.value) and a[2].file in str(err.value)
    with pytest.raises(RunFolderError, match="could not store all"):
        run.resolve("40f-incomplete")


# ------------------------------------------------------------------------------------------------ rebuild

@pytest.mark.parametrize("damage", ["cut in half", "missing", "field malformed"])
def test_a_damaged_or_missing_manifest_is_rebuilt_from_the_chunk_files(tmp_path, damage):
    run = new_run(tmp_path)
    run.begin(40, 16, 16, 8, 4)
    written = fill(run, 3)
    run.record_timeline([r.file for r in written], 40, 1)
    before = records_by_file(run)
    timeline = run.manifest().timeline
    text = open(run.manifest_path).read()
    if damage == "cut in half":
        open(run.manifest_path, "w").write(text[: len(text) // 2])
    elif damage == "missing":
        os.remove(run.manifest_path)
    else:
        open(run.manifest_path, "w").write(text.replace('"identity"', '"identity_"'))
    damaged = open(run.manifest_path, "rb").read() if os.path.exists(run.manifest_path) else None

    # Read (listing, Load Run): rebuilt in memory, nothing written.
    store = RunStore(tmp_path)
    reader = store.open("run-a")
    m = reader.manifest()
    assert m.rebuilt and "rebuilt from 4 verified chunk files (chunks 0-3)" in m.rebuilt
    assert records_by_file(reader) == before and m.timeline == timeline and m.identity == IDENTITY
    assert m.base == BASE and m.frame_shape == [H, W, 3]
    assert [info.note for info in store.list_runs()] == [m.rebuilt] and store.find_identity(IDENTITY) == "run-a"
    assert (open(run.manifest_path, "rb").read() if damaged is not None else None) == damaged

    # Open for extending: the rebuilt manifest is written, the damaged file kept aside, the report in notes.
    opened = new_run(tmp_path)
    assert opened.notes and "rebuilt" in opened.notes[0] and "written" in opened.notes[0]
    assert records_by_file(opened) == before and not opened.manifest().rebuilt
    kept = [n for n in os.listdir(run.folder) if n.startswith("manifest.json.damaged-")]
    assert len(kept) == (1 if damaged is not None else 0)
    if damaged is not None:
        assert open(os.path.join(run.folder, kept[0]), "rb").read() == damaged
    assert opened.manifest().problems[-1]["file"] == "manifest.json"
    for record in opened.manifest().timeline_records():
        opened.read(record, [H, W, 3])


def test_a_rebuild_uses_only_chunk_files_that_verify_and_says_which_it_left(tmp_path):
    run = new_run(tmp_path)
    written = fill(run, 3)
    path = os.path.join(run.chunks_dir, written[3].file)
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0x40  # a bit flipped in the frames: still a readable safetensors file
    open(path, "wb").write(bytes(data))
    os.remove(run.manifest_path)
    m = RunStore(tmp_path).open("run-a").manifest()
    assert [r.index for r in m.timeline_records()] == [0, 1, 2]
    assert f"{written[3].file} its frames do not match their checksum" in m.rebuilt


def test_a_folder_with_only_foreign_or_unverifiable_chunk_files_is_not_rebuilt(tmp_path):
    folder = tmp_path / "run-a" / "chunks"
    folder.mkdir(parents=True)
    (folder / "chunk_00000_0123456789abcdef.safetensors").write_bytes(b"precious")
    (tmp_path / "run-a" / "manifest.json").write_text("{cut")
    before = snapshot(tmp_path / "run-a")
    with pytest.raises(ManifestDamagedError) as err:
        new_run(tmp_path)
    assert "not valid JSON" in str(err.value) and "cannot be rebuilt" in str(err.value)
    assert {k: v for k, v in snapshot(tmp_path / "run-a").items() if k != ".lock"} == before


# ------------------------------------------------------------------------------------------------ read-only

def _read_only(code=errno.EROFS):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@contextlib.contextmanager
def read_only_folder(folder, monkeypatch):
    """The folder read-only: a real read-only bind mount where this process may make one (root), else the OS calls
    that write answering EROFS."""
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
        if mounted and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                                      capture_output=True).returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            mounted = False
    if not mounted:
        monkeypatch.setattr(files, "_open_new", _read_only())
        monkeypatch.setattr(files, "_open_lock", _read_only())
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        monkeypatch.undo()


def test_a_read_only_run_is_read_and_resumed_and_only_a_new_chunk_is_refused(tmp_path, monkeypatch):
    run = new_run(tmp_path)
    run.begin(40, 16, 16, 8, 4)
    written = fill(run, 3)
    before = snapshot(run.folder)
    with read_only_folder(run.folder, monkeypatch):
        opened = new_run(tmp_path)  # before: "cannot create or open the run folder (Read-only file system)"
        assert opened.read_only and "Read-only file system" in opened.read_only
        opened.begin(40, 16, 16, 8, 4)  # the same plan: nothing to write
        opened.begin(48, 16, 16, 8, 5)  # another plan: not recorded (read-only), not an error either
        assert not opened.place(3, written[3])
        assert opened.find(2, "x2").file == written[2].file
        opened.check(written[2])
        assert torch.equal(opened.read(written[3], [H, W, 3]), frames(3))
        with pytest.raises(ChunkWriteError) as err:
            opened.write(4, "x4", frames(4), parent=written[3].file, frame_range=[48, 56])
        assert "read-only" in str(err.value) and "new" in str(err.value) and "chunk 4" in str(err.value)
        assert opened.record_timeline([r.file for r in written], 40, 1).startswith("40f-")
        assert [r.file for r in RunStore(tmp_path).open("run-a").manifest().timeline_records()] == \
            [r.file for r in written]
    assert snapshot(run.folder) == before


# ------------------------------------------------------------------------------------------------ memory reuse

def test_a_chunk_file_is_checked_cheaply_and_fully_once_it_changed(tmp_path, monkeypatch):
    run = new_run(tmp_path)
    record = fill(run, 1)[1]
    full = []
    real = store_module.Run._check
    monkeypatch.setattr(store_module.Run, "_check", lambda self, r, s: full.append(r.file) or real(self, r, s))
    run.check(record)
    assert full == []  # written by this process: size and mtime known, nothing read
    path = os.path.join(run.chunks_dir, record.file)
    data = bytearray(open(path, "rb").read())
    data[-2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(ChunkCorruptError) as err:
        run.check(record)
    assert full and err.value.moved_to and not os.path.exists(path)

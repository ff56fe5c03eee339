"""The run store on disk: records, verification, moving bad files aside, foreign folders, names, failures."""
from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest
import torch

from streamingt2v_core.runs import (ChunkCorruptError, ChunkWriteError, RunFolderError, RunStore, RunStoreError,
                                    Timeline, chunk_file_name, files, video_frames)
from streamingt2v_core.runs.manifest import FORMAT, VERSION
from streamingt2v_core.runs.chunkfile import chunk_metadata
from streamingt2v_core.runs.store import encode_chunk

H, W = 4, 5
IDENTITY = "a" * 64
BASE = {"prompt": "a cat walks", "width": W, "height": H, "first_chunk_frames": 16}


def frames(seed: int, n: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def new_run(tmp_path, name="run-a", identity=IDENTITY):
    return RunStore(tmp_path).open_or_create(name, identity, BASE, [H, W, 3])


def fill(run, n_chunks=3, tag="x"):
    """Chunk 0 (16 frames) and chunks 1..n (8 frames), chained; returns the records."""
    records = [run.write(0, f"{tag}0", frames(0, 16), parent=None, frame_range=[0, 16])[0]]
    for i in range(1, n_chunks + 1):
        rec, _ = run.write(i, f"{tag}{i}", frames(i), parent=records[-1].file, frame_range=[8 + 8 * i, 16 + 8 * i],
                           seed=1000 + i, prompt="a cat walks", settings={"steps": 2, "cfg": 7.5}, seconds=0.5)
        records.append(rec)
    return records


def snapshot(folder) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = f.read()
    return out


def test_chunks_round_trip_with_their_records(tmp_path):
    run = new_run(tmp_path)
    records = fill(run)
    m = run.manifest()
    assert [r.file for r in m.timeline_records()] == [r.file for r in records]
    for rec, i in zip(records, range(4)):
        path = os.path.join(run.chunks_dir, rec.file)
        data = open(path, "rb").read()
        assert rec.file == chunk_file_name(i, rec.digest)
        assert rec.sha256 == hashlib.sha256(data).hexdigest() and rec.size == len(data)
        assert torch.equal(run.read(rec, [H, W, 3]), frames(i, 16 if i == 0 else 8))
    assert records[2].seed == 1002 and records[2].prompt == "a cat walks" and records[2].settings["cfg"] == 7.5
    assert records[2].parent == records[1].file and records[2].frames == [24, 32]
    raw = json.loads(open(run.manifest_path).read())
    assert raw["format"] == FORMAT and raw["version"] == VERSION and raw["identity"] == IDENTITY
    assert not [n for n in os.listdir(run.chunks_dir) if n.endswith(".tmp")]


def test_several_versions_of_a_chunk_sit_side_by_side_and_the_timeline_follows(tmp_path):
    run = new_run(tmp_path)
    old = fill(run)
    reroll, _ = run.write(2, "reroll2", frames(99), parent=old[1].file, frame_range=[24, 32], seed=7)
    m = run.manifest()
    assert m.timeline.files == [old[0].file, old[1].file, reroll.file]  # chunk 3 depended on the old chunk 2
    assert {old[2].file, old[3].file, reroll.file} <= set(m.chunks) and len(m.versions(2)) == 2
    # back to the old seed: the old file is found again and put back
    assert run.find(2, "x2").file == old[2].file
    assert run.place(2, old[2]) and run.place(3, old[3])
    assert run.manifest().timeline.files == [r.file for r in old]


def test_timeline_place_keeps_one_chain():
    t = Timeline(files=["c0", "c1", "c2"])
    assert not t.place(1, "c1", "c0")
    assert t.place(1, "d1", "c0") and t.files == ["c0", "d1"]
    assert not t.place(3, "e3", "d2")  # a gap: not placed
    assert not t.place(2, "e2", "c1") and t.files == ["c0", "d1"]  # conditioned on a chunk no longer there
    assert t.place(2, "e2", "d1") and t.files == ["c0", "d1", "e2"]


@pytest.mark.parametrize("tamper", ["altered bytes", "valid tensor swapped in", "truncated", "missing"])
def test_a_tampered_chunk_is_detected_reported_and_moved_aside(tmp_path, tamper):
    run = new_run(tmp_path)
    records = fill(run)
    rec = records[2]
    path = os.path.join(run.chunks_dir, rec.file)
    original = open(path, "rb").read()
    if tamper == "altered bytes":
        data = bytearray(original)
        data[-5] ^= 0xFF  # inside the frames: still a readable safetensors file
        open(path, "wb").write(bytes(data))
    elif tamper == "valid tensor swapped in":
        meta = {k: v for k, v in chunk_metadata(original).items() if k not in ("format", "index", "digest",
                                                                               "frames_sha256")}
        swapped = encode_chunk(frames(1234), 2, rec.digest, meta)  # right shape, dtype, metadata
        assert len(swapped) == len(original)
        open(path, "wb").write(swapped)
    elif tamper == "truncated":
        open(path, "wb").write(original[: len(original) // 2])
    else:
        os.remove(path)
    bad = open(path, "rb").read() if os.path.exists(path) else None
    with pytest.raises(ChunkCorruptError) as err:
        run.read(rec, [H, W, 3])
    message = str(err.value)
    assert "'run-a'" in message and "chunk 2" in message and err.value.index == 2
    m = run.manifest()
    assert rec.file not in m.chunks and m.timeline.files == [records[0].file, records[1].file]
    assert m.problems[-1]["index"] == 2 and m.problems[-1]["file"] == rec.file
    if bad is None:
        assert err.value.moved_to is None and "missing" in message
    else:
        moved = err.value.moved_to
        assert moved and ".corrupt-" in moved and open(moved, "rb").read() == bad  # kept, never deleted
        assert not os.path.exists(path)
    # the other chunks are untouched and still verify
    for other in (records[1], records[3]):
        assert torch.equal(run.read(other, [H, W, 3]), frames(other.index))


def test_a_chunk_of_the_wrong_frame_size_is_not_used(tmp_path):
    run = new_run(tmp_path)
    rec = fill(run, 1)[1]
    with pytest.raises(ChunkCorruptError, match="this run needs"):
        run.read(rec, [H + 1, W, 3])


def test_a_foreign_folder_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(folder)
    with pytest.raises(RunFolderError) as err:
        new_run(tmp_path, "holiday")
    assert "run_name" in str(err.value) and "not a StreamingT2V run" in str(err.value)
    assert snapshot(folder) == before and sorted(os.listdir(folder)) == ["notes.txt"]


def test_a_run_another_process_is_creating_is_not_taken_for_a_foreign_folder(tmp_path):
    folder = tmp_path / "run-a"
    (folder / "chunks").mkdir(parents=True)
    (folder / ".lock").write_bytes(b"")
    (folder / ".manifest.json.4242-1-1.tmp").write_bytes(b"{half")  # its manifest, being written
    assert new_run(tmp_path).manifest().identity == IDENTITY


@pytest.mark.parametrize("manifest,words", [
    ({"format": "something-else", "version": 1}, "not a StreamingT2V run manifest"),
    ({"format": FORMAT, "version": 0}, "older version"),
    ({"format": FORMAT, "version": VERSION + 1}, "newer version"),
    ("{not json", "not valid JSON"),
    ({"format": FORMAT, "version": VERSION, "chunks": {}}, "damaged"),
])
def test_foreign_old_new_or_damaged_manifests_are_reported(tmp_path, manifest, words):
    folder = tmp_path / "old-run"
    (folder / "chunks").mkdir(parents=True)
    (folder / "chunks" / "chunk_00001_x.safetensors").write_bytes(b"precious")
    (folder / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    before = snapshot(folder)
    with pytest.raises(RunFolderError) as err:
        new_run(tmp_path, "old-run")
    assert words in str(err.value) and "'old-run'" in str(err.value)
    with pytest.raises(RunFolderError):
        RunStore(tmp_path).open("old-run")
    assert {k: v for k, v in snapshot(folder).items() if k != ".lock"} == before


def test_a_name_used_by_another_first_chunk_is_refused(tmp_path):
    run = new_run(tmp_path)
    fill(run, 1)
    before = snapshot(run.folder)
    with pytest.raises(RunFolderError) as err:
        new_run(tmp_path, identity="b" * 64)
    assert str(err.value).startswith("run_name:") and "'run-a'" in str(err.value) and "overwritten" in str(err.value)
    assert snapshot(run.folder) == before


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x" * 101, "trailing.", "tab\tname"])
def test_unusable_run_names_are_refused(tmp_path, name):
    with pytest.raises(RunFolderError, match="run_name"):
        new_run(tmp_path, name)


def test_auto_names_are_readable_and_find_the_run_again_on_another_day(tmp_path):
    store = RunStore(tmp_path)
    run = store.open_auto(IDENTITY, "A cat walks on the street, at night!", BASE, [H, W, 3], date="2026-12-01")
    assert run.name == f"2026-12-01_a-cat-walks-on-the-street-at-night_{IDENTITY[:8]}"
    fill(run, 1)
    again = store.open_auto(IDENTITY, "whatever the prompt", BASE, [H, W, 3], date="2026-12-05")
    assert again.name == run.name
    other = store.open_auto("c" * 64, "A cat walks on the street, at night!", BASE, [H, W, 3], date="2026-12-05")
    assert other.name != run.name and other.name.endswith("cccccccc")
    assert store.latest() == other.name
    assert {r.name for r in store.list_runs()} == {run.name, other.name}
    assert video_frames(run.manifest()) == 24


def _fail_with(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code,where", [(errno.ENOSPC, "_write_all"), (errno.EROFS, "_open_new"),
                                        (errno.EACCES, "_open_new")])
def test_a_full_or_read_only_disk_names_run_and_chunk_and_deletes_nothing(tmp_path, monkeypatch, code, where):
    run = new_run(tmp_path)
    records = fill(run, 2)
    before = snapshot(run.folder)
    monkeypatch.setattr(files, where, _fail_with(code))
    with pytest.raises(ChunkWriteError) as err:
        run.write(3, "x3", frames(3), parent=records[-1].file, frame_range=[32, 40])
    assert err.value.index == 3 and err.value.errno == code
    assert "'run-a'" in str(err.value) and "chunk 3" in str(err.value) and os.strerror(code) in str(err.value)
    assert snapshot(run.folder) == before  # nothing written, nothing removed, no temp file left
    monkeypatch.undo()
    assert run.write(3, "x3", frames(3), parent=records[-1].file, frame_range=[32, 40])[0].index == 3


def test_a_run_folder_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_open_new", _fail_with(errno.EROFS))
    with pytest.raises(RunStoreError) as err:
        new_run(tmp_path, "fresh")
    assert "'fresh'" in str(err.value) and "Read-only file system" in str(err.value)


def test_another_writer_of_the_same_chunk_wins_and_its_frames_are_used(tmp_path):
    run = new_run(tmp_path)
    first = fill(run, 1)
    theirs = frames(50)
    RunStore(tmp_path).open("run-a").write(2, "x2", theirs, parent=first[1].file, frame_range=[24, 32])
    record, used = run.write(2, "x2", frames(51), parent=first[1].file, frame_range=[24, 32])
    assert torch.equal(used, theirs) and torch.equal(run.read(record, [H, W, 3]), theirs)


def test_the_same_chunk_always_encodes_to_the_same_bytes():
    # safetensors orders several metadata entries at random; chunk files must be content-addressed
    encoded = {hashlib.sha256(encode_chunk(frames(3), 7, "d" * 64)).hexdigest() for _ in range(40)}
    assert len(encoded) == 1

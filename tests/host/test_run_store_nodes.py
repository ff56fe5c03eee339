"""The run store through the real host: resume from disk, tampered chunks, re-roll, regenerate-from-N, Load Run.

Tiny random extender and host encoders (scripts/demo_weights_tiny_encoders.py), 64x64 frames, one sampling step per chunk:
the frames are noise, but every path (host sampler, VAE, run store on disk, verification) is the real one. Where
the same graph is queued again, the host's output cache is emptied first, as a restart would.
"""
from __future__ import annotations

import copy
import errno
import json
import os
import uuid

import pytest
import torch
from harness import PromptExecutionError, PromptValidationError
from test_extend_nodes import ChunkCounter, SIZE, extend_graph, pack_module

from streamingt2v_core.runs import RunStore, files
from streamingt2v_core.runs.manifest import VERSION
from streamingt2v_core.runs.store import encode_chunk


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def store_of(comfy_host) -> RunStore:
    return RunStore(pack_module(comfy_host, "runs").runs_root())


def forget_memory(comfy_host) -> None:
    """What a restart does: the host's output cache and our in-memory fast path are empty."""
    comfy_host.executor.reset()
    pack_module(comfy_host, "extend").CHUNK_CACHE.clear()


def error_of(run_prompt, api) -> str:
    with pytest.raises((PromptExecutionError, PromptValidationError)) as err:
        run_prompt(api)
    return str(err.value)


def test_runs_live_in_the_output_folder_unless_extra_model_paths_say_otherwise(comfy_host, monkeypatch, tmp_path):
    runs = pack_module(comfy_host, "runs")
    assert runs.runs_root() == os.path.join(comfy_host.folder_paths.get_output_directory(), "StreamingT2V", "runs")
    monkeypatch.setitem(comfy_host.folder_paths.folder_names_and_paths, "streamingt2v_runs", ([str(tmp_path)], set()))
    assert runs.runs_root() == str(tmp_path)


def test_extend_outputs_and_seed_control_are_named_for_the_ui(comfy_host):
    info = comfy_host.node_info("StreamingT2VExtend")
    assert info["output_name"] == ["frames", "info", "run"]
    seed = info["input"]["required"]["seed"][1]
    assert seed["control_after_generate"] is True and "fixed" in seed["tooltip"] and "resume" in seed["tooltip"]
    load = comfy_host.node_info("StreamingT2VLoadRun")
    assert load["output_name"] == ["frames", "video", "manifest"] and load["output"] == ["IMAGE", "VIDEO", "STRING"]


def test_resume_tamper_reroll_regenerate_and_load_run(comfy_host, host_weights, run_prompt, monkeypatch):
    extend = pack_module(comfy_host, "extend")
    runs = pack_module(comfy_host, "runs")
    name = unique("store")
    api = extend_graph(total_frames=40, seed=21, disk_cache=True, run_name=name)  # chunks 1..3
    counter = ChunkCounter(monkeypatch, comfy_host)

    # 1. A first run: every chunk sampled and stored, each with its seed.
    out = run_prompt(api)
    reference, info = out["9"][0], out["9"][1]
    assert counter.calls == 3 and f"run '{name}'" in info
    store = store_of(comfy_host)
    run = store.open(name)
    m = run.manifest()
    timeline = m.timeline_records()
    assert [r.index for r in timeline] == [0, 1, 2, 3]
    seeds = [r.seed for r in timeline[1:]]
    assert seeds == [extend.chunk_seed(21, i) for i in (1, 2, 3)]
    for r in timeline[1:]:
        assert f"chunk {r.index}: frames {r.frames[0]}-{r.frames[1] - 1}, seed {r.seed}, sampled" in info
        assert r.prompt == "a cat walks on the street" and r.settings["steps"] == 1 and r.seconds > 0

    # 2. A restart (memory gone): chunk 2's bytes altered, chunk 3 replaced by another valid tensor of the right
    #    shape. Both are detected, reported, moved aside (not deleted) and sampled again: the video is unchanged.
    forget_memory(comfy_host)
    c2, c3 = (os.path.join(run.chunks_dir, timeline[i].file) for i in (2, 3))
    data = bytearray(open(c2, "rb").read())
    data[-7] ^= 0x55
    open(c2, "wb").write(bytes(data))
    open(c3, "wb").write(encode_chunk(torch.full((8, SIZE, SIZE, 3), 77, dtype=torch.uint8), 3, timeline[3].digest))
    counter.calls = 0
    out = run_prompt(api)
    info = out["9"][1]
    assert counter.calls == 2 and torch.equal(out["9"][0], reference)
    assert "chunk 1: frames 16-23, seed" in info and "reused (run store)" in info
    for i in (2, 3):
        assert f"run '{name}', chunk {i}: stored chunk failed verification" in info
    moved = [n for n in os.listdir(run.chunks_dir) if ".corrupt-" in n]
    assert len(moved) == 2
    assert open(os.path.join(run.chunks_dir, next(n for n in moved if n.startswith(timeline[2].file))), "rb").read() == bytes(data)
    assert [p["index"] for p in run.manifest().problems] == [2, 3]

    # 3. Re-roll chunk 2: chunk 1 reused byte for byte, chunk 2 new, chunk 3 made again (its conditioning changed).
    counter.calls = 0
    reroll = copy.deepcopy(api)
    reroll["9"]["inputs"]["chunk_seeds"] = "2: 777"
    out = run_prompt(reroll)
    video = out["9"][0]
    assert counter.calls == 2
    assert torch.equal(video[:24], reference[:24])
    assert not torch.equal(video[24:32], reference[24:32]) and not torch.equal(video[32:], reference[32:])
    assert "chunk 2: frames 24-31, seed 777, sampled" in out["9"][1]
    m = run.manifest()
    assert sorted(r.seed for r in m.versions(2)) == sorted([777, seeds[1]])
    assert m.timeline_records()[2].seed == 777

    # 4. Back to the old seed (pinned by its number from the info output): nothing sampled, the old files are used.
    counter.calls = 0
    pinned = copy.deepcopy(api)
    pinned["9"]["inputs"]["chunk_seeds"] = f"2: {seeds[1]}"
    out = run_prompt(pinned)
    assert counter.calls == 0 and torch.equal(out["9"][0], reference)
    assert [r.file for r in run.manifest().timeline_records()] == [r.file for r in timeline]

    # 5. Regenerate from chunk 2 with a new prompt: chunk 1 kept exactly as stored (although the prompt changed),
    #    chunks 2 and 3 follow the new prompt.
    counter.calls = 0
    regen = copy.deepcopy(api)
    regen["6"]["inputs"]["text"] = "a red car drives at night"
    regen["9"]["inputs"]["regenerate_from"] = 2
    out = run_prompt(regen)
    regenerated, info = out["9"][0], out["9"][1]
    assert counter.calls == 2
    assert torch.equal(regenerated[:24], reference[:24]) and not torch.equal(regenerated[24:], reference[24:])
    assert "chunk 1: frames 16-23, seed" in info and "kept as stored (regenerate_from)" in info
    assert [r.prompt for r in run.manifest().timeline_records()[1:]] == [
        "a cat walks on the street", "a red car drives at night", "a red car drives at night"]

    # 6. Only the last 16 frames in RAM (the video stays in the store): all reused, the tail is the same.
    counter.calls = 0
    tail = copy.deepcopy(regen)
    tail["9"]["inputs"]["frames_output"] = extend.LAST_FRAMES
    out = run_prompt(tail)
    assert counter.calls == 0 and torch.equal(out["9"][0], regenerated[-16:])

    # 7. Load Run: the stored run as IMAGE (bit-identical: EmptyImage colours are exact in uint8), as a file-backed
    #    VIDEO that SaveVideo takes, and the manifest as text.
    load = {
        "30": {"class_type": "StreamingT2VLoadRun", "inputs": {"run_name": name, "fps": 8.0,
                                                               "frames_output": runs.WHOLE_VIDEO}},
        "31": {"class_type": "SaveVideo", "inputs": {"video": ["30", 1], "filename_prefix": f"StreamingT2V/test/{name}",
                                                      "format": "mp4", "codec": "h264"}},
        "32": {"class_type": "PreviewAny", "inputs": {"source": ["30", 2]}},
    }
    out = run_prompt(load)
    frames, video, manifest = out["30"]
    assert torch.equal(frames, regenerated)
    assert video.get_dimensions() == (SIZE, SIZE) and video.get_frame_count() == 40
    assert os.path.dirname(video.get_stream_source()) == run.videos_dir
    components = video.get_components()
    assert components.images.shape == (40, SIZE, SIZE, 3) and float(components.frame_rate) == 8.0
    assert json.loads(manifest)["run_name"] == name
    assert comfy_host.ui_outputs()["31"]["images"], "SaveVideo wrote nothing"

    # 8. The route the web readout asks: the timeline and every stored version with its seed.
    summary = runs.run_summary(name)
    assert summary["exists"] and summary["frames_stored"] == 40 and len(summary["timeline"]["files"]) == 4
    assert {v["seed"] for v in summary["versions"] if v["index"] == 2} >= {"777", str(seeds[1])}
    assert runs.run_summary(unique("none"))["exists"] is False


def test_a_full_disk_mid_run_keeps_the_sampled_chunks_and_says_so(comfy_host, host_weights, run_prompt, monkeypatch):
    name = unique("full")
    api = extend_graph(total_frames=32, seed=4, disk_cache=True, run_name=name)
    ChunkCounter(monkeypatch, comfy_host)
    real_open, real_write, opened = files._open_new, files._write_all, {}

    def open_new(path):
        fd = real_open(path)
        opened[fd] = path
        return fd

    def write_all(fd, data):  # the disk fills up when chunk 1 is written
        if "chunk_00001" in opened.get(fd, ""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    monkeypatch.setattr(files, "_open_new", open_new)
    monkeypatch.setattr(files, "_write_all", write_all)
    out = run_prompt(api)
    video, info = out["9"][0], out["9"][1]
    assert video.shape == (32, SIZE, SIZE, 3) and bool(video.isfinite().all())
    assert f"run '{name}', chunk 1: could not be written to the run store (No space left on device)" in info
    assert "goes on in memory" in info and "chunk 2: frames 24-31" in info
    monkeypatch.undo()
    run = store_of(comfy_host).open(name)
    m = run.manifest()
    assert [r.index for r in m.chunks.values()] == [0] and len(m.timeline.files) == 1
    assert os.listdir(run.chunks_dir) == [m.timeline.files[0]]  # no half-written file left behind


def test_bad_run_input_is_refused_before_any_sampling(comfy_host, host_weights, run_prompt, monkeypatch, tmp_path):
    counter = ChunkCounter(monkeypatch, comfy_host)
    store = store_of(comfy_host)
    os.makedirs(store.root, exist_ok=True)

    foreign = unique("foreign")
    os.makedirs(os.path.join(store.root, foreign))
    open(os.path.join(store.root, foreign, "holiday.mp4"), "wb").write(b"not ours")
    message = error_of(run_prompt, extend_graph(disk_cache=True, run_name=foreign))
    assert "run_name" in message and "not a StreamingT2V run" in message
    assert os.listdir(os.path.join(store.root, foreign)) == ["holiday.mp4"]

    old = unique("old")
    os.makedirs(os.path.join(store.root, old))
    with open(os.path.join(store.root, old, "manifest.json"), "w") as f:
        json.dump({"format": "streamingt2v-run", "version": VERSION - 1, "chunks": {}}, f)
    message = error_of(run_prompt, extend_graph(disk_cache=True, run_name=old))
    assert "run_name" in message and "older version" in message and old in message

    other = unique("other")
    store.open_or_create(other, "e" * 64, {"prompt": "another video", "width": SIZE, "height": SIZE}, [SIZE, SIZE, 3])
    message = error_of(run_prompt, extend_graph(disk_cache=True, run_name=other))
    assert "run_name" in message and "another first chunk" in message and "overwritten" in message

    for inputs, words in (
        ({"chunk_seeds": "two: 5"}, "chunk_seeds"),
        ({"chunk_seeds": "9: 5"}, "chunk_seeds: chunk 9 is beyond"),
        ({"regenerate_from": 3, "run_name": unique("empty")}, "regenerate_from"),
        ({"frames_output": "last 16 frames (the video stays in the run store)", "disk_cache": False}, "frames_output"),
        ({"run_name": "../escape"}, "run_name"),
    ):
        message = error_of(run_prompt, extend_graph(**{"disk_cache": True, **inputs}))
        assert words in message, (inputs, message)

    # RAM: the IMAGE output of total_frames is estimated against available memory before any sampling
    import streamingt2v_core.runs.memory as memory

    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 64 << 20)
    message = error_of(run_prompt, extend_graph(total_frames=4000, disk_cache=False))
    assert "total_frames" in message and "StreamingT2V Load Run" in message and "file-backed" in message
    monkeypatch.undo()

    # a read-only output folder: a clear error naming the run, nothing sampled
    counter = ChunkCounter(monkeypatch, comfy_host)
    monkeypatch.setattr(files, "_open_new", lambda path: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    message = error_of(run_prompt, extend_graph(disk_cache=True, run_name=unique("readonly")))
    assert "run_name" in message and "Read-only file system" in message
    assert counter.calls == 0


def load_run_graph(name: str, frames_output: str = "whole video") -> dict:
    return {"1": {"class_type": "StreamingT2VLoadRun", "inputs": {"run_name": name, "fps": 8.0,
                                                                  "frames_output": frames_output}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}


def test_load_run_refuses_ram_it_lacks_gives_the_video_and_names_a_missing_chunk(comfy_host, host_weights, run_prompt,
                                                                                  monkeypatch, tmp_path):
    import streamingt2v_core.runs.memory as memory

    runs = pack_module(comfy_host, "runs")
    # A runs folder of its own (extra_model_paths' streamingt2v_runs does the same for users): the run this test
    # breaks is never the session's "latest".
    monkeypatch.setattr(runs, "runs_root", lambda: str(tmp_path / "runs"))
    name = unique("load")
    ChunkCounter(monkeypatch, comfy_host)
    video = run_prompt(extend_graph(total_frames=24, seed=8, disk_cache=True, run_name=name))["9"][0]

    # Not enough RAM for the IMAGE: refused before reading, pointing at the file-backed video output...
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 1 << 10)
    message = error_of(run_prompt, load_run_graph(name))
    assert "frames_output" in message and name in message and "file-backed" in message
    # ...which works for any length: the IMAGE is then the first frame only.
    frames, loaded, _ = run_prompt(load_run_graph(name, runs.FIRST_FRAME))["1"]
    assert frames.shape == (1, SIZE, SIZE, 3) and torch.equal(frames[0], video[0])
    assert loaded.get_frame_count() == 24
    monkeypatch.undo()

    # A chunk file gone: Load Run names run and chunk and loads nothing.
    monkeypatch.setattr(runs, "runs_root", lambda: str(tmp_path / "runs"))
    ChunkCounter(monkeypatch, comfy_host)
    run = store_of(comfy_host).open(name)
    record = run.manifest().timeline_records()[1]
    os.remove(os.path.join(run.chunks_dir, record.file))
    comfy_host.executor.reset()
    message = error_of(run_prompt, load_run_graph(name))
    assert f"run '{name}', chunk 1" in message and "missing" in message and "StreamingT2V Extend again" in message


def test_a_chunk_that_comes_out_nan_stops_the_run_naming_it_and_keeps_the_chunks_before(comfy_host, host_weights,
                                                                                        run_prompt, monkeypatch):
    extend = pack_module(comfy_host, "extend")
    original = extend._sample_chunk
    calls = {"n": 0}

    def nan_at_chunk_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            cond = args[6]
            return torch.full((16, *cond.shape[1:]), float("nan"))
        return original(*args, **kwargs)

    monkeypatch.setattr(extend, "_sample_chunk", nan_at_chunk_2)
    name = unique("nan")
    message = error_of(run_prompt, extend_graph(total_frames=40, seed=3, disk_cache=True, run_name=name))
    assert f"run '{name}', chunk 2 failed" in message and "NaN" in message and calls["n"] == 2
    run = store_of(comfy_host).open(name)
    assert [r.index for r in run.manifest().timeline_records()] == [0, 1]  # chunk 1 kept, nothing of chunk 2


def test_refine_stored_run_workflow_refines_a_stored_run_without_sampling_it(comfy_host, host_weights, object_info,
                                                                              run_prompt, monkeypatch):
    from harness import WORKFLOWS_DIR
    from scripts.workflow_format import workflow_to_api
    from test_workflows import ci_sized

    name = unique("to-refine")
    counter = ChunkCounter(monkeypatch, comfy_host)
    video = run_prompt(extend_graph(total_frames=24, seed=2, disk_cache=True, run_name=name))["9"][0]
    api = ci_sized(workflow_to_api(WORKFLOWS_DIR / "refine_stored_run.json", object_info))
    load = next(k for k, v in api.items() if v["class_type"] == "StreamingT2VLoadRun")
    refine = next(k for k, v in api.items() if v["class_type"] == "StreamingT2VRefine")
    save = next(k for k, v in api.items() if v["class_type"] == "SaveVideo")
    assert api[load]["inputs"]["run_name"] == "latest" and api[refine]["inputs"]["images"] == [load, 0]
    api[load]["inputs"]["run_name"] = name
    counter.calls = 0
    outputs = run_prompt(api)
    assert counter.calls == 0  # the run is read, not sampled
    assert torch.equal(outputs[load][0], video)
    assert outputs[refine][1].get_frame_count() == 24
    assert comfy_host.ui_outputs()[save]["images"], "SaveVideo wrote nothing"


# --------------------------------------------------------------------------------------------------------------------
# Run identity (issue 23): a run output names one video; damaged, read-only and altered runs


def load_ref_graph(ref: str) -> dict:
    """Load Run given Extend's run output (a reference string), as a wire from Extend gives it."""
    graph = load_run_graph("latest")
    graph["1"]["inputs"]["run"] = ref
    return graph


@pytest.fixture()
def own_runs_root(comfy_host, monkeypatch, tmp_path):
    """A runs folder of this test's own (as extra_model_paths' streamingt2v_runs gives users), so "auto" finds only
    this test's runs."""
    runs = pack_module(comfy_host, "runs")
    monkeypatch.setattr(runs, "runs_root", lambda: str(tmp_path / "runs"))
    return RunStore(str(tmp_path / "runs"))


def test_two_extend_nodes_sharing_a_run_name_each_load_their_own_video(comfy_host, host_weights, run_prompt,
                                                                       monkeypatch, own_runs_root):
    runs = pack_module(comfy_host, "runs")
    name = unique("shared")
    ChunkCounter(monkeypatch, comfy_host)
    a = run_prompt(extend_graph(total_frames=32, seed=1, disk_cache=True, run_name=name))["9"]
    b = run_prompt(extend_graph(total_frames=32, seed=2, disk_cache=True, run_name=name))["9"]
    assert a[2].startswith(f"{name}@32f-") and b[2].startswith(f"{name}@32f-") and a[2] != b[2]
    assert not torch.equal(a[0][16:], b[0][16:])
    # Before: the run output was the run's name, so Load Run gave the second node's frames for the first's run.
    for ref, video in ((a[2], a[0]), (b[2], b[0])):
        comfy_host.executor.reset()
        assert torch.equal(run_prompt(load_ref_graph(ref))["1"][0], video)
    # The readout and Load Run's list tell the two apart by base seed and date.
    timelines = runs.run_summary(name)["timelines"]
    assert [(t["ref"], t["seed"], t["current"]) for t in timelines] == [(a[2], "1", False), (b[2], "2", True)]
    assert all(t["made"] and "seed" in t["label"] for t in timelines)
    listed = next(r for r in runs.runs_listing()["runs"] if r["name"] == name)
    assert listed["timelines"] == timelines and listed["chunks"] == 3  # the route's old fields are still there
    options = runs._run_options()
    assert name in options and f"{a[2]} ({timelines[0]['label']})" in options
    comfy_host.executor.reset()
    assert torch.equal(run_prompt(load_ref_graph(f"{a[2]} ({timelines[0]['label']})"))["1"][0], a[0])
    # A chunk of the first video moved aside: Load Run refuses, saying the run changed, instead of loading another.
    run = own_runs_root.open(name)
    first = run.resolve(a[2].split("@")[1])[0]
    os.remove(os.path.join(run.chunks_dir, first[2].file))
    comfy_host.executor.reset()
    with pytest.raises(PromptExecutionError):  # the first read finds the file gone (and records the problem)
        run_prompt(load_ref_graph(a[2]))
    comfy_host.executor.reset()
    message = error_of(run_prompt, load_ref_graph(a[2]))
    assert "run:" in message and "changed" in message and first[2].file in message


def test_reserved_and_unicode_run_names(comfy_host, host_weights, run_prompt, monkeypatch, own_runs_root):
    counter = ChunkCounter(monkeypatch, comfy_host)
    for reserved in ("latest", "Auto"):
        message = error_of(run_prompt, extend_graph(disk_cache=True, run_name=reserved))
        assert "run_name" in message and "reserved word" in message and counter.calls == 0
    assert not os.path.exists(own_runs_root.root) or not os.listdir(own_runs_root.root)
    name = "Straße-猫 " + uuid.uuid4().hex[:4]  # before: refused as "not letters"
    video = run_prompt(extend_graph(total_frames=24, disk_cache=True, run_name=name))["9"][0]
    comfy_host.executor.reset()
    assert torch.equal(run_prompt(load_run_graph(name))["1"][0], video)


@pytest.mark.parametrize("damage", ["manifest cut in half", "manifest gone"])
def test_a_damaged_run_is_rebuilt_and_resumed_without_sampling_again(comfy_host, host_weights, run_prompt,
                                                                     monkeypatch, own_runs_root, damage):
    forget_memory(comfy_host)  # (the other case queued this very graph)
    counter = ChunkCounter(monkeypatch, comfy_host)
    api = extend_graph(total_frames=40, seed=6, disk_cache=True, run_name="auto")
    video = run_prompt(api)["9"][0]
    assert counter.calls == 3
    (name,) = own_runs_root.run_names()
    run = own_runs_root.open(name)
    text = open(run.manifest_path).read()
    if damage == "manifest gone":
        os.remove(run.manifest_path)
        # Load Run reads such a folder (before: "no such run")
        comfy_host.executor.reset()
        assert torch.equal(run_prompt(load_run_graph(name))["1"][0], video)
    else:
        open(run.manifest_path, "w").write(text[: len(text) // 2])
    forget_memory(comfy_host)
    counter.calls = 0
    out = run_prompt(api)["9"]
    # Before: a new run '<name>-2' was started and every chunk sampled again, with no word in info.
    assert counter.calls == 0 and torch.equal(out[0], video) and out[2].startswith(f"{name}@")
    assert own_runs_root.run_names() == [name]
    assert f"run '{name}'" in out[1] and "rebuilt from 4 verified chunk files" in out[1]
    assert "reused (run store)" in out[1]
    m = own_runs_root.open(name).manifest()
    assert not m.rebuilt and m.problems[-1]["file"] == "manifest.json"


def test_a_read_only_run_loads_and_resumes_and_says_when_something_new_cannot_be_stored(
        comfy_host, host_weights, run_prompt, monkeypatch, own_runs_root):
    from tests.core.runs.test_run_identity import read_only_folder

    counter = ChunkCounter(monkeypatch, comfy_host)
    name = unique("archive")
    video = run_prompt(extend_graph(total_frames=32, seed=3, disk_cache=True, run_name=name))["9"][0]
    folder = own_runs_root.open(name).folder
    runs = pack_module(comfy_host, "runs")
    with read_only_folder(folder, monkeypatch):
        monkeypatch.setattr(runs, "runs_root", lambda: own_runs_root.root)
        counter = ChunkCounter(monkeypatch, comfy_host)
        forget_memory(comfy_host)
        loaded, mp4, _ = run_prompt(load_run_graph(name))["1"]
        assert torch.equal(loaded, video) and mp4.get_frame_count() == 32
        forget_memory(comfy_host)
        out = run_prompt(extend_graph(total_frames=32, seed=3, disk_cache=True, run_name=name))["9"]
        assert counter.calls == 0 and torch.equal(out[0], video)  # before: refused ("cannot create or open")
        out = run_prompt(extend_graph(total_frames=40, seed=3, disk_cache=True, run_name=name))["9"]
        assert counter.calls == 1 and torch.equal(out[0][:32], video)
        assert "read-only" in out[1] and "chunk 3" in out[1] and "new and must be written" in out[1]


def test_a_chunk_reused_from_memory_whose_file_changed_on_disk_is_written_again(comfy_host, host_weights, run_prompt,
                                                                                monkeypatch, own_runs_root):
    counter = ChunkCounter(monkeypatch, comfy_host)
    name = unique("altered")
    api = extend_graph(total_frames=32, seed=4, disk_cache=True, run_name=name)
    video = run_prompt(api)["9"][0]
    run = own_runs_root.open(name)
    record = run.manifest().timeline_records()[2]
    path = os.path.join(run.chunks_dir, record.file)
    data = bytearray(open(path, "rb").read())
    data[-9] ^= 0x21
    open(path, "wb").write(bytes(data))
    comfy_host.executor.reset()  # the host's output cache only: our chunk memory keeps the frames
    counter.calls = 0
    out = run_prompt(api)["9"]
    assert counter.calls == 0 and torch.equal(out[0], video) and "reused (memory)" in out[1]
    assert f"run '{name}', chunk 2: stored chunk failed verification" in out[1] and "written again" in out[1]
    fresh = run.manifest().timeline_records()[2]
    assert torch.equal(run.read(fresh), (video[24:32] * 255).round().to(torch.uint8))

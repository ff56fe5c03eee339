"""js/plans.js and js/readouts.js under Node.js, against streamingt2v_core/sampling/plans.py.

The fast twin of the in-browser comparison (test_workflows_in_browser.py): no server, no browser,
so a plan or readout change is caught in a second. Skips where no `node` is installed; the
browser test checks the same plans as the page imports them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from streamingt2v_core.sampling.plans import extension_plan, refiner_plan, window_overlaps

JS_DIR = Path(__file__).resolve().parents[2] / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the browser test covers this)")


def _run_js(body: str, data) -> object:
    """Runs an ES module body with `data` bound, returning what it prints as JSON."""
    script = (
        f"import * as plans from {json.dumps((JS_DIR / 'plans.js').as_uri())};\n"
        f"import * as readouts from {json.dumps((JS_DIR / 'readouts.js').as_uri())};\n"
        f"const data = {json.dumps(data)};\n{body}\n"
    )
    proc = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_extension_plans_equal():
    cases = [(t, 16, 16, 8) for t in list(range(16, 90)) + [240, 1200]] + [(40, 8, 16, 8), (41, 16, 24, 8), (50, 12, 12, 4)]
    got = _run_js("console.log(JSON.stringify(data.map(a => plans.extensionPlan(...a))));", cases)
    for args, js in zip(cases, got):
        plan = extension_plan(*args)
        assert js["num_chunks"] == plan.num_chunks and js["frames_generated"] == plan.frames_generated, args
        assert [(tuple(c["cond_range"]), tuple(c["new_range"]), tuple(c["keep_range"])) for c in js["chunks"]] == [
            (c.cond_range, c.new_range, c.keep_range) for c in plan.chunks
        ], args


def test_refiner_plans_equal():
    cases = [(n, 24, 8) for n in range(1, 120)] + [(1200, 24, 8), (50, 16, 0), (50, 10, 9), (33, 8, 4)]
    got = _run_js(
        "console.log(JSON.stringify(data.map(a => { const w = plans.refinerPlan(...a); return [w, plans.windowOverlaps(w)]; })));",
        cases,
    )
    for args, (windows, overlaps) in zip(cases, got):
        expected = refiner_plan(*args)
        assert [tuple(w) for w in windows] == expected, args
        assert overlaps == window_overlaps(expected), args


def test_bad_inputs_rejected_naming_the_same_argument():
    ext_bad = [(10, 16, 16, 8), (40, 16, 8, 8), (40, 4, 16, 8), (40, 16, 16, 0)]
    ref_bad = [(0, 24, 8), (40, 24, 24), (40, 24, -1), (40, 0, 0)]
    got = _run_js(
        "const msg = (f) => { try { f(); return null; } catch (e) { return e.message; } };\n"
        "console.log(JSON.stringify([data[0].map(a => msg(() => plans.extensionPlan(...a))),"
        " data[1].map(a => msg(() => plans.refinerPlan(...a)))]));",
        [ext_bad, ref_bad],
    )
    for fn, cases, messages in ((extension_plan, ext_bad, got[0]), (refiner_plan, ref_bad, got[1])):
        for args, message in zip(cases, messages):
            with pytest.raises(ValueError) as err:
                fn(*args)
            assert message is not None, f"JS accepted {args}"
            assert message.split(" ")[0] == str(err.value).split(" ")[0], (args, message, str(err.value))


def test_readout_text():
    got = _run_js(
        "console.log(JSON.stringify(["
        " readouts.extenderReadout({totalFrames: 70, fps: 8}).lines,"
        " readouts.extenderReadout({totalFrames: 17, fps: 8}).lines,"
        " readouts.extenderReadout({totalFrames: 10, fps: 8}),"
        " readouts.refinerReadout({numFrames: 240, chunk: 24, overlap: 8, fps: 8}).lines,"
        " readouts.refinerReadout({numFrames: null, chunk: 24, overlap: 8}).lines,"
        " readouts.refinerReadout({numFrames: 64, chunk: 24, overlap: 24}).error,"
        " readouts.framePlanReadout({totalFrames: 1200, fps: 8}).lines,"
        " readouts.initialChunkReadout({frames: 16, width: 256, height: 256}).lines,"
        "]));",
        None,
    )
    assert got[0] == ["70 frames · 8.75 s at 8 fps", "8 chunks = 16 + 6 × 8 + 6 new", "new: 0–15 | 16–23 | … | 56–63 | 64–69"]
    assert got[1] == ["17 frames · 2.13 s at 8 fps", "2 chunks = 16 + 1 new", "new: 0–15 | 16"]
    assert got[2]["error"] and got[2]["lines"][0].startswith("⚠ total_frames")
    windows = refiner_plan(240, 24, 8)
    assert got[3] == [
        "240 frames · 30.00 s at 8 fps",
        f"{len(windows)} windows of 24 (overlap 8, last {window_overlaps(windows)[-1]})",
        "windows: 0–23 | 16–39 | … | 208–231 | 216–239",
    ]
    assert got[4][0] == "input length known when the graph runs"
    assert got[4][2] == f"e.g. 240 frames → {len(windows)} windows"
    assert got[5] is True
    assert got[6] == [
        "1200 frames · 150.00 s (2:30) at 8 fps",
        f"extender: {extension_plan(1200).num_chunks} chunks = 16 + 148 × 8 new",
        f"refiner: {len(refiner_plan(1200))} windows of 24 (overlap 8, last 16)",
    ]
    assert got[7] == ["16 frames at 256×256", "latent 32×32 · 2.00 s at 8 fps"]

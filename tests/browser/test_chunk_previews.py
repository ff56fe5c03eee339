"""Each finished chunk on the Extend node while the run goes on (issue 13.1), in the real web UI.

An Extend graph of 2 chunks on the tiny demo weights is queued from the page (the Run button). A recorder in the page
watches what the frontend itself shows on the Extend node, every few milliseconds and after each message: the
node's preview image (``node.imgs``, which the frontend loads from the ``b_preview_with_metadata`` blob it stores in
``app.nodePreviewImages``) and the text widget the frontend adds for progress text (``$$node-text-preview``). It also
notes when the prompt ends (``executing`` null, ``execution_success``).

The test passes only if chunk 1's frames (as the run then outputs them, through a PreviewImage node) are the node's
image, and "chunk 1 of 2" its text, *before chunk 2 is finished* (its text arrives after a whole chunk of sampling)
and well before the prompt ends. Previews that arrive only at the end of the run, only as the final output, or
without the progress text fail it.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

if str(Path(__file__).parent) not in sys.path:  # the run readout test's graph (tests/ is not a package)
    sys.path.insert(0, str(Path(__file__).parent))
from test_run_readout import EXTEND_ID, RUN_TIMEOUT_MS, extend_workflow, ui  # noqa: E402,F401 (ui: the page fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
FRAMES_PREVIEW_ID = 10
TEXT_WIDGET = "$$node-text-preview"  # the frontend's progress-text widget (useNodeProgressText)
TOTAL_FRAMES = 32  # first chunk 16 + chunks 1 and 2 of 8 new frames
STEPS = 1
# The JPEG (quality 95) of a grid of these noisy frames against the grid itself: about 14 grey levels on average;
# another chunk's grid (or the flat first chunk's) about 60.
SAME_GRID_MAE = 30.0

# Recorder: state of the Extend node as the frontend shows it, on every change, with the run's end.
RECORDER_JS = """
(extendId) => {
  const api = window.comfyAPI.api.api;
  const rec = (window.__st2vPreviews = {t0: performance.now(), states: [], ends: [], messages: []});
  const now = () => performance.now() - rec.t0;
  const running = () => rec.ends.length === 0;
  let last = '';
  const snapshot = (why) => {
    const node = app.graph.getNodeById(extendId);
    if (!node) return;
    const text = node.widgets?.find((w) => w.name === '__TEXT_WIDGET__')?.value ?? null;
    const img = node.imgs?.[0] ?? null;
    const stored = app.nodePreviewImages?.[String(extendId)]?.[0] ?? null;
    const src = img?.src ?? null;
    const key = `${text}|${src}|${img?.complete}`;
    if (key === last) return;
    last = key;
    let png = null;
    if (img && img.complete && img.naturalWidth > 0) {
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      canvas.getContext('2d').drawImage(img, 0, 0);
      png = canvas.toDataURL('image/png');
    }
    rec.states.push({why, t: now(), running: running(), text, src, stored, fromPreview: !!src && src === stored,
                     width: img?.naturalWidth ?? 0, height: img?.naturalHeight ?? 0, png});
  };
  api.addEventListener('progress_text', (e) => {
    rec.messages.push({kind: 'text', node: String(e.detail.nodeId), text: e.detail.text, t: now(), running: running()});
    snapshot('progress_text');
  });
  api.addEventListener('b_preview_with_metadata', (e) => {
    rec.messages.push({kind: 'image', node: String(e.detail.displayNodeId), t: now(), running: running()});
    snapshot('b_preview');
  });
  api.addEventListener('executing', (e) => { if (e.detail == null) rec.ends.push({kind: 'executing null', t: now()}); });
  api.addEventListener('execution_success', () => rec.ends.push({kind: 'execution_success', t: now()}));
  rec.timer = setInterval(() => snapshot('poll'), 20);
}
""".replace("__TEXT_WIDGET__", TEXT_WIDGET)


def _frames_grid():
    """nodes/previews.py's frames_grid, loaded from its file (the package's __init__ needs the host)."""
    spec = importlib.util.spec_from_file_location("st2v_previews_for_test", REPO_ROOT / "nodes" / "previews.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.frames_grid


def previews_workflow(run_name: str) -> dict:
    """The run readout's graph (host loaders, EmptyImage first chunk, Extend at 64x64) at 2 chunks of 1 step, its
    frames into a PreviewImage (what the run outputs, to compare the previews with)."""
    graph = extend_workflow(run_name)
    extend = next(n for n in graph["nodes"] if n["id"] == EXTEND_ID)
    extend["widgets_values"][0] = TOTAL_FRAMES
    extend["widgets_values"][3] = STEPS
    extend["outputs"][0]["links"] = [10]
    graph["nodes"].append({"id": FRAMES_PREVIEW_ID, "type": "PreviewImage", "pos": [850, 260], "size": [300, 300],
                           "flags": {}, "order": FRAMES_PREVIEW_ID, "mode": 0,
                           "inputs": [{"name": "images", "type": "IMAGE", "link": 10}], "outputs": [],
                           "properties": {}, "widgets_values": []})
    graph["links"].append([10, EXTEND_ID, 0, FRAMES_PREVIEW_ID, 0, "IMAGE"])
    graph["last_node_id"] = graph["last_link_id"] = 10
    return graph


def _decode_png(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32)


def _output_frames(comfy_server, prompt_id: str) -> torch.Tensor:
    """The Extend node's frames as the run output them (PreviewImage's PNGs), ``[T, H, W, 3]`` uint8."""
    images = comfy_server.get_json(f"/history/{prompt_id}")[prompt_id]["outputs"][str(FRAMES_PREVIEW_ID)]["images"]
    frames = []
    for image in images:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        with urllib.request.urlopen(f"{comfy_server.url}/view?{query}", timeout=30) as response:
            frames.append(np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB")))
    return torch.from_numpy(np.stack(frames))


def _chunk_frames(video: torch.Tensor, k: int) -> torch.Tensor:
    return video[:16] if k == 0 else video[16 + 8 * (k - 1):16 + 8 * k]


def test_a_finished_chunk_is_shown_on_the_extend_node_while_the_run_goes_on(ui, comfy_server, screenshot_dir):
    page = ui.page
    page.evaluate("() => __st2v.closePopups()")
    page.evaluate("([g]) => __st2v.loadWorkflow(g, 'chunk_previews.json')",
                  [previews_workflow("previews-" + uuid.uuid4().hex[:8])])  # a new run: every chunk is sampled
    page.evaluate("([id]) => __st2v.focusNode(id, 0.9)", [EXTEND_ID])
    page.evaluate(RECORDER_JS, EXTEND_ID)
    page.evaluate("() => __st2v.watchExecution()")
    page.locator(".comfyui-queue-button button").first.click()

    # Mid-run: chunk 1 done, on the node (its image and text), the prompt still running. Screenshot of the node then.
    seen = page.wait_for_function(
        """() => {
            const rec = window.__st2vPreviews, run = window.__st2vRun;
            if (run.done || __st2v.popups().dialogs.length > 0 || rec.ends.length) return {ended: true};
            const hit = rec.states.find((s) => s.running && s.png && s.fromPreview && /^chunk 1 of /.test(s.text ?? ''));
            return hit ? {ended: false, t: hit.t} : null;
        }""", timeout=RUN_TIMEOUT_MS).json_value()
    if not seen["ended"]:
        page.wait_for_timeout(150)  # the canvas redraws with the loaded image
        box = page.evaluate(
            """(id) => { const n = app.graph.getNodeById(id);
                         const a = __st2v.clientPoint(id, -10, -40), b = __st2v.clientPoint(id, n.size[0] + 10, n.size[1] + 10);
                         return {x: a.x, y: a.y, width: b.x - a.x, height: b.y - a.y}; }""", EXTEND_ID)
        viewport = page.viewport_size
        x, y = max(0.0, box["x"]), max(0.0, box["y"])
        clip = {"x": x, "y": y, "width": min(box["width"], viewport["width"] - x),
                "height": min(box["height"], viewport["height"] - y)}
        page.screenshot(path=str(screenshot_dir / "extend_chunk_preview_mid_run.png"), clip=clip)

    page.wait_for_function("() => window.__st2vRun.done || __st2v.popups().dialogs.length > 0",
                           timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(300)
    state = page.evaluate("() => __st2v.runState()")
    assert state["status"] == "success", f"{json.dumps(state)[:2000]}\n{comfy_server.log_tail()}"
    rec = page.evaluate("() => { const r = window.__st2vPreviews; clearInterval(r.timer); return r; }")
    assert not seen["ended"], ("the run ended before chunk 1's preview and progress text were on the Extend node: "
                               + json.dumps([{k: s[k] for k in ('t', 'running', 'text', 'width')}
                                             for s in rec["states"]])[:3000])
    end_t = min(e["t"] for e in rec["ends"])
    print("chunk previews:", json.dumps([(round(m["t"]), m["kind"], m.get("text", "")[:60]) for m in rec["messages"]]),
          "end", round(end_t))

    # Every progress text and preview image of the run went to the Extend node, while it ran.
    texts = [m for m in rec["messages"] if m["kind"] == "text"]
    assert texts and {m["node"] for m in rec["messages"]} == {str(EXTEND_ID)}, rec["messages"]
    assert all(m["running"] for m in rec["messages"]), rec["messages"]
    assert texts[0]["text"].startswith("chunk 0 of 2: the first chunk"), texts[0]
    chunk_text = {}  # each chunk's first progress text
    for t in texts:
        if m := re.match(r"chunk (\d) of 2", t["text"]):
            chunk_text.setdefault(int(m.group(1)), t)
    assert sorted(chunk_text) == [0, 1, 2], [t["text"] for t in texts]
    assert re.match(r"chunk 1 of 2, \d+\.\d s per chunk, about \d+ (s|min) left\nchunk 1: frames 16-23, "
                    r"sampled in \d+\.\d s$", chunk_text[1]["text"]), chunk_text[1]["text"]
    assert re.match(r"chunk 2 of 2, \d+\.\d s per chunk, done\n", chunk_text[2]["text"]), chunk_text[2]["text"]

    # What the node showed, against the frames the run output.
    video = _output_frames(comfy_server, state["detail"]["prompt_id"])
    assert video.shape == (TOTAL_FRAMES, 64, 64, 3)
    frames_grid = _frames_grid()
    grids = [np.asarray(frames_grid(_chunk_frames(video, k)), dtype=np.float32) for k in range(3)]
    assert grids[1].shape == (2 * 64 + 4, 4 * 64 + 3 * 4, 3)  # 8 frames of 64x64 in a 4 x 2 grid

    def chunk_shown(s) -> tuple[int | None, list[float]]:
        image = _decode_png(s["png"])
        errors = [float(np.abs(image - g).mean()) if image.shape == g.shape else float("inf") for g in grids]
        best = int(np.argmin(errors))
        return (best if errors[best] < SAME_GRID_MAE else None), errors

    shown = [(s, *chunk_shown(s)) for s in rec["states"] if s["png"] and s["fromPreview"]]
    assert shown, "the Extend node never showed a preview image"
    # Chunk 1's frames on the node with the text "chunk 1 of 2", before chunk 2 finished (a whole chunk of sampling
    # later) and while the prompt ran.
    mid = [(s, errors) for s, k, errors in shown
           if k == 1 and s["running"] and (s["text"] or "").startswith("chunk 1 of 2") and s["t"] < chunk_text[2]["t"]]
    assert mid, ("chunk 1's frames were never the node's image while chunk 2 was sampled: "
                 + json.dumps([(s["t"], s["text"][:14], k, [round(e, 1) for e in errors]) for s, k, errors in shown]))
    first, errors = mid[0]
    others = sorted(e for k, e in enumerate(errors) if k != 1)
    assert errors[1] < SAME_GRID_MAE < others[0], errors  # chunk 1's grid, not another chunk's
    assert first["width"] == grids[1].shape[1] and first["height"] == grids[1].shape[0]
    assert end_t - first["t"] > 200, (first["t"], end_t)  # ms: on the node a good while before the prompt ended
    # Chunk 2, the last, follows and stays on the node with its text. It may arrive just after the prompt's end:
    # chunks finishing within the half-second throttle are shown by the run's final update, which the server
    # sends asynchronously, so its image can reach the page after the "executing" end message (seen in CI).
    assert shown[-1][1] == 2, [(s["t"], k) for s, k, _ in shown]
    widget = page.evaluate(
        "([id, name]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name)?.value ?? null",
        [EXTEND_ID, TEXT_WIDGET])
    assert widget == chunk_text[2]["text"]
    assert (screenshot_dir / "extend_chunk_preview_mid_run.png").is_file()
    assert not [e for e in ui.page_errors if "previews" in e or "runs.js" in e], ui.page_errors

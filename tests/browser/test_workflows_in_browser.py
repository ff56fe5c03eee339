"""The pack in the real web UI: headless Chromium on the real ComfyUI server (see conftest.py).

For every file in workflows/ the UI loads it as a user opening the file would, and we check what a
user would see: no missing-node/missing-model dialog or warning toast, no request to the server
that fails (a missing input video would be a 404), every node registered and rendered with its
widgets, every required input present in the prompt the Run button would send, and the web
extension's readouts (js/) on our nodes. Each workflow must also read at a glance in a 1600x1000
window: "Zoom to fit" must stay above the frontend's own low-detail threshold, and the layout as
the editor draws it has no overlapping nodes, no group cutting through a node, no link running
under a node (scripts/workflow_layout.py, on the live geometry); a screenshot of each, as the
artist sees it, lands in test-output/screenshots/. The readouts must follow widget edits (a real
click on a widget arrow included), the JS chunk plans must equal
streamingt2v_core/sampling/plans.py, and the text-to-long-video and evaluation workflows, queued
from the page on tiny random weights, must finish cleanly with their layout unchanged.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts.workflow_layout import (
    FIT_CANVAS,
    LOW_DETAIL_ZOOM,
    MIN_FONT_SIZE_FOR_LOD,
    ZOOM_MARGIN,
    box_mismatches,
    describe,
    fit_zoom,
    geometry_from_live,
    geometry_from_workflow,
    group_problems,
    layout_problems,
    socket_mismatches,
)
from streamingt2v_core.sampling.plans import extension_plan, refiner_plan

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / "workflows"
PACK_LINK_NAME = "comfyui-streamingt2v"  # the folder name under custom_nodes/ (see conftest.py)
HELPERS_JS = Path(__file__).with_name("page_helpers.js")
JS_BASE = f"/extensions/{PACK_LINK_NAME}"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Node types the readouts are drawn on (js/streamingt2v.js).
READOUT_NODES = {"StreamingT2VExtend", "StreamingT2VRefine", "StreamingT2VInitialChunk", "StreamingT2VFramePlan"}
# Settings lowered (never raised) before the queued run, so it stays a few seconds per step on CPU.
TINY_RUN_SETTINGS = {"steps": 2, "width": 64, "height": 64, "total_frames": 24, "frames": 16, "size": 64}
RUN_TIMEOUT_MS = 15 * 60 * 1000  # a loaded 2-core machine took over 8 min for the tiny text-to-long-video run
WARNING_WORDS = re.compile(r"missing|not found|error|failed|invalid", re.IGNORECASE)
REGISTRY_LOOKUP = "https://api.comfy.org/"


@pytest.fixture(scope="module")
def ui(browser_page):
    """The page with the test helpers (window.__st2v) loaded."""
    page = browser_page.page
    if not page.evaluate("() => !!window.__st2v"):
        page.add_script_tag(content=HELPERS_JS.read_text())
    return browser_page


@pytest.fixture(scope="module")
def object_info(comfy_server) -> dict:
    return comfy_server.get_json("/object_info")


def _inputs(info: dict) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, required) for each declared input of an /object_info entry."""
    out = []
    for section in ("required", "optional"):
        for name, entry in (info.get("input", {}).get(section) or {}).items():
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, typ, opts, section == "required"))
    return out


def _is_widget_input(typ, opts: dict) -> bool:
    return isinstance(typ, list) or (typ in WIDGET_TYPES and not opts.get("forceInput"))


def _combo_options(typ, opts: dict) -> list | None:
    if isinstance(typ, list):
        return typ
    if typ == "COMBO":
        return opts.get("options")
    return None


def _load(ui, path: Path) -> dict:
    page = ui.page
    page.evaluate("() => __st2v.closePopups()")
    graph = json.loads(path.read_text())
    result = page.evaluate("([g, name]) => __st2v.loadWorkflow(g, name)", [graph, path.name])
    page.wait_for_timeout(500)  # dialogs and toasts open asynchronously after the load
    result["graph"] = graph
    return result


def _problems_in_graph(nodes: list[dict], prompt: dict, object_info: dict) -> list[str]:
    """Missing-node and missing-input problems, checked against the server's node definitions."""
    problems = []
    for node in nodes:
        where = f"node #{node['id']} {node['type']}"
        if not node["registered"]:
            problems.append(f"{where}: type not registered in LiteGraph")
            continue
        if node["hasErrors"]:
            problems.append(f"{where}: marked with errors in the editor")
        info = object_info.get(node["type"])
        if info is None or node["mode"] in (2, 4):  # frontend-only node (Note, Reroute...), muted or bypassed
            continue
        widgets = {w["name"]: w for w in node["widgets"]}
        linked = {i["name"] for i in node["inputs"] if i["linked"]} | {i["widget"] for i in node["inputs"] if i["linked"] and i["widget"]}
        for name, typ, opts, required in _inputs(info):
            if _is_widget_input(typ, opts) and name not in linked:
                if name not in widgets:
                    problems.append(f"{where}: widget {name!r} is not rendered")
                    continue
                value = widgets[name]["value"]
                if required and value is None:
                    problems.append(f"{where}: widget {name!r} has no value")
                options = _combo_options(typ, opts)
                if options is not None and value not in options:
                    problems.append(f"{where}: {name}={value!r} is not among the options {options[:8]}")
            elif required and name not in linked:
                problems.append(f"{where}: required input {name!r} ({typ}) is not connected")
        entry = prompt.get(str(node["id"]))
        if entry is None:
            problems.append(f"{where}: missing from the API prompt")
            continue
        for name, _typ, _opts, required in _inputs(info):
            if required and name not in entry["inputs"]:
                problems.append(f"{where}: required input {name!r} missing from the API prompt")
    return problems


def test_extension_is_served_and_registered(ui, comfy_server):
    listed = comfy_server.get_json("/extensions")
    for name in ("streamingt2v.js", "plans.js", "readouts.js"):
        assert f"{JS_BASE}/{name}" in listed, f"{name} not served; /extensions lists {[x for x in listed if PACK_LINK_NAME in x]}"
    names = ui.page.evaluate("() => app.extensions.map(e => e.name)")
    assert "StreamingT2V.Readouts" in names
    # The frontend itself asks api.comfy.org about the pack of every node it shows (URLs that name
    # our node types); the server's content policy blocks that here (--disable-api-nodes, no network).
    ours = [e for e in ui.page_errors + ui.console_errors
            if (PACK_LINK_NAME in e or "streamingt2v" in e.lower()) and REGISTRY_LOOKUP not in e]
    assert not ours, f"errors from our extension in the browser: {ours}"


def test_js_plans_equal_python_plans(ui):
    """js/plans.js, as the browser imports it from the server, against plans.py."""
    extension_cases = [(t, 16, 16, 8) for t in (16, 17, 23, 24, 25, 31, 32, 33, 64, 70, 100, 240, 1200)]
    extension_cases += [(40, 8, 16, 8), (41, 16, 24, 8), (50, 12, 12, 4)]
    refiner_cases = [(n, 24, 8) for n in (1, 5, 23, 24, 25, 39, 40, 41, 56, 57, 64, 100, 240, 1200)]
    refiner_cases += [(50, 16, 0), (50, 10, 9), (33, 8, 4)]
    js = ui.page.evaluate(
        """async ([ext, ref, base]) => {
            const m = await import(base + '/plans.js');
            return {
                ext: ext.map(a => m.extensionPlan(...a)),
                ref: ref.map(a => m.refinerPlan(...a)),
                bad: [[10, 16, 16, 8], [40, 16, 8, 8], [40, 4, 16, 8], [16.5, 16, 16, 8]].map(a => {
                    try { m.extensionPlan(...a); return null; } catch (e) { return e.message; } }),
                badRef: [[0, 24, 8], [40, 24, 24], [40, 24, -1], [40, 0, 0]].map(a => {
                    try { m.refinerPlan(...a); return null; } catch (e) { return e.message; } }),
            };
        }""",
        [extension_cases, refiner_cases, JS_BASE],
    )
    for args, got in zip(extension_cases, js["ext"]):
        plan = extension_plan(*args)
        expected = {
            "total_frames": plan.total_frames, "num_chunks": plan.num_chunks, "frames_generated": plan.frames_generated,
            "first_chunk": plan.first_chunk, "chunk": plan.chunk, "cond_frames": plan.cond_frames,
            "chunks": [{"index": c.index, "cond_range": list(c.cond_range), "new_range": list(c.new_range),
                        "keep_range": list(c.keep_range)} for c in plan.chunks],
        }
        assert got == expected, f"extension plan differs for {args}"
    for args, got in zip(refiner_cases, js["ref"]):
        assert got == [list(w) for w in refiner_plan(*args)], f"refiner plan differs for {args}"
    # The same inputs are rejected, naming the same argument.
    for message, args in zip(js["bad"], [(10, 16, 16, 8), (40, 16, 8, 8), (40, 4, 16, 8)]):
        with pytest.raises(ValueError) as err:
            extension_plan(*args)
        assert message is not None and message.split(" ")[0] == str(err.value).split(" ")[0], (message, err.value)
    assert js["bad"][3] is not None  # 16.5 frames
    for message, args in zip(js["badRef"], [(0, 24, 8), (40, 24, 24), (40, 24, -1), (40, 0, 0)]):
        with pytest.raises(ValueError) as err:
            refiner_plan(*args)
        assert message is not None and message.split(" ")[0] == str(err.value).split(" ")[0], (message, err.value)


def test_workflows_exist():
    assert WORKFLOW_FILES, f"no workflow files in {WORKFLOWS_DIR}"


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=[p.stem for p in WORKFLOW_FILES])
def test_workflow_loads_in_the_ui(ui, object_info, screenshot_dir, workflow: Path):
    page = ui.page
    errors_before = len(ui.page_errors)
    requests_before = len(ui.failed_requests)
    loaded = _load(ui, workflow)
    page.wait_for_load_state("networkidle")  # previews (the input video...) are fetched after the load
    assert loaded["unregistered"] == [], f"node types missing in LiteGraph.registered_node_types: {loaded['unregistered']}"
    failed = ui.failed_requests_to_server(requests_before)
    assert failed == [], f"requests to the server failed while {workflow.name} loaded: {failed}"
    assert loaded["nodeCount"] == len(loaded["graph"]["nodes"])

    popups = page.evaluate("() => __st2v.popups()")
    assert popups["dialogs"] == [], f"dialogs after loading {workflow.name}: {popups['dialogs']}"
    warnings = [t for t in popups["toasts"] if WARNING_WORDS.search(t)]
    assert warnings == [], f"warning toasts after loading {workflow.name}: {warnings}"

    nodes = page.evaluate("() => __st2v.describeGraph()")
    prompt = page.evaluate("() => __st2v.apiPrompt()")
    problems = _problems_in_graph(nodes, prompt, object_info)
    assert problems == [], "\n".join(problems)

    # Our nodes render with their widgets, and the readout shows on those that have one.
    ours = [n for n in nodes if n["type"].startswith("StreamingT2V")]
    assert ours, f"{workflow.name} holds no StreamingT2V node"
    for node in ours:
        if node["type"] in READOUT_NODES:
            dom = node["readoutDom"]
            assert dom is not None, f"#{node['id']} {node['type']}: no readout widget"
            assert dom["visible"] and dom["text"].strip(), f"#{node['id']} {node['type']}: readout not shown: {dom}"
            assert not dom["error"], f"#{node['id']} {node['type']}: readout reports a problem: {dom['text']}"
            widgets = {w["name"]: w["value"] for w in node["widgets"]}
            linked = {i["widget"] for i in node["inputs"] if i["linked"] and i["widget"]}
            if "total_frames" in widgets and "total_frames" not in linked:
                total = widgets["total_frames"]
                plan = extension_plan(total, first_chunk=widgets.get("first_chunk", 16))
                assert dom["text"].startswith(f"{total} frames"), dom["text"]
                assert f"{plan.num_chunks} chunk" in dom["text"], dom["text"]
        readout_widget = [w for w in node["widgets"] if w["name"] == "streamingt2v_readout"]
        assert all(not w["serialize"] for w in readout_widget)

    # Readable layout: no node covers another (our readouts make our nodes taller than the host
    # would draw them without the extension, so the workflow must leave room for them).
    overlaps = page.evaluate("() => __st2v.overlappingNodes()")
    assert overlaps == [], f"nodes overlap in {workflow.name} as loaded: {overlaps}"

    # The readout never reaches the saved workflow or the prompt.
    saved = page.evaluate("() => __st2v.serialize()")
    by_id = {n["id"]: n for n in loaded["graph"]["nodes"]}
    for node in saved["nodes"]:
        original = by_id.get(node["id"])
        if original is not None and "widgets_values" in original:
            assert len(node.get("widgets_values", [])) == len(original["widgets_values"]), node["type"]
    assert "streamingt2v_readout" not in json.dumps(prompt)

    new_errors = ui.page_errors[errors_before:]
    assert new_errors == [], f"uncaught errors in the page while loading {workflow.name}: {new_errors}"


def _screenshot(page, path: Path) -> dict:
    """Screenshot of the whole graph as "Zoom to fit" shows it in the current window, without a
    tooltip (the mouse rests on empty canvas); returns the fitted view's state."""
    fit = page.evaluate("() => __st2v.fitView()")
    size = page.viewport_size
    page.mouse.move(size["width"] - 40, size["height"] // 2)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    return fit


def _live_layout_problems(page, workflow: Path, object_info: dict) -> tuple[list[str], object]:
    """Layout problems of the graph in the editor now, and the saved file's drift from it."""
    live = geometry_from_live(page.evaluate("() => __st2v.layout()"))
    saved = geometry_from_workflow(workflow, object_info)
    problems = layout_problems(live)
    # The fast file-only check (tests/host/test_workflows.py) is only as good as the file's sizes
    # and its socket estimate: both must be what the editor draws.
    problems += [f"file vs editor: {p}" for p in box_mismatches(saved, live) + socket_mismatches(saved, live)]
    problems += [f"file-only check cannot place {p}" for p in saved.unplaced_links]
    return problems, live


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=[p.stem for p in WORKFLOW_FILES])
def test_workflow_reads_at_a_glance(ui, object_info, screenshot_dir, workflow: Path):
    """In a 1600x1000 window the whole graph fits at a zoom the frontend draws in full detail, and
    the layout the editor draws is clean; the screenshot is what the artist sees on opening it."""
    page = ui.page
    normal = page.viewport_size
    page.set_viewport_size({"width": FIT_CANVAS[0], "height": FIT_CANVAS[1]})
    try:
        _load(ui, workflow)
        fit = _screenshot(page, screenshot_dir / f"{workflow.stem}.png")
        problems, live = _live_layout_problems(page, workflow, object_info)
    finally:
        page.set_viewport_size(normal)
    # The frontend's own threshold (LGraphCanvas.updateLowQualityThreshold: the setting
    # LiteGraph.Canvas.MinFontSizeForLOD, 8 px by default, over NODE_TEXT_SIZE 14 px) is the one
    # scripts/workflow_layout.py assumes for the file-only check.
    assert fit["canvasSize"] == list(FIT_CANVAS), fit
    assert fit["minFontSizeForLod"] == MIN_FONT_SIZE_FOR_LOD and abs(fit["threshold"] - LOW_DETAIL_ZOOM) < 1e-9, fit
    # ... with a margin: a workflow just above the threshold turns unreadable with one more widget.
    assert fit["scale"] >= fit["threshold"] * (1 + ZOOM_MARGIN) and not fit["lowQuality"], (
        f"{workflow.name}: zoom to fit in {FIT_CANVAS[0]}x{FIT_CANVAS[1]} gives {fit['scale']:.3f}, the frontend draws "
        f"low detail below {fit['threshold']:.3f}, and the layout check wants {ZOOM_MARGIN:.0%} above it "
        f"({describe(live)})")
    assert problems == [], f"{workflow.name} ({describe(live)}):\n" + "\n".join(problems)
    # The file-only check predicts the editor's "Zoom to fit" (same bounds, padding and fill).
    predicted = fit_zoom(geometry_from_workflow(workflow, object_info), FIT_CANVAS)
    assert abs(fit["scale"] - predicted) < 1e-3, (fit["scale"], predicted)


def _readout_lines(page, node_id: int) -> list[str]:
    return page.evaluate("(id) => __st2v.readoutText(id)", node_id).split("\n")


def test_readouts_follow_widget_edits(ui, screenshot_dir):
    """Extender -> refiner chain built in the editor; edits (a real click among them) update both readouts."""
    page = ui.page
    page.evaluate("() => __st2v.closePopups()")
    page.evaluate("() => app.loadGraphData({nodes: [], links: [], groups: [], version: 0.4, last_node_id: 0, last_link_id: 0}, true, false)")
    ext = page.evaluate("() => __st2v.addNode('StreamingT2VExtend', [60, 80])")
    ref = page.evaluate("() => __st2v.addNode('StreamingT2VRefine', [520, 80])")
    page.evaluate("([a, b]) => __st2v.connectByType(a, b, 'IMAGE')", [ext, ref])

    page.evaluate("([id]) => __st2v.setWidget(id, 'total_frames', 64)", [ext])
    lines = _readout_lines(page, ext)
    assert lines[0] == "64 frames · 8.00 s at 8 fps", lines
    assert lines[1] == "7 chunks = 16 + 6 × 8 new", lines
    assert lines[2] == "new: 0–15 | 16–23 | … | 48–55 | 56–63", lines
    # The whole plan, chunk by chunk, is the readout's tooltip.
    title = next(n for n in page.evaluate("() => __st2v.describeGraph()") if n["id"] == ext)["readoutDom"]["title"]
    for spec in extension_plan(64).chunks[1:]:
        c, n = spec.cond_range, spec.new_range
        assert f"chunk {spec.index}: conditioned on {c[0]}–{c[1] - 1} → adds {n[0]}–{n[1] - 1}" in title, title

    # A real click on the right arrow of total_frames, as a user steps the value up.
    page.evaluate("(id) => __st2v.focusNode(id, 1)", ext)
    arrow = page.evaluate("(id) => __st2v.widgetArrow(id, 'total_frames', 1)", ext)
    page.mouse.click(arrow["x"], arrow["y"])
    page.wait_for_timeout(300)
    stepped = page.evaluate("(id) => __st2v.widgetValue(id, 'total_frames')", ext)
    assert stepped > 64, "the click on the widget's arrow did not step total_frames up"
    plan = extension_plan(stepped)
    lines = _readout_lines(page, ext)
    seconds = re.match(rf"{stepped} frames · ([0-9.]+) s at 8 fps$", lines[0])
    assert seconds and abs(float(seconds.group(1)) - stepped / 8) <= 0.0051, lines
    assert lines[1].startswith(f"{plan.num_chunks} chunks"), lines
    last = plan.chunks[-1].new_range
    assert lines[2].endswith(f"{last[0]}–{last[1] - 1}" if last[1] - last[0] > 1 else f"{last[0]}"), lines

    # The refiner reads the length of the video the extender makes.
    ref_widgets = {w["name"]: w["value"] for w in next(n for n in page.evaluate("() => __st2v.describeGraph()") if n["id"] == ref)["widgets"]}
    chunk, overlap = ref_widgets["chunk"], ref_widgets["overlap"]
    page.evaluate("() => app.canvas.setDirty(true, true)")
    page.wait_for_timeout(200)
    lines = _readout_lines(page, ref)
    windows = refiner_plan(stepped, chunk, overlap)
    assert lines[0].startswith(f"{stepped} frames"), lines
    assert lines[1].startswith(f"{len(windows)} windows of {chunk}"), lines

    page.evaluate("([id]) => __st2v.setWidget(id, 'total_frames', 240)", [ext])
    page.evaluate("([id]) => __st2v.setWidget(id, 'overlap', 12)", [ref])
    lines = _readout_lines(page, ref)
    windows = refiner_plan(240, chunk, 12)
    assert lines[0].startswith("240 frames"), lines
    assert lines[1].startswith(f"{len(windows)} windows of {chunk} (overlap 12"), lines
    assert lines[2].endswith(f"{windows[-1][0]}–{windows[-1][1] - 1}"), lines

    # total_frames wired from a Frame Plan node: the extender's readout follows the plan's widget.
    plan_id = page.evaluate("() => __st2v.addNode('StreamingT2VFramePlan', [60, -360])")
    page.evaluate("([p, e]) => __st2v.connectToWidget(p, 0, e, 'total_frames')", [plan_id, ext])
    page.evaluate("([id]) => __st2v.setWidget(id, 'total_frames', 100)", [plan_id])
    lines = _readout_lines(page, ext)
    assert lines[0].startswith("100 frames"), lines
    assert lines[1].startswith(f"{extension_plan(100).num_chunks} chunks"), lines
    assert _readout_lines(page, ref)[0].startswith("100 frames"), _readout_lines(page, ref)
    assert _readout_lines(page, plan_id)[0].startswith("100 frames"), _readout_lines(page, plan_id)

    # Impossible settings are flagged on the node, not thrown.
    page.evaluate("([id, c]) => __st2v.setWidget(id, 'overlap', c)", [ref, chunk])
    assert _readout_lines(page, ref)[0].startswith("⚠ overlap"), _readout_lines(page, ref)
    page.evaluate("([id]) => __st2v.setWidget(id, 'overlap', 8)", [ref])
    page.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    page.wait_for_timeout(300)
    _screenshot(page, screenshot_dir / "readouts_extend_refine.png")


# Queued from the page with the Run button: the plan alone (no weights), then the whole text to
# long video pipeline on tiny random weights.
RUN_FROM_PAGE = ["frame_plan", "text_to_long_video", "evaluate_video"]


@pytest.mark.parametrize("name", RUN_FROM_PAGE)
def test_queue_workflow_from_the_page(ui, comfy_server, object_info, screenshot_dir, name: str):
    workflow = WORKFLOWS_DIR / f"{name}.json"
    assert workflow.is_file(), f"{workflow} is missing"
    page = ui.page
    loaded = _load(ui, workflow)
    assert loaded["unregistered"] == []
    # A user would lower the settings for a quick try; so do we (tiny random weights on a CPU).
    for node in page.evaluate("() => __st2v.describeGraph()"):
        linked = {i["widget"] for i in node["inputs"] if i["linked"] and i["widget"]}
        for widget in node["widgets"]:
            small = TINY_RUN_SETTINGS.get(widget["name"])
            if small is not None and widget["name"] not in linked and isinstance(widget["value"], (int, float)) \
                    and widget["value"] > small:
                page.evaluate("([id, name, v]) => __st2v.setWidget(id, name, v)", [node["id"], widget["name"], small])

    page.evaluate("() => __st2v.watchExecution()")
    page.locator(".comfyui-queue-button button").first.click()  # the Run button
    page.wait_for_function(
        "() => window.__st2vRun.done || __st2v.popups().dialogs.length > 0", timeout=RUN_TIMEOUT_MS
    )
    state = page.evaluate("() => __st2v.runState()")
    page.wait_for_load_state("networkidle")  # results (videos, plots) load after the run
    page.wait_for_timeout(500)
    _screenshot(page, screenshot_dir / f"{name}_after_run.png")
    assert state["status"] == "success", (
        f"run did not succeed: {json.dumps(state)[:3000]}\n--- server log ---\n{comfy_server.log_tail()}"
    )
    assert state["popups"]["dialogs"] == [], state["popups"]
    prompt_id = state["detail"]["prompt_id"]
    history = comfy_server.get_json(f"/history/{prompt_id}")[prompt_id]
    assert history["status"]["status_str"] == "success", history["status"]
    assert history["outputs"], "the run finished without any output node result"
    # What the run shows (videos, plots, reports) fits in the nodes: nothing grew over a neighbour.
    problems, live = _live_layout_problems(page, workflow, object_info)
    # Every node still inside its group (the first chunk's preview once grew its node 150 px over its group), and
    # every group where the file puts it.
    assert group_problems(live) == [], f"{name} after the run: " + "; ".join(group_problems(live))
    saved_groups = geometry_from_workflow(workflow, object_info).groups
    assert [t for t, _b in live.groups] == [t for t, _b in saved_groups], (name, live.groups)
    for (title, got), (_t, want) in zip(live.groups, saved_groups):
        assert max(abs(got.x - want.x), abs(got.y - want.y), abs(got.w - want.w), abs(got.h - want.h)) <= 1, (
            f"{name} after the run: group {title!r} is {got}, the file says {want}")
    assert problems == [], f"{name} after the run:\n" + "\n".join(problems)
    # What the frame plan node printed after the run agrees with what its readout showed before.
    for node in page.evaluate("() => __st2v.describeGraph()"):
        if node["type"] != "StreamingT2VFramePlan" or str(node["id"]) not in history["outputs"]:
            continue
        printed = " ".join(history["outputs"][str(node["id"])].get("text", []))
        shown = node["readoutDom"]["text"]
        for pattern in (r"(\d+) chunks", r"(\d+) windows?", r"(\d+) frames"):
            assert re.findall(pattern, printed)[:1] == re.findall(pattern, shown)[:1], (pattern, printed, shown)

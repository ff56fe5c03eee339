"""The run readout of js/runs.js in the real web UI, against runs the real server makes.

An Extend graph on tiny random weights is built in the editor; its run readout says, before each
queue, which chunks will be reused and which sampled, and what the server then reports for each
chunk (the Extend node's UI output: "memory"/"store" or "sampled") must agree. Also: a freshly
added Extend node's seed control starts at "fixed", and the JS chunk seeds equal Python's.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from streamingt2v_core.sampling.extension import chunk_seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PACK_LINK_NAME = "comfyui-streamingt2v"
JS_BASE = f"/extensions/{PACK_LINK_NAME}"
HELPERS_JS = Path(__file__).with_name("page_helpers.js")
RUN_TIMEOUT_MS = 8 * 60 * 1000
EXTEND_ID = 8


@pytest.fixture(scope="module")
def ui(browser_page):
    page = browser_page.page
    if not page.evaluate("() => !!window.__st2v"):
        page.add_script_tag(content=HELPERS_JS.read_text())
    page.evaluate("() => __st2v.closePopups()")
    return browser_page


def _node(id_, type_, pos, size, inputs, outputs, widgets):
    return {"id": id_, "type": type_, "pos": pos, "size": size, "flags": {}, "order": id_, "mode": 0,
            "inputs": inputs, "outputs": outputs, "properties": {}, "widgets_values": widgets}


def extend_workflow(run_name: str, prompt: str = "a cat walks on the street", color: int = 0x8844CC) -> dict:
    """Host loaders + EmptyImage first chunk + StreamingT2V Extend (64x64, 2 chunks, 1 step) + PreviewAny."""
    out = lambda name, typ, links: {"name": name, "type": typ, "links": links}  # noqa: E731
    inp = lambda name, typ, link: {"name": name, "type": typ, "link": link}  # noqa: E731
    nodes = [
        _node(1, "CLIPLoader", [0, 0], [300, 110], [], [out("CLIP", "CLIP", [1, 2])],
              ["open_clip_h_text.safetensors", "stable_diffusion", "default"]),
        _node(2, "CLIPTextEncode", [0, 160], [300, 120], [inp("clip", "CLIP", 1)],
              [out("CONDITIONING", "CONDITIONING", [3])], [prompt]),
        _node(3, "CLIPTextEncode", [0, 330], [300, 100], [inp("clip", "CLIP", 2)],
              [out("CONDITIONING", "CONDITIONING", [4])], [""]),
        _node(4, "CLIPVisionLoader", [0, 480], [300, 60], [], [out("CLIP_VISION", "CLIP_VISION", [5])],
              ["clip_vision_vit_h.safetensors"]),
        _node(5, "VAELoader", [0, 590], [300, 60], [], [out("VAE", "VAE", [6])], ["sd_vae.safetensors"]),
        _node(6, "StreamingT2VModelLoader", [0, 700], [300, 130], [],
              [out("MODEL", "MODEL", [7]), out("STRING", "STRING", None)],
              ["streaming_t2v.safetensors", "default", "extender"]),
        _node(7, "EmptyImage", [0, 880], [300, 130], [], [out("IMAGE", "IMAGE", [8])], [64, 64, 16, color]),
        _node(EXTEND_ID, "StreamingT2VExtend", [400, 0], [380, 900],
              [inp("model", "MODEL", 7), inp("positive", "CONDITIONING", 3), inp("negative", "CONDITIONING", 4),
               inp("clip_vision", "CLIP_VISION", 5), inp("vae", "VAE", 6), inp("first_chunk", "IMAGE", 8)],
              [out("frames", "IMAGE", None), out("info", "STRING", [9]), out("run", "STRING", None)],
              [32, 5, "fixed", 1, 7.5, "ddpm", "ddim_uniform", 64, 64, "", True, run_name, "", 0, "whole video", "off"]),
        _node(9, "PreviewAny", [850, 0], [300, 200], [inp("source", "*", 9)], [], []),
    ]
    links = [[1, 1, 0, 2, 0, "CLIP"], [2, 1, 0, 3, 0, "CLIP"], [3, 2, 0, 8, 1, "CONDITIONING"],
             [4, 3, 0, 8, 2, "CONDITIONING"], [5, 4, 0, 8, 3, "CLIP_VISION"], [6, 5, 0, 8, 4, "VAE"],
             [7, 6, 0, 8, 0, "MODEL"], [8, 7, 0, 8, 5, "IMAGE"], [9, 8, 1, 9, 0, "STRING"]]
    return {"last_node_id": 9, "last_link_id": 9, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def run_readout(page, node_id: int = EXTEND_ID) -> list[str]:
    return page.evaluate(
        "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'streamingt2v_run_readout')"
        ".element.textContent", node_id).split("\n")


def wait_for_readout(page, text: str, node_id: int = EXTEND_ID) -> list[str]:
    """The readout fetches the run's summary from the server: wait until it shows `text` (or time out)."""
    page.wait_for_function(
        """([id, text]) => {
            app.canvas.setDirty(true, true);
            const w = app.graph.getNodeById(id).widgets.find((x) => x.name === 'streamingt2v_run_readout');
            return w.element.textContent.includes(text);
        }""", arg=[node_id, text], timeout=20_000)
    return run_readout(page, node_id)


def queue_and_report(ui, comfy_server) -> list[str]:
    """Queue with the Run button; the sources the Extend node reports per chunk."""
    page = ui.page
    page.evaluate("() => __st2v.watchExecution()")
    page.locator(".comfyui-queue-button button").first.click()
    page.wait_for_function("() => window.__st2vRun.done || __st2v.popups().dialogs.length > 0",
                           timeout=RUN_TIMEOUT_MS)
    state = page.evaluate("() => __st2v.runState()")
    assert state["status"] == "success", f"{json.dumps(state)[:2000]}\n{comfy_server.log_tail()}"
    prompt_id = state["detail"]["prompt_id"]
    history = comfy_server.get_json(f"/history/{prompt_id}")[prompt_id]
    return history["outputs"][str(EXTEND_ID)]["streamingt2v_run"][0]["sources"]


# Every node whose output feeds a long run: a new seed there means a new run (first chunk) or a whole
# video refined again (Refine, its blending windows), so each starts at "fixed" (js/runs.js).
SEED_FIXED_NODES = ["StreamingT2VExtend", "StreamingT2VInitialChunk", "StreamingT2VRefine",
                    "StreamingT2VRandomizedBlendingWindows", "StreamingT2VExtendVideoModel"]


def seed_control(page, node_id: int) -> str:
    return page.evaluate(
        """(id) => { const n = app.graph.getNodeById(id);
                     const seed = n.widgets.find((w) => w.name === 'seed');
                     return (seed.linkedWidgets?.[0] ?? n.widgets.find((w) => w.name === 'control_after_generate')).value; }""",
        node_id)


def test_a_new_extend_node_keeps_its_seed_fixed_and_a_loaded_one_keeps_its_choice(ui):
    page = ui.page
    page.evaluate("() => app.loadGraphData({nodes: [], links: [], groups: [], version: 0.4}, true, false)")
    for k, node_type in enumerate(SEED_FIXED_NODES):
        other = page.evaluate("([t, x]) => __st2v.addNode(t, [x, 900])", [node_type, 60 + 420 * k])
        assert seed_control(page, other) == "fixed", node_type
    node_id = page.evaluate("() => __st2v.addNode('StreamingT2VExtend', [60, 80])")
    assert seed_control(page, node_id) == "fixed"
    names = page.evaluate("(id) => app.graph.getNodeById(id).widgets.map((w) => w.name)", node_id)
    assert names.index("streamingt2v_run_readout") > names.index("streamingt2v_readout"), names  # plan, then run
    workflow = extend_workflow("x")
    workflow["nodes"][7]["widgets_values"][2] = "randomize"
    page.evaluate("([g]) => __st2v.loadWorkflow(g, 'randomized.json')", [workflow])
    saved = page.evaluate("() => __st2v.serialize()")
    extend = next(n for n in saved["nodes"] if n["type"] == "StreamingT2VExtend")
    assert extend["widgets_values"][2] == "randomize"


def test_js_chunk_seeds_equal_python(ui):
    cases = [(0, 1), (33, 1), (33, 2), (33, 37), (5, 1000), (2**53 - 1, 3), (123456789, 150)]
    got = ui.page.evaluate(
        """async ([cases, base]) => {
            const m = await import(base + '/runs.js');
            let bad = null;
            try { m.parseChunkSeeds('37 12345'); } catch (e) { bad = e.message; }
            return {seeds: cases.map(([s, i]) => m.chunkSeed(s, i)), parsed: [...m.parseChunkSeeds('37: 12345, 2: 9')], bad};
        }""", [cases, JS_BASE])
    assert got["seeds"] == [str(chunk_seed(s, i)) for s, i in cases]
    assert got["parsed"] == [[37, "12345"], [2, "9"]]
    assert got["bad"].startswith("chunk_seeds:")


def test_the_readout_says_before_queueing_what_the_run_then_reuses(ui, comfy_server, screenshot_dir):
    page = ui.page
    name = "readout-" + uuid.uuid4().hex[:8]
    page.evaluate("() => __st2v.closePopups()")
    page.evaluate("([g]) => __st2v.loadWorkflow(g, 'run_readout.json')", [extend_workflow(name)])

    lines = wait_for_readout(page, "sample")
    assert lines[0] == f"run: {name} · new" and lines[1] == "sample 1–2", lines
    assert queue_and_report(ui, comfy_server) == ["sampled", "sampled"]

    # After the run the readout reads the stored run: both chunks would be reused.
    lines = wait_for_readout(page, "reuse 1–2")
    assert lines[0] == f"run: {name} · 3 chunks stored", lines

    # Re-roll chunk 2: the readout says chunk 1 is reused and chunk 2 sampled, and so it goes.
    page.evaluate("([id]) => __st2v.setWidget(id, 'chunk_seeds', '2: 7')", [EXTEND_ID])
    lines = wait_for_readout(page, "reuse 1 · sample 2")
    assert queue_and_report(ui, comfy_server) == ["memory", "sampled"]

    # Back to the old seed, pinned by number: the old chunk 2 is still stored, both reused.
    old = chunk_seed(5, 2)
    page.evaluate("([id, v]) => __st2v.setWidget(id, 'chunk_seeds', v)", [EXTEND_ID, f"2: {old}"])
    lines = wait_for_readout(page, "reuse 1–2")
    assert "sample" not in lines[1], lines
    assert queue_and_report(ui, comfy_server) == ["memory", "memory"]

    # Other settings: everything sampled; with regenerate_from 2, chunk 1 kept as stored.
    page.evaluate("([id]) => __st2v.setWidget(id, 'steps', 2)", [EXTEND_ID])
    assert wait_for_readout(page, "sample 1–2")[1] == "sample 1–2"
    page.evaluate("([id]) => __st2v.setWidget(id, 'regenerate_from', 2)", [EXTEND_ID])
    assert wait_for_readout(page, "keep 1 · sample 2")[1] == "keep 1 · sample 2"
    page.evaluate("([id]) => __st2v.setWidget(id, 'regenerate_from', 5)", [EXTEND_ID])
    assert wait_for_readout(page, "regenerate_from")[1].startswith("⚠ regenerate_from")
    title = page.evaluate(
        "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'streamingt2v_run_readout').element.title",
        EXTEND_ID)
    assert "regenerate_from" in title
    page.evaluate("([id]) => __st2v.setWidget(id, 'regenerate_from', 0)", [EXTEND_ID])
    page.evaluate("([id]) => __st2v.setWidget(id, 'steps', 1)", [EXTEND_ID])
    title = page.evaluate(
        "(id) => { const n = app.graph.getNodeById(id); app.canvas.setDirty(true, true);"
        " return n.widgets.find((w) => w.name === 'streamingt2v_run_readout').element.title; }", EXTEND_ID)
    assert "assumes the model, VAE, first chunk and negative prompt are unchanged" in title
    page.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "run_readout.png"))
    assert not [e for e in ui.page_errors if "runs.js" in e], ui.page_errors


# What an artist sets on every run stays on Extend's first screen; the rest (js/extend_options.js)
# waits behind the button, grouped by purpose, and stays in the saved workflow and the prompt.
FIRST_SCREEN = ["total_frames", "seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler",
                "width", "height"]
OPTION_WIDGETS = ["prompt_schedule", "disk_cache", "run_name", "chunk_seeds", "regenerate_from", "frames_output",
                  "color_match"]
TOGGLE = "streamingt2v_more_options"


def visible_widgets(page, node_id: int) -> list[str]:
    return page.evaluate(
        "(id) => { const n = app.graph.getNodeById(id); return n.widgets.filter((w) => n.isWidgetVisible(w))"
        ".map((w) => w.name); }", node_id)


def click_toggle(page) -> None:
    """A real click in the middle of the options button, where the node draws it now."""
    y = page.evaluate(f"(id) => {{ const w = app.graph.getNodeById(id).widgets.find((w) => w.name === '{TOGGLE}');"
                      f" return w.y + (w.computedHeight ?? 20) / 2; }}", EXTEND_ID)
    width = page.evaluate("(id) => app.graph.getNodeById(id).size[0]", EXTEND_ID)
    point = page.evaluate("([id, x, y]) => __st2v.clientPoint(id, x, y)", [EXTEND_ID, width / 2, y])
    page.mouse.click(point["x"], point["y"])
    page.wait_for_timeout(300)


def test_extends_first_screen_holds_what_is_set_every_time(ui, screenshot_dir):
    page = ui.page
    page.evaluate("() => __st2v.closePopups()")
    page.evaluate("([g]) => __st2v.loadWorkflow(g, 'first_screen.json')", [extend_workflow("first-screen")])
    shown = visible_widgets(page, EXTEND_ID)
    assert [w for w in shown if not w.startswith("streamingt2v_")] == FIRST_SCREEN, shown
    assert TOGGLE in shown and shown.index(TOGGLE) < shown.index("streamingt2v_readout"), shown
    label = page.evaluate(f"(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === '{TOGGLE}').label",
                          EXTEND_ID)
    assert label == "▸ prompt travel · run store · colour (1 set)", label  # run_name is not "auto"
    closed_height = page.evaluate("(id) => app.graph.getNodeById(id).computeSize()[1]", EXTEND_ID)
    page.evaluate("(id) => __st2v.focusNode(id, 1)", EXTEND_ID)
    page.screenshot(path=str(screenshot_dir / "extend_first_screen.png"))

    # A set option shows on the closed button; a real click opens the options, in their groups' order.
    page.evaluate("([id]) => __st2v.setWidget(id, 'color_match', 'overlap')", [EXTEND_ID])
    label = page.evaluate(f"(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === '{TOGGLE}').label",
                          EXTEND_ID)
    assert label.endswith("(2 set)"), label
    click_toggle(page)
    shown = visible_widgets(page, EXTEND_ID)
    assert [w for w in shown if w in OPTION_WIDGETS] == OPTION_WIDGETS, shown
    assert page.evaluate("(id) => app.graph.getNodeById(id).size[1]", EXTEND_ID) > closed_height
    page.screenshot(path=str(screenshot_dir / "extend_options_shown.png"))

    # Hidden or shown, every option is in the saved workflow (index by index) and in the prompt by name.
    saved = next(n for n in page.evaluate("() => __st2v.serialize()")["nodes"] if n["id"] == EXTEND_ID)
    assert saved["widgets_values"] == [32, 5, "fixed", 1, 7.5, "ddpm", "ddim_uniform", 64, 64, "", True,
                                       "first-screen", "", 0, "whole video", "overlap"], saved["widgets_values"]
    page.evaluate("([id]) => __st2v.setWidget(id, 'color_match', 'off')", [EXTEND_ID])
    click_toggle(page)  # the button moved down with the options above it
    assert [w for w in visible_widgets(page, EXTEND_ID) if w in OPTION_WIDGETS] == []
    inputs = page.evaluate("() => __st2v.apiPrompt()")[str(EXTEND_ID)]["inputs"]
    assert {k: inputs[k] for k in OPTION_WIDGETS} == {
        "prompt_schedule": "", "disk_cache": True, "run_name": "first-screen", "chunk_seeds": "", "regenerate_from": 0,
        "frames_output": "whole video", "color_match": "off"}, inputs


def _open_fresh_page(ui):
    """A second tab on the same server: a page that has queued nothing (what an artist opening a
    saved workflow tomorrow sees)."""
    page = ui.page.context.new_page()
    page.set_default_timeout(60_000)
    page.goto(ui.server.url + "/")
    page.wait_for_function(
        "() => window.app?.graph && app.extensions?.some(e => e.name === 'StreamingT2V.Runs')", timeout=120_000)
    page.evaluate(HELPERS_JS.read_text())  # (add_script_tag fails on the page's blocked registry requests)
    page.evaluate("() => __st2v.closePopups()")
    return page


def test_the_auto_run_readout_on_a_fresh_page_finds_the_stored_run(ui, comfy_server, screenshot_dir):
    page = ui.page
    tag = uuid.uuid4().hex[:8]
    prompt = f"a fox {tag} runs in the snow"
    # A first chunk of its own colour: "auto" finds runs by their first chunk, other tests' included.
    workflow = extend_workflow("auto", prompt=prompt, color=int(tag[:6], 16))
    page.evaluate("() => __st2v.closePopups()")
    page.evaluate("([g]) => __st2v.loadWorkflow(g, 'auto_readout.json')", [workflow])
    lines = wait_for_readout(page, "run: auto · new")
    assert lines[1] == "sample 1–2", lines
    assert queue_and_report(ui, comfy_server) == ["sampled", "sampled"]
    run_name = page.evaluate("(id) => app.graph.getNodeById(id).properties.streamingt2v_last_run", EXTEND_ID)
    assert run_name and tag in run_name, run_name

    fresh = _open_fresh_page(ui)
    try:
        fresh.evaluate("([g]) => __st2v.loadWorkflow(g, 'auto_readout.json')", [workflow])
        lines = wait_for_readout(fresh, "reuse 1–2")
        assert lines[0] == f"run: auto → {run_name} · 3 chunks stored", lines
        title = fresh.evaluate(
            "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'streamingt2v_run_readout').element.title",
            EXTEND_ID)
        assert run_name in title and "first chunk" in title, title
        # ... and it follows the widgets: another size is another run.
        fresh.evaluate("([id]) => __st2v.setWidget(id, 'width', 72)", [EXTEND_ID])
        lines = wait_for_readout(fresh, "run: auto · new")
        assert lines[1] == "sample 1–2", lines
        fresh.evaluate("([id]) => __st2v.setWidget(id, 'width', 64)", [EXTEND_ID])
        assert wait_for_readout(fresh, "reuse 1–2")[0].startswith(f"run: auto → {run_name}")
        fresh.evaluate("(id) => __st2v.focusNode(id, 1)", EXTEND_ID)
        fresh.screenshot(path=str(screenshot_dir / "run_readout_fresh_page.png"))
    finally:
        fresh.close()

// StreamingT2V web extension: live readouts on the pack's nodes.
//
// As the user edits the widgets, the extender shows the resulting frame count, the duration at
// the graph's fps and its chunk plan; the refiner shows its overlapping windows over the video
// that reaches it; the initial chunk its latent size; the frame plan node its summary before a
// run. Plain JavaScript loaded by the host from WEB_DIRECTORY, no build step.
//
// The readout is a DOM widget added after the node's own widgets and never serialised (neither
// into the saved workflow nor into the API prompt), so workflows and prompts are unchanged.
//
// The metric nodes (category StreamingT2V/metrics) get a result box of fixed height: before a
// run it says the numbers come with the run; after it, it shows the numbers the node reports (the
// `text` of its UI output) and a thumbnail of its plot (`streamingt2v_plot`; a click opens the
// full plot). A fixed height keeps the node where the workflow put it: the host's own image
// preview would grow the node by 220 px after every run, over its neighbours.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  DEFAULT_FIRST_CHUNK,
  DEFAULT_FPS,
  extenderReadout,
  framePlanReadout,
  initialChunkReadout,
  refinerReadout,
} from "./readouts.js";

const EXTENSION_NAME = "StreamingT2V.Readouts";
export const READOUT_WIDGET_NAME = "streamingt2v_readout";
export const RESULT_WIDGET_NAME = "streamingt2v_result";
const READOUT_CLASS = "streamingt2v-readout";
const METRICS_CATEGORY = "StreamingT2V/metrics";
/** Text lines of a metric node's result box (MAWE's summary is the longest), and its plot. */
const RESULT_LINES = 4;
/** The plot thumbnail's height (a fixed height keeps the node's size); the pointer on it shows the plot full size. */
const PLOT_THUMB_PX = 96;
const PLOT_UI_KEY = "streamingt2v_plot";
const RESULT_BEFORE_RUN = "numbers and plot appear here after a run";
const LINE_HEIGHT_PX = 15;
const READOUT_MARGIN_PX = 6;
/** Wide enough for a readout line (about 47 characters of 11 px monospace) without ellipsis. */
const MIN_NODE_WIDTH_PX = 340;
/** How far the readouts walk the graph to find the video length or the fps. */
const MAX_HOPS = 12;

const FRAME_PLAN = "StreamingT2VFramePlan";
const EXTEND = "StreamingT2VExtend";
const INITIAL_CHUNK = "StreamingT2VInitialChunk";
const REFINE = "StreamingT2VRefine";

// ---------------------------------------------------------------- graph helpers

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

/** The node and output slot feeding `node`'s input `name` (a socket or a widget's socket). */
function inputOrigin(node, name) {
  const slot = node?.inputs?.findIndex((i) => i.name === name || i.widget?.name === name) ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const link = node.getInputLink?.(slot);
  const origin = link ? node.graph?.getNodeById(link.origin_id) : null;
  return origin ? { node: origin, slot: link.origin_slot } : null;
}

/**
 * The value a widget will have when the graph runs: its own value, or, when its socket is
 * wired, the value of the widget upstream (a primitive node, or the frame plan's outputs).
 * Returns {value, source}; value null when only the run can tell.
 */
function effectiveValue(node, name, hops = 0) {
  const origin = inputOrigin(node, name);
  if (!origin) {
    const w = widget(node, name);
    return { value: w ? w.value : undefined, source: "" };
  }
  const up = origin.node;
  // The frame plan's first output is its total_frames (output names may be just "INT").
  const outName = up.outputs?.[origin.slot]?.name;
  if (hops < MAX_HOPS && up.type === FRAME_PLAN && (origin.slot === 0 || outName === "total_frames")) {
    const v = effectiveValue(up, "total_frames", hops + 1);
    return { value: v.value, source: `Frame Plan #${up.id}` };
  }
  if (up.type === "PrimitiveNode" || up.type?.startsWith("Primitive")) {
    const w = up.widgets?.find((x) => typeof x.value === "number");
    if (w) return { value: w.value, source: `#${up.id}` };
  }
  return { value: null, source: up.title || up.type };
}

function numberOr(value, fallback) {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

const VIDEO_INPUT_TYPES = new Set(["IMAGE", "LATENT", "VIDEO"]);

/** Frame count of the video a node outputs, when the graph tells it (our nodes, pass-throughs). */
function framesMadeBy(node, hops) {
  if (node.type === EXTEND) {
    const v = effectiveValue(node, "total_frames");
    return { value: v.value, source: `Extend #${node.id}` };
  }
  if (node.type === INITIAL_CHUNK) {
    const v = effectiveValue(node, "frames");
    return { value: v.value ?? null, source: `Initial Chunk #${node.id}` };
  }
  return upstreamFrames(node, null, hops + 1);
}

/**
 * Frame count of the video entering `node` through input `inputName` (or its first wired
 * IMAGE/LATENT/VIDEO input), walking upstream through pass-through nodes (resize, VAE...).
 * {value: null} when only the run can tell (e.g. a video loaded from a file).
 */
function upstreamFrames(node, inputName = null, hops = 0) {
  if (!node?.inputs || hops > MAX_HOPS) return { value: null, source: "" };
  for (const input of node.inputs) {
    if (inputName != null && input.name !== inputName) continue;
    if (input.widget || !VIDEO_INPUT_TYPES.has(input.type) || input.link == null) continue;
    const origin = inputOrigin(node, input.name);
    if (origin) return framesMadeBy(origin.node, hops);
  }
  return { value: null, source: "" };
}

const FPS_WIDGETS = ["fps", "frame_rate"];

/**
 * The fps the video will be played at: the node's own fps widget, else the first fps widget
 * downstream (e.g. the host's Create Video or a video-combine node), else a Frame Plan node
 * upstream, else StreamingT2V's 8 fps.
 */
function graphFps(node) {
  for (const name of FPS_WIDGETS) {
    const w = widget(node, name);
    if (w && typeof w.value === "number") return { fps: w.value, source: "" };
  }
  const seen = new Set();
  let frontier = [node];
  for (let hop = 0; hop < MAX_HOPS && frontier.length; hop++) {
    const next = [];
    for (const n of frontier) {
      for (let slot = 0; slot < (n.outputs?.length ?? 0); slot++) {
        for (const down of n.getOutputNodes?.(slot) ?? []) {
          if (seen.has(down.id)) continue;
          seen.add(down.id);
          for (const name of FPS_WIDGETS) {
            const w = widget(down, name);
            if (w && typeof w.value === "number" && !inputOrigin(down, name)) {
              return { fps: w.value, source: `fps of #${down.id}` };
            }
          }
          next.push(down);
        }
      }
    }
    frontier = next;
  }
  const plan = findUpstream(node, FRAME_PLAN);
  if (plan) {
    const fps = effectiveValue(plan, "fps").value;
    if (typeof fps === "number") return { fps, source: `Frame Plan #${plan.id}` };
  }
  return { fps: DEFAULT_FPS, source: "default" };
}

function findUpstream(node, type, hops = 0, seen = new Set()) {
  if (!node?.inputs || hops > MAX_HOPS || seen.has(node.id)) return null;
  seen.add(node.id);
  for (let slot = 0; slot < node.inputs.length; slot++) {
    if (node.inputs[slot].link == null) continue;
    const up = node.getInputNode?.(slot);
    if (!up) continue;
    if (up.type === type) return up;
    const found = findUpstream(up, type, hops + 1, seen);
    if (found) return found;
  }
  return null;
}

// ---------------------------------------------------------------- readouts per node type

/** Lines each readout shows (fixed per node type, so nodes never resize while editing). */
const READOUT_LINES = { [EXTEND]: 3, [REFINE]: 3, [INITIAL_CHUNK]: 2, [FRAME_PLAN]: 3 };

const READOUTS = {
  [EXTEND](node) {
    const total = effectiveValue(node, "total_frames");
    const { fps, source } = graphFps(node);
    // The first chunk is an IMAGE input: its length is the initial chunk's `frames` when the
    // graph shows it, else the text-to-video model's 16.
    const first = upstreamFrames(node, "first_chunk");
    return extenderReadout({
      totalFrames: total.value,
      totalSource: total.source,
      fps,
      fpsSource: source,
      firstChunk: numberOr(first.value, DEFAULT_FIRST_CHUNK),
      firstSource: first.value == null ? "assumed 16 frames" : first.source,
    });
  },
  [REFINE](node) {
    const frames = upstreamFrames(node);
    const { fps, source } = graphFps(node);
    return refinerReadout({
      numFrames: frames.value,
      source: frames.source,
      chunk: numberOr(effectiveValue(node, "chunk").value, 24),
      overlap: numberOr(effectiveValue(node, "overlap").value, 8),
      blendMode: effectiveValue(node, "blend_mode").value ?? "randomized",
      fps,
      fpsSource: source,
    });
  },
  [INITIAL_CHUNK](node) {
    const { fps, source } = graphFps(node);
    return initialChunkReadout({
      frames: numberOr(effectiveValue(node, "frames").value, 16),
      width: numberOr(effectiveValue(node, "width").value, 256),
      height: numberOr(effectiveValue(node, "height").value, 256),
      fps,
      fpsSource: source,
    });
  },
  [FRAME_PLAN](node) {
    return framePlanReadout({
      totalFrames: effectiveValue(node, "total_frames").value,
      fps: numberOr(effectiveValue(node, "fps").value, DEFAULT_FPS),
      firstChunk: numberOr(effectiveValue(node, "first_chunk").value, DEFAULT_FIRST_CHUNK),
      refineChunk: numberOr(effectiveValue(node, "refine_chunk").value, 24),
      refineOverlap: numberOr(effectiveValue(node, "refine_overlap").value, 8),
    });
  },
};

// ---------------------------------------------------------------- the readout widget

function computeReadout(node) {
  try {
    return READOUTS[node.type](node);
  } catch (err) {
    // A readout must never break the graph editor: show the problem on the node instead.
    return { lines: [`⚠ readout failed: ${err?.message ?? err}`], error: true, title: String(err?.stack ?? err) };
  }
}

/** Recomputes the node's readout and updates its element when the text changed. */
export function refreshReadout(node) {
  const w = widget(node, READOUT_WIDGET_NAME);
  if (!w?.element) return null;
  const readout = computeReadout(node);
  const text = readout.lines.join("\n");
  node.streamingt2vReadout = readout;
  w.element.dataset.nodeId = String(node.id); // the id is only final once the node is in a graph
  if (w.element.textContent !== text) {
    w.element.textContent = text;
    w.element.title = readout.title || text;
    w.element.classList.toggle("streamingt2v-readout-error", !!readout.error);
  }
  return readout;
}

/** Refreshes every readout of the graph (a change on one node may change another's readout). */
export function refreshAllReadouts(graph = app.graph) {
  for (const node of graph?.nodes ?? []) {
    if (READOUTS[node.type]) refreshReadout(node);
  }
  graph?.setDirtyCanvas?.(true, true);
}

/**
 * A read-only text box under the node's widgets, `lines` lines tall (a fixed height, so nodes
 * never resize while editing or after a run), never serialised.
 */
function addTextWidget(node, name, lines, getText, extraPx = 0) {
  const element = document.createElement("div");
  element.className = READOUT_CLASS;
  element.dataset.nodeType = node.type;
  Object.assign(element.style, {
    boxSizing: "border-box",
    width: "100%",
    height: "100%",
    minHeight: `${lines * LINE_HEIGHT_PX + 8 + extraPx}px`, // Nodes 2.0 (Vue) sizes the widget by its content
    padding: "3px 6px",
    font: `11px/${LINE_HEIGHT_PX}px ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace`,
    color: "var(--input-text, #ddd)",
    background: "var(--comfy-input-bg, rgba(0,0,0,0.25))",
    borderRadius: "4px",
    whiteSpace: "pre",
    overflow: "hidden",
    textOverflow: "ellipsis",
    cursor: "default",
    userSelect: "none",
  });
  // The element takes the pointer so its tooltip (the whole plan) shows on hover; the wheel and
  // the middle button still pan and zoom the canvas, as over the host's own text widgets.
  element.addEventListener("wheel", (event) => {
    event.preventDefault();
    app.canvas?.processMouseWheel?.(event);
  });
  for (const type of ["pointerdown", "pointermove", "pointerup"]) {
    element.addEventListener(type, (event) => {
      if (event.button !== 1 && !(type === "pointermove" && event.buttons & 4)) return;
      const handler = { pointerdown: "processMouseDown", pointermove: "processMouseMove", pointerup: "processMouseUp" }[type];
      app.canvas?.[handler]?.(event);
    });
  }
  const height = lines * LINE_HEIGHT_PX + 8 + extraPx + 2 * READOUT_MARGIN_PX;
  const w = node.addDOMWidget(name, "streamingt2v-readout", element, {
    serialize: false, // keeps the text out of the API prompt
    hideOnZoom: false,
    margin: READOUT_MARGIN_PX,
    getValue: () => element.textContent,
    setValue: () => {}, // read-only
    getMinHeight: () => height,
    getMaxHeight: () => height,
    ...(getText ? { onDraw: getText } : {}),
  });
  w.serialize = false; // keeps the text out of the saved workflow's widgets_values
  return w;
}

function addReadoutWidget(node) {
  if (widget(node, READOUT_WIDGET_NAME)) return;
  // onDraw is cheap and catches every way a value can change.
  addTextWidget(node, READOUT_WIDGET_NAME, READOUT_LINES[node.type] ?? 3, () => refreshReadout(node));
  refreshReadout(node);
}

/** The URL the host serves a saved image at (/view, as its own previews use). */
function imageUrl(image) {
  const params = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "temp" });
  return api.apiURL(`/view?${params}`);
}

/** Shows a metric node's reported numbers and plot (or, before a run, where they will appear). */
export function showResult(node, text, plot = null) {
  const element = widget(node, RESULT_WIDGET_NAME)?.element;
  if (!element) return;
  const value = text?.trim() ? text.trim() : RESULT_BEFORE_RUN;
  const textBox = element.querySelector(".streamingt2v-result-text");
  const img = element.querySelector("img");
  textBox.textContent = value;
  element.title = value;
  element.classList.toggle("streamingt2v-result-empty", value === RESULT_BEFORE_RUN);
  if (plot?.filename) {
    img.src = imageUrl(plot);
    img.style.visibility = "visible";
  } else {
    img.removeAttribute("src");
    img.style.visibility = "hidden";
  }
}

const PLOT_POPUP_ID = "streamingt2v-plot-popup";

function showPlotPopup(img) {
  if (!img.src || img.style.visibility === "hidden") return;
  let popup = document.getElementById(PLOT_POPUP_ID);
  if (!popup) {
    popup = document.createElement("img");
    popup.id = PLOT_POPUP_ID;
    popup.alt = "plot";
    Object.assign(popup.style, {
      position: "fixed", zIndex: 10000, pointerEvents: "none", background: "#fff",
      border: "1px solid #888", borderRadius: "4px", boxShadow: "0 4px 16px rgba(0,0,0,0.5)",
      maxWidth: "min(768px, 60vw)", maxHeight: "80vh", objectFit: "contain",
    });
    document.body.append(popup);
  }
  popup.src = img.src;
  const r = img.getBoundingClientRect();
  const width = Math.min(768, window.innerWidth * 0.6);
  const left = r.right + 12 + width <= window.innerWidth ? r.right + 12 : Math.max(8, r.left - 12 - width);
  Object.assign(popup.style, { left: `${left}px`, top: `${Math.max(8, Math.min(r.top, window.innerHeight * 0.2))}px`,
                               display: "block" });
}

function hidePlotPopup() {
  const popup = document.getElementById(PLOT_POPUP_ID);
  if (popup) popup.style.display = "none";
}

function addResultWidget(node) {
  if (widget(node, RESULT_WIDGET_NAME)) return;
  const w = addTextWidget(node, RESULT_WIDGET_NAME, RESULT_LINES, null, PLOT_THUMB_PX);
  const element = w.element;
  element.style.whiteSpace = "normal";
  const textBox = document.createElement("div");
  textBox.className = "streamingt2v-result-text";
  Object.assign(textBox.style, { whiteSpace: "pre", overflow: "hidden", textOverflow: "ellipsis",
                                 height: `${RESULT_LINES * LINE_HEIGHT_PX}px` });
  const img = document.createElement("img");
  img.alt = "plot";
  Object.assign(img.style, { display: "block", width: "100%", height: `${PLOT_THUMB_PX}px`, objectFit: "contain",
                             cursor: "zoom-in", visibility: "hidden" });
  // A click opens the full-size plot; the button press is not passed to the canvas.
  img.addEventListener("pointerdown", (event) => event.stopPropagation());
  img.addEventListener("click", () => img.src && window.open(img.src, "_blank"));
  // At "zoom to fit" a thumbnail's axis labels are a few pixels tall: the pointer on it shows the plot at its
  // own size (up to the window) beside it, readable at any canvas zoom.
  img.addEventListener("pointerenter", () => showPlotPopup(img));
  img.addEventListener("pointerleave", hidePlotPopup);
  element.append(textBox, img);
  showResult(node, "");
}

function isMetricNode(nodeData) {
  return !!nodeData.output_node && String(nodeData.category ?? "").startsWith(METRICS_CATEGORY)
    && String(nodeData.name ?? "").startsWith("StreamingT2V");
}

function chain(object, method, after) {
  const original = object[method];
  object[method] = function (...args) {
    const result = original?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

app.registerExtension({
  name: EXTENSION_NAME,

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (isMetricNode(nodeData)) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        addResultWidget(this);
        const size = this.computeSize();
        this.setSize([Math.max(this.size[0], size[0], MIN_NODE_WIDTH_PX), Math.max(this.size[1], size[1])]);
      });
      chain(nodeType.prototype, "onConfigure", function () {
        if (this.size[0] < MIN_NODE_WIDTH_PX) this.size[0] = MIN_NODE_WIDTH_PX;
      });
      chain(nodeType.prototype, "onExecuted", function (message) {
        const text = message?.text;
        showResult(this, Array.isArray(text) ? text.join("\n") : String(text ?? ""), message?.[PLOT_UI_KEY]?.[0]);
      });
      return;
    }
    if (!READOUTS[nodeData.name]) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      addReadoutWidget(this);
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0], MIN_NODE_WIDTH_PX), Math.max(this.size[1], size[1])]);
    });
    chain(nodeType.prototype, "onConfigure", function () {
      // Saved workflows may hold a narrower size; the host grows the height to fit the
      // widgets after configure, the width we keep readable here.
      if (this.size[0] < MIN_NODE_WIDTH_PX) this.size[0] = MIN_NODE_WIDTH_PX;
      refreshReadout(this);
    });
    chain(nodeType.prototype, "onWidgetChanged", function () {
      refreshAllReadouts(this.graph);
    });
    chain(nodeType.prototype, "onConnectionsChange", function () {
      if (this.graph) refreshAllReadouts(this.graph);
    });
  },

  async afterConfigureGraph() {
    refreshAllReadouts(app.graph);
  },
});

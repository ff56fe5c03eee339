// StreamingT2V web extension, Extend's first screen: the inputs an artist sets every time stay on
// the node (sockets, total_frames, seed, steps, cfg, sampler, scheduler, size); the rarely changed
// ones (prompt travel, the run store, colour) are the frontend's "advanced" widgets, out of the way
// until a button on the node (or the node menu's "Show Advanced") shows them, grouped by purpose in
// the schema's order.
//
// Why advanced widgets and not an options input fed by small options nodes: the widgets stay the
// node's own, so saved workflows (widgets_values, index by index), the API prompt (inputs by name)
// and every graph built before keep working unchanged. The host's Python schema (comfy_api 0.3.75)
// has no `advanced` flag; the frontend (1.32) has one per widget (LGraphNode.isWidgetVisible,
// node.showAdvanced, saved with the node), which is what this sets.
//
// A widget whose socket is wired (a primitive or the Frame Plan feeding run_name...) stays shown:
// a hidden widget's socket would have its link drawn to nowhere.

import { app } from "../../scripts/app.js";

const EXTENSION_NAME = "StreamingT2V.ExtendOptions";
const EXTEND = "StreamingT2VExtend";
export const TOGGLE_WIDGET_NAME = "streamingt2v_more_options";

/** Extend's rarely changed inputs by purpose, in the schema's order (nodes/extend.py). */
export const OPTION_GROUPS = [
  ["prompt travel", ["prompt_schedule"]],
  ["run store", ["disk_cache", "run_name", "chunk_seeds", "regenerate_from", "frames_output"]],
  ["colour", ["color_match"]],
];
export const OPTION_WIDGETS = OPTION_GROUPS.flatMap(([, names]) => names);

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function socketLinked(node, name) {
  return !!node.inputs?.some((i) => (i.widget?.name === name || i.name === name) && i.link != null);
}

/** The values that differ from the defaults, so a closed node still says what it holds. */
function changedOptions(node) {
  const changed = [];
  for (const name of OPTION_WIDGETS) {
    const w = widget(node, name);
    if (!w) continue;
    const fallback = w.options?.default ?? { disk_cache: true, run_name: "auto", regenerate_from: 0 }[name];
    const value = w.value;
    const isDefault =
      name === "frames_output" || name === "color_match"
        ? value === (w.options?.values?.[0] ?? value)
        : typeof value === "string"
          ? value.trim() === String(fallback ?? "").trim()
          : value === fallback;
    if (!isDefault || socketLinked(node, name)) changed.push(name);
  }
  return changed;
}

function toggleLabel(node) {
  const groups = OPTION_GROUPS.map(([title]) => title).join(" · ");
  if (node.showAdvanced) return `▾ hide ${groups}`;
  const changed = changedOptions(node);
  return `▸ ${groups}` + (changed.length ? ` (${changed.length} set)` : "");
}

/**
 * A hidden widget takes no room. The frontend (1.32) skips hidden widgets when it draws and in the
 * node's computeSize, but its widget layout (LGraphNode.arrange) still gives each one its height:
 * without this the first screen would show a blank gap where the options are and the node would
 * grow by it. Sizes are asked for at layout time, so "Show Advanced" from the node menu works too.
 */
function collapseWhenHidden(node, w) {
  if (w.streamingt2vCollapsible) return;
  w.streamingt2vCollapsible = true;
  if (typeof w.computeLayoutSize === "function" && typeof w.computeSize !== "function") {
    const own = w.computeLayoutSize;
    w.computeLayoutSize = function (...args) {
      return node.isWidgetVisible(w) ? own.apply(this, args) : { minHeight: 0, maxHeight: 0, minWidth: 0 };
    };
    return;
  }
  const own = w.computeSize;
  w.computeSize = function (width) {
    if (!node.isWidgetVisible(w)) return [0, -4]; // arrange adds 4 px between widgets
    return own ? own.call(this, width) : [width ?? node.size[0], window.LiteGraph?.NODE_WIDGET_HEIGHT ?? 20];
  };
}

/** Marks the option widgets advanced (hidden unless node.showAdvanced), but never a wired one. */
export function applyOptionVisibility(node) {
  for (const name of OPTION_WIDGETS) {
    const w = widget(node, name);
    if (!w) continue;
    collapseWhenHidden(node, w);
    w.advanced = !socketLinked(node, name);
  }
  node.setDirtyCanvas?.(true, true);
}

function toggleOptions(node) {
  if (!node.showAdvanced) {
    node.streamingt2vClosedSize = [...node.size];
    node.showAdvanced = true;
    node.expandToFitContent?.();
  } else {
    node.showAdvanced = false;
    // Back to the size it had, so a node sized in a workflow keeps its room (and its neighbours their place).
    const closed = node.streamingt2vClosedSize;
    const min = node.computeSize();
    node.setSize([node.size[0], Math.max(min[1], closed?.[1] ?? min[1])]);
  }
  applyOptionVisibility(node);
  node.graph?.setDirtyCanvas?.(true, true);
}

function addToggle(node) {
  if (widget(node, TOGGLE_WIDGET_NAME)) return;
  // After every serialised widget: a non-serialised widget between them would leave a hole in
  // widgets_values (the frontend stores values by widget index).
  const w = node.addWidget("button", TOGGLE_WIDGET_NAME, null, () => toggleOptions(node), { serialize: false });
  w.serialize = false;
  // The label follows the node's state, however it changed (this button, the node menu, a loaded workflow).
  Object.defineProperty(w, "label", { get: () => toggleLabel(node), set: () => {}, configurable: true });
  // Right below the last option widget, above the readouts whatever order the extensions ran in.
  const widgets = node.widgets;
  const last = Math.max(...OPTION_WIDGETS.map((name) => widgets.indexOf(widget(node, name))));
  if (last >= 0 && widgets.indexOf(w) !== last + 1) {
    widgets.splice(widgets.indexOf(w), 1);
    widgets.splice(last + 1, 0, w);
  }
  w.tooltip = "Inputs set less often: " + OPTION_GROUPS.map(([t, names]) => `${t} (${names.join(", ")})`).join("; ");
  applyOptionVisibility(node);
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
    if (nodeData.name !== EXTEND) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      addToggle(this);
      this.showAdvanced = false;
      const size = this.computeSize();
      this.setSize([this.size[0], size[1]]);
    });
    chain(nodeType.prototype, "onConfigure", function () {
      applyOptionVisibility(this);
    });
    chain(nodeType.prototype, "onConnectionsChange", function () {
      applyOptionVisibility(this);
    });
  },
});

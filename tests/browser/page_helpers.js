// Helpers the browser tests inject into the ComfyUI page (window.__st2v). They only read the
// frontend's public objects (app, LiteGraph, the DOM) and drive it the way the UI does.
(() => {
  const visible = (el) => !!el && el.offsetParent !== null && el.getBoundingClientRect().height > 0;

  const nextFrames = (n = 2) =>
    new Promise((resolve) => {
      const step = (left) => (left <= 0 ? resolve() : requestAnimationFrame(() => step(left - 1)));
      step(n);
    });

  window.__st2v = {
    /** Text of every visible dialog and toast (missing nodes/models, errors...). */
    popups() {
      const dialogs = [...document.querySelectorAll(".p-dialog")].filter(visible).map((d) => d.innerText.trim());
      const toasts = [...document.querySelectorAll(".p-toast-message")].filter(visible).map((t) => t.innerText.trim());
      return { dialogs, toasts };
    },

    /** Closes every open dialog and toast, as a user would before the next step. */
    async closePopups() {
      for (const button of document.querySelectorAll(".p-dialog .p-dialog-close-button, .p-toast-close-button")) {
        if (visible(button)) button.click();
      }
      await nextFrames(3);
    },

    /** Loads a UI-format workflow the way opening a file does, then fits it into the view. */
    async loadWorkflow(graph, name) {
      const types = [...new Set(graph.nodes.map((n) => n.type))];
      const unregistered = types.filter((t) => !(t in LiteGraph.registered_node_types));
      await app.loadGraphData(graph, true, true, name);
      await nextFrames(3);
      await app.extensionManager.command.execute("Comfy.Canvas.FitView");
      app.canvas.setDirty(true, true);
      await nextFrames(4);
      return { unregistered, nodeCount: app.graph.nodes.length };
    },

    /** What the graph in the editor holds, node by node. */
    describeGraph() {
      return app.graph.nodes.map((node) => {
        const el = node.widgets?.find((w) => w.name === "streamingt2v_readout")?.element;
        return {
          id: node.id,
          type: node.type,
          title: node.title,
          registered: node.type in LiteGraph.registered_node_types,
          hasErrors: !!node.has_errors,
          mode: node.mode,
          widgets: (node.widgets ?? []).map((w) => ({
            name: w.name,
            type: w.type,
            value: typeof w.value === "object" ? null : w.value,
            serialize: w.serialize !== false,
          })),
          inputs: (node.inputs ?? []).map((i) => ({
            name: i.name,
            type: i.type,
            linked: i.link != null,
            widget: i.widget?.name ?? null,
          })),
          outputs: (node.outputs ?? []).map((o) => ({ name: o.name, type: o.type, links: o.links?.length ?? 0 })),
          readout: node.streamingt2vReadout ? { ...node.streamingt2vReadout, plan: undefined, windows: undefined } : null,
          readoutDom: el
            ? { text: el.textContent, title: el.title, visible: visible(el), error: el.classList.contains("streamingt2v-readout-error") }
            : null,
        };
      });
    },

    /** Pairs of nodes whose boxes (title bar included) overlap, as the editor draws them now. */
    overlappingNodes() {
      const boxes = app.graph.nodes.map((n) => [n, n.boundingRect]);
      const pairs = [];
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          const [a, [ax, ay, aw, ah]] = boxes[i];
          const [b, [bx, by, bw, bh]] = boxes[j];
          const dx = Math.min(ax + aw, bx + bw) - Math.max(ax, bx);
          const dy = Math.min(ay + ah, by + bh) - Math.max(ay, by);
          if (dx > 0 && dy > 0) pairs.push(`#${a.id} ${a.title} / #${b.id} ${b.title} (${Math.round(dx)}x${Math.round(dy)} px)`);
        }
      }
      return pairs;
    },

    /**
     * What the editor draws, for the layout checks (scripts/workflow_layout.py, geometry_from_live):
     * node boxes (title bar included), group boxes, and every link's end points as the frontend
     * places the sockets (getOutputPos / getInputPos, widget sockets included).
     */
    layout() {
      const graph = app.graph;
      const nodes = graph.nodes.map((n) => ({ id: n.id, type: n.type, title: n.title ?? n.type, box: [...n.boundingRect] }));
      const groups = (graph.groups ?? graph._groups ?? []).map((g) => ({ title: g.title, box: [...g.boundingRect] }));
      const all = graph.links instanceof Map ? [...graph.links.values()] : Object.values(graph.links ?? {});
      const links = all.filter(Boolean).map((l) => {
        const from = graph.getNodeById(l.origin_id);
        const to = graph.getNodeById(l.target_id);
        return { id: l.id, source: l.origin_id, sourceSlot: l.origin_slot, target: l.target_id,
                 start: [...from.getOutputPos(l.origin_slot)], end: [...to.getInputPos(l.target_slot)] };
      });
      return { nodes, groups, links };
    },

    /** The view after "Zoom to fit": its scale and the frontend's own low-detail threshold. */
    async fitView() {
      await app.extensionManager.command.execute("Comfy.Canvas.FitView");
      await new Promise((resolve) => setTimeout(resolve, 500)); // the fit is animated (350 ms)
      app.canvas.setDirty(true, true);
      await nextFrames(3);
      const canvas = app.canvas;
      return {
        scale: canvas.ds.scale,
        lowQuality: canvas.low_quality,
        threshold: canvas._lowQualityZoomThreshold,
        minFontSizeForLod: canvas.min_font_size_for_lod,
        canvasSize: [canvas.canvas.clientWidth, canvas.canvas.clientHeight],
        devicePixelRatio: window.devicePixelRatio,
      };
    },

    /** The API prompt the Run button would send. */
    async apiPrompt() {
      return (await app.graphToPrompt()).output;
    },

    /** The serialised (saved-workflow) form of the current graph. */
    serialize() {
      return app.graph.serialize();
    },

    /** Client (page) coordinates of a point given relative to a node, in graph units. */
    clientPoint(nodeId, dx, dy) {
      const node = app.graph.getNodeById(nodeId);
      const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + dx, node.pos[1] + dy]);
      const rect = app.canvas.canvas.getBoundingClientRect();
      return { x: rect.left + cx, y: rect.top + cy };
    },

    /** Where to click to step a number widget up (+1) or down (-1), the arrows drawn on the node. */
    widgetArrow(nodeId, widgetName, direction) {
      const node = app.graph.getNodeById(nodeId);
      const w = node.widgets.find((x) => x.name === widgetName);
      const height = w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
      const x = direction > 0 ? node.size[0] - 25 : 25;
      return { ...this.clientPoint(nodeId, x, w.y + height / 2), scale: app.canvas.ds.scale };
    },

    /** Centres the view on one node at a readable zoom (so its widgets can be clicked). */
    async focusNode(nodeId, scale = 1) {
      const node = app.graph.getNodeById(nodeId);
      const canvas = app.canvas.canvas;
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [
        canvas.clientWidth / (2 * scale) - node.pos[0] - node.size[0] / 2,
        canvas.clientHeight / (2 * scale) - node.pos[1] - node.size[1] / 2,
      ];
      app.canvas.setDirty(true, true);
      await nextFrames(4);
    },

    /** Sets a widget as the UI does (value, callback, onWidgetChanged), then redraws. */
    async setWidget(nodeId, widgetName, value) {
      const node = app.graph.getNodeById(nodeId);
      const w = node.widgets.find((x) => x.name === widgetName);
      const old = w.value;
      w.value = value;
      w.callback?.(w.value, app.canvas, node, app.canvas.graph_mouse);
      node.onWidgetChanged?.(w.name, w.value, old, w);
      app.canvas.setDirty(true, true);
      await nextFrames(3);
      return w.value;
    },

    widgetValue(nodeId, widgetName) {
      return app.graph.getNodeById(nodeId).widgets.find((x) => x.name === widgetName).value;
    },

    readoutText(nodeId) {
      const node = app.graph.getNodeById(nodeId);
      return node.widgets?.find((w) => w.name === "streamingt2v_readout")?.element?.textContent ?? null;
    },

    /** Adds a node of `type` at `pos` the way the node library does; returns its id. */
    addNode(type, pos) {
      const node = LiteGraph.createNode(type);
      node.pos = pos;
      app.graph.add(node);
      app.canvas.setDirty(true, true);
      return node.id;
    },

    /** Connects the first output of type `type` of one node to the first input of that type of another. */
    connectByType(fromId, toId, type) {
      const from = app.graph.getNodeById(fromId);
      const to = app.graph.getNodeById(toId);
      const out = from.outputs.findIndex((o) => o.type === type);
      const inp = to.inputs.findIndex((i) => i.type === type && !i.widget);
      if (out < 0 || inp < 0) throw new Error(`no ${type} slot between #${fromId} and #${toId}`);
      from.connect(out, to, inp);
      return [out, inp];
    },

    /** Wires output `outSlot` of one node into the socket of widget `widgetName` of another. */
    connectToWidget(fromId, outSlot, toId, widgetName) {
      const from = app.graph.getNodeById(fromId);
      const to = app.graph.getNodeById(toId);
      const inp = to.inputs.findIndex((i) => i.widget?.name === widgetName || i.name === widgetName);
      if (inp < 0) throw new Error(`#${toId} has no socket for widget ${widgetName}`);
      from.connect(outSlot, to, inp);
      app.canvas.setDirty(true, true);
      return inp;
    },

    /** Starts listening for the end of the next run (success, error or interruption). */
    watchExecution() {
      const api = window.comfyAPI.api.api;
      const state = (window.__st2vRun = { done: false, status: null, detail: null, queued: null });
      const finish = (status) => (event) => {
        if (state.done) return;
        state.done = true;
        state.status = status;
        state.detail = JSON.parse(JSON.stringify(event.detail ?? null));
      };
      api.addEventListener("execution_success", finish("success"));
      api.addEventListener("execution_error", finish("error"));
      api.addEventListener("execution_interrupted", finish("interrupted"));
      api.addEventListener("promptQueued", (e) => (state.queued = JSON.parse(JSON.stringify(e.detail ?? {}))));
    },

    runState() {
      return { ...window.__st2vRun, nodeErrors: app.lastNodeErrors ?? null, popups: this.popups() };
    },
  };
})();

// StreamingT2V web extension, run store part: on every Extend node,
//
//  * a run readout that says, before queueing, which chunks will be reused from the run store
//    and which sampled, for the node's current widget values (re-roll with chunk_seeds,
//    regenerate_from, a new prompt_schedule, more frames...). It asks the server for the run's
//    manifest summary (GET /streamingt2v/runs/<name>, nodes/runs.py) and mirrors the node's reuse
//    rule on what it can see: each chunk's seed, prompt and sampler settings and the chunk it was
//    conditioned on. What it cannot see (the model, LoRAs, the VAE, the first chunk, the negative
//    prompt) it assumes unchanged, and says so in its tooltip;
//  * the seed's "control after generate" starts at "fixed" on a newly added node of every type
//    whose output feeds a long run (both Extends, Initial Chunk, Refine, Randomized Blending Windows), so
//    queueing again resumes the run instead of starting a new video: a new first chunk is a new
//    run, a new Refine seed refines the whole video again (a loaded workflow keeps its saved
//    choice). The frontend starts every seed at "randomize" and the host's schema cannot say
//    otherwise (its control_after_generate flag is a yes/no).
//
// The pure part (seeds, parsing, the plan of reuse) is exported for the browser test.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { extensionPlan } from "./plans.js";

const EXTENSION_NAME = "StreamingT2V.Runs";
const EXTEND = "StreamingT2VExtend";
/** Node types whose seed starts at "fixed" (tests/host/test_node_defaults.py reads this list). */
export const SEED_FIXED_NODES = [
  "StreamingT2VExtend",
  "StreamingT2VInitialChunk",
  "StreamingT2VRefine",
  "StreamingT2VRandomizedBlendingWindows",
  "StreamingT2VExtendVideoModel",
];
export const RUN_READOUT_WIDGET_NAME = "streamingt2v_run_readout";
const RUN_UI_KEY = "streamingt2v_run";
const LAST_RUN_PROPERTY = "streamingt2v_last_run";
const AUTO = "auto";
const LINES = 3;
const LINE_HEIGHT_PX = 15;
const MARGIN_PX = 6;
/** A run summary older than this is fetched again when the node is drawn. */
const SUMMARY_MAX_AGE_MS = 5000;

// ---------------------------------------------------------------- seeds (streamingt2v_core/sampling/samplers.py)

const MASK64 = (1n << 64n) - 1n;

const GOLDEN = 0x9e3779b97f4a7c15n;

/** SplitMix64's finaliser (samplers.py _fmix64). */
function fmix64(z) {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** derive_seed(base, ...keys) of samplers.py (base mixed fully, then each key mixed on its own), as a decimal string. */
export function deriveSeed(base, ...keys) {
  let state = fmix64((BigInt.asUintN(64, BigInt(base)) + GOLDEN) & MASK64);
  for (const key of keys) {
    state = fmix64(state ^ fmix64((BigInt.asUintN(64, BigInt(key)) + 2n * GOLDEN) & MASK64));
  }
  return (state >> 1n).toString();
}

/** The seed of chunk `index`: chunk_seed(seed, index) = derive_seed(seed, index). */
export function chunkSeed(seed, index) {
  return deriveSeed(BigInt(Math.trunc(seed)), index);
}

// ---------------------------------------------------------------- the node's text inputs (nodes/extend.py)

/** "37: 12345" entries (new lines, ",", ";" or "|" between them) -> Map(chunk -> seed string). */
export function parseChunkSeeds(text) {
  const seeds = new Map();
  for (const raw of String(text ?? "").split(/[\n|,;]/)) {
    if (!raw.trim()) continue;
    const m = raw.match(/^\s*(\d+)\s*:\s*(\d+)\s*$/);
    if (!m) throw new Error(`chunk_seeds: expected entries like '37: 12345', got '${raw.trim()}'`);
    const index = Number(m[1]);
    if (index < 1) throw new Error("chunk_seeds: chunks start at 1 (chunk 0 is the first chunk as given)");
    if (seeds.has(index)) throw new Error(`chunk_seeds: chunk ${index} appears twice`);
    seeds.set(index, BigInt(m[2]).toString());
  }
  return seeds;
}

/** "0: a cat | 120: a dog" (or one per line) -> [[frame, prompt], ...] sorted by frame. */
export function parsePromptSchedule(text) {
  const entries = new Map();
  for (const raw of String(text ?? "").split(/[\n|]/)) {
    if (!raw.trim()) continue;
    const m = raw.match(/^\s*(\d+)\s*:\s*([\s\S]*?)\s*$/);
    if (!m || !m[2]) throw new Error(`prompt_schedule: expected entries like '0: a cat walks', got '${raw.trim()}'`);
    if (entries.has(Number(m[1]))) throw new Error(`prompt_schedule: frame ${m[1]} appears twice`);
    entries.set(Number(m[1]), m[2]);
  }
  return [...entries.entries()].sort((a, b) => a[0] - b[0]);
}

function promptFor(schedule, frame, positive) {
  let found;
  for (const [start, prompt] of schedule) if (start <= frame) found = prompt;
  return found ?? positive;
}

// ---------------------------------------------------------------- the plan of reuse

function rangeText(indices) {
  const parts = [];
  for (let i = 0; i < indices.length; i++) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j] + 1) j++;
    parts.push(j === i ? `${indices[i]}` : `${indices[i]}–${indices[j]}`);
    i = j;
  }
  return parts.join(", ");
}

const SETTING_KEYS = ["steps", "cfg", "sampler_name", "scheduler", "width", "height"];

/**
 * Which chunks the Extend node will take from the run store and which it will sample.
 *
 * @param {object} a
 * @param {object|null} a.summary the run's summary from the server (null: no run yet)
 * @param {object} a.values the node's widget values (null where a link sets them)
 * @param {string|null} a.positive the positive prompt's text when a text widget feeds it
 * @returns {{statuses: string[], lines: string[], title: string, error: boolean}}
 *   statuses[i] for chunk i (0 = first chunk): "keep", "reuse", "sample", or "unknown".
 */
export function runPlan({ summary, values, positive = null, runLabel = "" }) {
  const v = values;
  const unknown = Object.entries(v).filter(([, x]) => x == null).map(([k]) => k);
  const firstChunk = summary?.exists ? summary.timeline.first_chunk || 16 : 16;
  let plan;
  let seeds;
  let schedule;
  try {
    plan = extensionPlan(v.total_frames, firstChunk, 16, 8);
    seeds = parseChunkSeeds(v.chunk_seeds);
    schedule = parsePromptSchedule(v.prompt_schedule);
  } catch (err) {
    return { statuses: [], lines: [runLabel, `⚠ ${err.message}`, ""], title: err.message, error: true };
  }
  const n = plan.num_chunks;
  const statuses = new Array(n).fill("sample");
  statuses[0] = "first";
  const title = [];
  const caveats = [];
  if (!summary?.exists) {
    const regen = v.regenerate_from ?? 0;
    if (regen > 1) {
      const msg = `regenerate_from: the run holds no chunks yet`;
      return { statuses, lines: [runLabel, `⚠ ${msg}`, ""], title: msg, error: true };
    }
    return {
      statuses,
      lines: [runLabel, n > 1 ? `sample ${rangeText(range(1, n))}` : "the first chunk only", "nothing stored yet"],
      title: "No stored chunks for this run yet: every chunk is sampled.",
      error: false,
    };
  }
  const files = summary.timeline.files ?? [];
  const byParent = new Map();
  for (const version of summary.versions ?? []) {
    const key = `${version.index}|${version.parent}`;
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push(version);
  }
  let prev = files[0] ?? null; // assumes the same first chunk (the run's identity)
  let chain = prev != null;
  const regen = v.regenerate_from ?? 0;
  if (regen > files.length) {
    const msg = `regenerate_from: the run holds ${files.length} chunks, so at most ${files.length}, got ${regen}`;
    return { statuses, lines: [runLabel, `⚠ ${msg}`, ""], title: msg, error: true };
  }
  const promptKnown = positive != null || schedule.length > 0;
  if (positive == null) caveats.push("the positive prompt is not a text widget here: prompt changes are not seen");
  for (let i = 1; i < n; i++) {
    const spec = plan.chunks[i];
    if (i < regen) {
      statuses[i] = "keep";
      prev = files[i];
      title.push(`chunk ${i}: kept as stored (regenerate_from)`);
      continue;
    }
    const seed = seeds.has(i) ? seeds.get(i) : v.seed == null ? null : chunkSeed(v.seed, i);
    const prompt = promptFor(schedule, spec.new_range[0], positive);
    if (!chain || seed == null || unknown.some((k) => SETTING_KEYS.includes(k))) {
      statuses[i] = chain ? "unknown" : "sample";
      chain = false;
      title.push(`chunk ${i}: ${statuses[i] === "unknown" ? "set by a link: known when queued" : "sampled (what it is conditioned on changes)"}`);
      continue;
    }
    const match = (byParent.get(`${i}|${prev}`) ?? []).find(
      (ver) =>
        String(ver.seed) === seed &&
        SETTING_KEYS.every((k) => ver.settings?.[k] === v[k]) &&
        (!promptKnown || prompt == null || ver.prompt == null || ver.prompt === prompt)
    );
    if (match) {
      statuses[i] = "reuse";
      prev = match.file;
      title.push(`chunk ${i}: seed ${seed}, reused (${match.file})`);
    } else {
      statuses[i] = "sample";
      chain = false;
      title.push(`chunk ${i}: seed ${seed}, sampled (no stored chunk with these settings)`);
    }
  }
  const indices = (s) => statuses.map((x, i) => (x === s ? i : -1)).filter((i) => i > 0);
  const parts = [];
  for (const [status, word] of [["keep", "keep"], ["reuse", "reuse"], ["sample", "sample"], ["unknown", "unknown"]]) {
    const list = indices(status);
    if (list.length) parts.push(`${word} ${rangeText(list)}`);
  }
  caveats.unshift("assumes the model, VAE, first chunk and negative prompt are unchanged");
  return {
    statuses,
    lines: [runLabel, parts.join(" · ") || "the first chunk only", "if model, VAE and first chunk are unchanged"],
    title: [...title, "", ...caveats].join("\n"),
    error: false,
  };
}

function range(a, b) {
  return Array.from({ length: b - a }, (_, i) => a + i);
}

// ---------------------------------------------------------------- graph glue

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function inputOrigin(node, name) {
  const slot = node?.inputs?.findIndex((i) => i.name === name || i.widget?.name === name) ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const link = node.getInputLink?.(slot);
  return link ? node.graph?.getNodeById(link.origin_id) ?? null : null;
}

/** A widget's value when the graph runs; null when a link (other than a primitive) sets it. */
function valueOf(node, name, fallback = null) {
  const origin = inputOrigin(node, name);
  if (origin) {
    if (origin.type === "PrimitiveNode" || origin.type?.startsWith("Primitive")) {
      const w = origin.widgets?.[0];
      return w ? w.value : null;
    }
    return null;
  }
  const w = widget(node, name);
  return w ? w.value : fallback;
}

/** The positive prompt's text when a node with a literal `text` widget (CLIPTextEncode) feeds it. */
function positiveText(node) {
  const origin = inputOrigin(node, "positive");
  const w = widget(origin, "text");
  if (!w || inputOrigin(origin, "text")) return null;
  return typeof w.value === "string" ? w.value : null;
}

const summaries = new Map(); // run name -> {data, time, pending}

function summaryOf(name, node) {
  const entry = summaries.get(name);
  const now = Date.now();
  if (!entry || (!entry.pending && now - entry.time > SUMMARY_MAX_AGE_MS)) {
    const next = { data: entry?.data ?? null, time: now, pending: true };
    summaries.set(name, next);
    api
      .fetchApi(`/streamingt2v/runs/${encodeURIComponent(name)}`)
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        summaries.set(name, { data, time: Date.now(), pending: false });
        refreshRunReadout(node);
        node.graph?.setDirtyCanvas?.(true, false);
      })
      .catch(() => summaries.set(name, { data: null, time: Date.now(), pending: false }));
  }
  return summaries.get(name);
}

let listing = null; // {data, time, pending}: GET /streamingt2v/runs

function runsListing(node) {
  const now = Date.now();
  if (!listing || (!listing.pending && now - listing.time > SUMMARY_MAX_AGE_MS)) {
    listing = { data: listing?.data ?? null, time: now, pending: true };
    api
      .fetchApi("/streamingt2v/runs")
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        listing = { data, time: Date.now(), pending: false };
        refreshRunReadout(node);
        node.graph?.setDirtyCanvas?.(true, false);
      })
      .catch(() => (listing = { data: null, time: Date.now(), pending: false }));
  }
  return listing;
}

/** streamingt2v_core/runs/store.py slugify: the prompt part of an "auto" run's folder name. */
export function slugify(text, maxLen = 40) {
  const ascii = String(text ?? "").normalize("NFKD").replace(/[^\x00-\x7f]/g, "");
  let slug = ascii.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  if (slug.length > maxLen) {
    const cut = slug.slice(0, maxLen);
    slug = cut.slice(Math.floor(maxLen / 2)).includes("-") ? cut.slice(0, cut.lastIndexOf("-")) : cut;
  }
  return slug.replace(/^-+|-+$/g, "") || "run";
}

/** At most this many run summaries are read to find the "auto" run on a page that has not queued yet. */
const AUTO_CANDIDATES = 8;

/**
 * The run "auto" will most likely continue, before this page has queued: the most recently
 * updated stored run made with the same prompt text and working size. The server picks by the
 * first chunk's digest, which only the run can compute; the readout's caveat (first chunk
 * unchanged) covers the difference. {state: "unknown" | "pending" | "none" | "found", name}.
 */
function autoRunGuess(node) {
  const positive = positiveText(node);
  const width = valueOf(node, "width");
  const height = valueOf(node, "height");
  // positive null: not a literal text here (a ControlNet apply between...); the node then stores no prompt
  // either (nodes/extend.py positive_text), so such runs match by size alone.
  if (width == null || height == null) return { state: "unknown" };
  const entry = runsListing(node);
  if (entry.data == null) return { state: entry.pending ? "pending" : "unknown" };
  const runs = (entry.data.runs ?? []).filter((r) => !r.problem && r.name);
  const slug = `_${slugify(positive ?? "run")}_`;
  const named = runs.filter((r) => r.name.includes(slug));
  const candidates = (named.length ? named : runs).slice(0, AUTO_CANDIDATES);
  let pending = false;
  for (const run of candidates) {
    const s = summaryOf(run.name, node);
    if (s.data == null) {
      pending ||= s.pending;
      continue;
    }
    const base = s.data.base ?? {};
    if (s.data.exists && base.width === width && base.height === height && (base.prompt ?? null) === positive) {
      return { state: "found", name: run.name, run, bySize: positive == null };
    }
  }
  return { state: pending ? "pending" : "none" };
}

function computeRunReadout(node) {
  if (valueOf(node, "disk_cache", true) === false) {
    return { lines: ["run store off (disk_cache)", "every chunk sampled, nothing saved", ""], title: "", error: false };
  }
  const values = {};
  for (const k of ["total_frames", "seed", "steps", "cfg", "sampler_name", "scheduler", "width", "height"]) {
    values[k] = valueOf(node, k);
  }
  values.chunk_seeds = valueOf(node, "chunk_seeds", "") ?? "";
  values.prompt_schedule = valueOf(node, "prompt_schedule", "") ?? "";
  values.regenerate_from = valueOf(node, "regenerate_from", 0) ?? 0;
  let name = String(valueOf(node, "run_name", AUTO) ?? AUTO).trim();
  let label;
  let guessed = null;
  if (name === "" || name === AUTO) {
    const last = node.properties?.[LAST_RUN_PROPERTY];
    if (last) {
      name = last;
      label = `run: auto → ${name}`;
    } else {
      // A page that has not queued yet (a workflow just opened): ask the server for the runs.
      const guess = autoRunGuess(node);
      if (guess.state === "unknown") {
        return {
          lines: ["run: auto (chosen when queued)", "reuse known after the first queue", ""],
          title: "auto finds the run made from the same first chunk and size, or starts a new one; " +
            "the prompt or the size is set by a link here, so the stored run is known when queued",
          error: false,
        };
      }
      if (guess.state === "pending") return { lines: ["run: auto", "looking for a stored run…", ""], title: "", error: false };
      if (guess.state === "none") {
        if (values.total_frames == null) return { lines: ["run: auto · new", "total_frames set by a link: known when queued", ""], title: "", error: false };
        const plan = runPlan({ summary: null, values, positive: positiveText(node), runLabel: "run: auto · new" });
        plan.title = "No stored run of this prompt and size: auto starts a new one when queued.\n" + plan.title;
        return plan;
      }
      name = guess.name;
      guessed = { ...guess.run, bySize: guess.bySize };
      label = `run: auto → ${name}`;
    }
  } else {
    label = `run: ${name}`;
  }
  const entry = summaryOf(name, node);
  if (entry.pending && entry.data == null) return { lines: [label, "reading the run…", ""], title: "", error: false };
  const summary = entry.data;
  if (summary?.exists) label += ` · ${summary.timeline.files.length} chunks stored`;
  else label += " · new";
  if (values.total_frames == null) {
    return { lines: [label, "total_frames set by a link: known when queued", ""], title: "", error: false };
  }
  const plan = runPlan({ summary, values, positive: positiveText(node), runLabel: label });
  if (guessed) {
    // The run's videos (GET /streamingt2v/runs lists them with their base seed and date): the one of this seed.
    const videos = Array.isArray(guessed.timelines) ? guessed.timelines : [];
    const same = videos.find((t) => t.seed != null && String(t.seed) === String(values.seed));
    const extra = same ? [`its video of seed ${same.seed}: ${same.label ?? same.made ?? same.id}`]
      : videos.length ? [`${videos.length} video${videos.length > 1 ? "s" : ""}, none of seed ${values.seed}`]
      : ["created", "updated"].filter((k) => guessed[k]).map((k) => `${k} ${guessed[k]}`);
    plan.title =
      `auto: the most recent stored run of this ${guessed.bySize ? "size (the prompt is not a literal text here)" : "prompt and size"} ` +
      `is ${name}${extra.length ? ` (${extra.join(", ")})` : ""}; ` +
      "auto continues it when the first chunk is the same (another first chunk starts a new run).\n" + plan.title;
  }
  return plan;
}

export function refreshRunReadout(node) {
  const w = widget(node, RUN_READOUT_WIDGET_NAME);
  if (!w?.element) return null;
  let readout;
  try {
    readout = computeRunReadout(node);
  } catch (err) {
    readout = { lines: [`⚠ run readout failed: ${err?.message ?? err}`], title: String(err?.stack ?? err), error: true };
  }
  node.streamingt2vRunReadout = readout;
  const text = readout.lines.join("\n");
  if (w.element.textContent !== text) {
    w.element.textContent = text;
    w.element.classList.toggle("streamingt2v-readout-error", !!readout.error);
  }
  w.element.title = readout.title || text;
  return readout;
}

function addRunReadout(node) {
  if (widget(node, RUN_READOUT_WIDGET_NAME)) return;
  const element = document.createElement("div");
  element.className = "streamingt2v-readout streamingt2v-run-readout";
  Object.assign(element.style, {
    boxSizing: "border-box",
    width: "100%",
    height: "100%",
    minHeight: `${LINES * LINE_HEIGHT_PX + 8}px`,
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
  element.addEventListener("wheel", (event) => {
    event.preventDefault();
    app.canvas?.processMouseWheel?.(event);
  });
  const height = LINES * LINE_HEIGHT_PX + 8 + 2 * MARGIN_PX;
  const w = node.addDOMWidget(RUN_READOUT_WIDGET_NAME, "streamingt2v-run-readout", element, {
    serialize: false,
    hideOnZoom: false,
    margin: MARGIN_PX,
    getValue: () => element.textContent,
    setValue: () => {},
    getMinHeight: () => height,
    getMaxHeight: () => height,
    onDraw: () => refreshRunReadout(node),
  });
  w.serialize = false;
  refreshRunReadout(node);
}

/** A new node's seed control starts at "fixed" (a loaded workflow then sets its saved value). */
function fixSeedControl(node) {
  const seed = widget(node, "seed");
  const control = seed?.linkedWidgets?.[0] ?? widget(node, "control_after_generate");
  if (control && control.value === "randomize") control.value = "fixed";
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

  async setup() {
    api.addEventListener("executed", (event) => {
      const run = event.detail?.output?.[RUN_UI_KEY]?.[0];
      if (!run?.name) return;
      summaries.delete(run.name);
      listing = null;
      const node = app.graph?.getNodeById?.(Number(event.detail.node)) ?? app.graph?.getNodeById?.(event.detail.node);
      if (node?.type === EXTEND) {
        node.properties = node.properties ?? {};
        node.properties[LAST_RUN_PROPERTY] = run.name;
        refreshRunReadout(node);
      }
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (SEED_FIXED_NODES.includes(nodeData.name) && nodeData.name !== EXTEND) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        fixSeedControl(this);
      });
    }
    if (nodeData.name !== EXTEND) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      fixSeedControl(this);
      // Added once every extension's onNodeCreated has run (their order is not fixed), so the run
      // readout always comes below the plan readout of streamingt2v.js.
      queueMicrotask(() => {
        addRunReadout(this);
        const size = this.computeSize();
        this.setSize([Math.max(this.size[0], size[0]), Math.max(this.size[1], size[1])]);
      });
    });
    chain(nodeType.prototype, "onWidgetChanged", function () {
      refreshRunReadout(this);
    });
    chain(nodeType.prototype, "onConfigure", function () {
      refreshRunReadout(this);
    });
  },
});

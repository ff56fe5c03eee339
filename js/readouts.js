// Text of the readouts that streamingt2v.js shows on the StreamingT2V nodes.
//
// Pure functions from plain numbers to lines of text (no DOM, no app), so the browser test can
// check them and the graph glue stays small. The host also loads this file as an extension
// module, where it does nothing.

import { extensionPlan, refinerPlan, windowOverlaps } from "./plans.js";

/** Frames the first chunk of the extender holds; the text-to-video model makes 16. */
export const DEFAULT_FIRST_CHUNK = 16;
/** StreamingT2V was trained and is shown at 8 fps (official code). */
export const DEFAULT_FPS = 8;
/** How many ranges a one-line plan shows before it elides the middle ("…"). */
const MAX_RANGES_SHOWN = 4;

/** Inclusive human range of a [start, end) window: [16, 24) -> "16–23". */
export function formatRange(range) {
  const [start, end] = range;
  return end - start === 1 ? `${start}` : `${start}–${end - 1}`;
}

/** "a | b | c | … | y | z": the first and last few ranges of a long plan. */
export function formatRanges(ranges, maxShown = MAX_RANGES_SHOWN) {
  const text = ranges.map(formatRange);
  if (text.length <= maxShown) return text.join(" | ");
  const head = text.slice(0, maxShown - 2);
  const tail = text.slice(-2);
  return [...head, "…", ...tail].join(" | ");
}

/** Seconds with two decimals, plus m:ss from one minute on: "150.00 s (2:30)". */
export function formatDuration(frames, fps) {
  if (!(fps > 0)) return "? s";
  const seconds = frames / fps;
  let text = `${seconds.toFixed(2)} s`;
  if (seconds >= 60) {
    const whole = Math.round(seconds);
    text += ` (${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")})`;
  }
  return text;
}

function formatFps(fps) {
  return Number.isInteger(fps) ? `${fps}` : `${Number(fps.toFixed(3))}`;
}

/** Tooltip lines saying where values came from ("fps: fps of #9"). */
function sources(named) {
  return Object.entries(named)
    .filter(([, source]) => source)
    .map(([name, source]) => `${name}: ${source}`);
}

function fail(message) {
  return { lines: [`⚠ ${message}`], error: true, title: message };
}

/**
 * Readout of the extender: resulting length, duration and chunk plan.
 * @param {{totalFrames:number|null, fps:number, fpsSource?:string, firstChunk?:number,
 *   chunk?:number, condFrames?:number, totalSource?:string}} args
 * @returns {{lines:string[], error:boolean, title:string, plan?:object}}
 */
export function extenderReadout({
  totalFrames,
  fps = DEFAULT_FPS,
  fpsSource = "",
  firstChunk = DEFAULT_FIRST_CHUNK,
  chunk = 16,
  condFrames = 8,
  totalSource = "",
  firstSource = "",
}) {
  if (totalFrames == null) {
    return {
      lines: [`total_frames: set by its input${totalSource ? ` (${totalSource})` : ""}`, "plan known when the graph runs"],
      error: false,
      title: "",
    };
  }
  let plan;
  try {
    plan = extensionPlan(totalFrames, firstChunk, chunk, condFrames);
  } catch (err) {
    return fail(err.message);
  }
  const newPerChunk = chunk - condFrames;
  const extra = plan.num_chunks - 1;
  const last = plan.chunks[plan.chunks.length - 1];
  const lastNew = last.new_range[1] - last.new_range[0];
  // As a sum that adds up to the frame count: "8 chunks = 16 + 6 × 8 + 6 new".
  const full = lastNew < newPerChunk ? extra - 1 : extra;
  const terms = [`${firstChunk}`];
  if (full > 0) terms.push(`${full} × ${newPerChunk}`);
  if (full < extra) terms.push(`${lastNew}`);
  let chunks = `${plan.num_chunks} chunk${plan.num_chunks === 1 ? "" : "s"}`;
  if (extra > 0) chunks += ` = ${terms.join(" + ")} new`;
  const lines = [
    `${totalFrames} frames · ${formatDuration(totalFrames, fps)} at ${formatFps(fps)} fps`,
    chunks,
    `new: ${formatRanges(plan.chunks.map((c) => c.new_range))}`,
  ];
  const title = [
    ...sources({ "total_frames": totalSource, "first chunk": firstSource, fps: fpsSource }),
    ...plan.chunks.map((c) =>
      c.index === 0
        ? `chunk 0: frames ${formatRange(c.new_range)}`
        : `chunk ${c.index}: conditioned on ${formatRange(c.cond_range)} → adds ${formatRange(c.new_range)}` +
          (c.keep_range[1] - c.keep_range[0] < newPerChunk ? ` (generated whole, trimmed)` : "")
    ),
  ].join("\n");
  return { lines, error: false, title, plan };
}

/**
 * Readout of the refiner: its overlapping windows over the input video.
 * @param {{numFrames:number|null, source?:string, chunk:number, overlap:number, fps?:number,
 *   fpsSource?:string}} args numFrames null when the input length is only known at run time.
 */
export function refinerReadout({
  numFrames,
  source = "",
  chunk,
  overlap,
  fps = DEFAULT_FPS,
  fpsSource = "",
  blendMode = "randomized",
}) {
  // The same checks as the Refine node (nodes/context_blend.validate_window_settings and the
  // "fewer than one chunk" check), shown while editing instead of at run time.
  if (!Number.isInteger(chunk) || chunk < 1) return fail(`chunk must be an integer >= 1, got ${chunk}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= chunk) {
    return fail(`overlap must be in [0, chunk - 1] = [0, ${chunk - 1}], got ${overlap}`);
  }
  if (blendMode === "randomized" && overlap < 1) return fail("overlap must be >= 1 for blend_mode randomized");
  if (numFrames != null && numFrames < chunk) {
    return fail(`${numFrames} frames: fewer than one chunk (${chunk}); lower chunk`);
  }
  const stride = chunk - overlap;
  if (numFrames == null) {
    return {
      lines: [
        "input length known when the graph runs",
        `windows of ${chunk} frames every ${stride} (overlap ${overlap})`,
        `e.g. 240 frames → ${refinerPlan(240, chunk, overlap).length} windows`,
      ],
      error: false,
      title: "The refiner's input is not made by a StreamingT2V node of this graph, so its length is only known at run time.",
    };
  }
  let windows;
  try {
    windows = refinerPlan(numFrames, chunk, overlap);
  } catch (err) {
    return fail(err.message);
  }
  const overlaps = windowOverlaps(windows);
  const lastOverlap = overlaps.length ? overlaps[overlaps.length - 1] : 0;
  let summary = `${windows.length} window${windows.length === 1 ? "" : "s"} of ${Math.min(chunk, numFrames)}`;
  if (windows.length > 1) {
    summary += lastOverlap > overlap ? ` (overlap ${overlap}, last ${lastOverlap})` : ` (overlap ${overlap})`;
  }
  const lines = [
    `${numFrames} frames · ${formatDuration(numFrames, fps)} at ${formatFps(fps)} fps`,
    summary,
    `windows: ${formatRanges(windows)}`,
  ];
  const title = [
    ...sources({ frames: source, fps: fpsSource }),
    "(windows count latent frames: one per video frame with the SD VAE of MS-Vid2Vid-XL)",
    ...windows.map((w, i) => `window ${i}: frames ${formatRange(w)}` + (i > 0 ? ` (overlap ${overlaps[i - 1]})` : "")),
  ].join("\n");
  return { lines, error: false, title, windows };
}

/** Readout of the initial chunk: frames, resolution, latent size and duration. */
export function initialChunkReadout({ frames, width, height, fps = DEFAULT_FPS, fpsSource = "" }) {
  if (width % 8 !== 0 || height % 8 !== 0) {
    return fail(`width and height must be multiples of 8 (the VAE's factor), got ${width}×${height}`);
  }
  const lines = [
    `${frames} frames at ${width}×${height}`,
    `latent ${width / 8}×${height / 8} · ${formatDuration(frames, fps)} at ${formatFps(fps)} fps`,
  ];
  return { lines, error: false, title: sources({ fps: fpsSource }).join("\n") };
}

/** Readout of the Frame Plan node, live as its widgets change (the node prints the same after a run). */
export function framePlanReadout({ totalFrames, fps = DEFAULT_FPS, firstChunk = DEFAULT_FIRST_CHUNK, refineChunk = 24, refineOverlap = 8 }) {
  const ext = extenderReadout({ totalFrames, fps, firstChunk });
  if (ext.error) return ext;
  if (totalFrames < refineChunk) {
    return {
      lines: [ext.lines[0], `extender: ${ext.lines[1]}`, `refiner: video shorter than one ${refineChunk}-frame window`],
      error: false,
      title: ext.title,
      plan: ext.plan,
    };
  }
  const ref = refinerReadout({ numFrames: totalFrames, chunk: refineChunk, overlap: refineOverlap, fps, blendMode: null });
  if (ref.error) return ref;
  return {
    lines: [ext.lines[0], `extender: ${ext.lines[1]}`, `refiner: ${ref.lines[1]}`],
    // The full plans (every chunk, every window) in the tooltip.
    error: false,
    title: `${ext.title}\n\n${ref.title}`,
    plan: ext.plan,
    windows: ref.windows,
  };
}

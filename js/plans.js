// Frame plans of StreamingT2V, for the readouts of the web extension (streamingt2v.js).
//
// A line-by-line mirror of streamingt2v_core/sampling/plans.py (extension_plan, refiner_plan):
// same arguments, same results, same checks. Keep the two identical; tests/browser/ compares
// them for many values (with Node.js, and in the browser through the module the host serves).
// Pure functions, no imports: the host also loads this file as an extension module, where it
// does nothing.

function checkInt(name, value, minimum) {
  if (typeof value !== "number" || !Number.isInteger(value) || value < minimum) {
    throw new RangeError(`${name} must be an integer >= ${minimum}, got ${value}`);
  }
  return value;
}

/**
 * Chunk plan of the autoregressive extension for a video of `totalFrames` frames.
 *
 * The first chunk gives frames [0, firstChunk). Every later chunk generates `chunk` frames
 * conditioned on the last `condFrames` frames of the video so far and appends the other
 * `chunk - condFrames`; the last chunk may add fewer (generated whole, then trimmed), so the
 * video has exactly `totalFrames` frames.
 *
 * @returns {{total_frames:number, num_chunks:number, frames_generated:number,
 *   first_chunk:number, chunk:number, cond_frames:number,
 *   chunks:{index:number, cond_range:number[], new_range:number[], keep_range:number[]}[]}}
 * @throws {RangeError} on the inputs plans.py rejects, naming the argument.
 */
export function extensionPlan(totalFrames, firstChunk = 16, chunk = 16, condFrames = 8) {
  checkInt("cond_frames", condFrames, 1);
  checkInt("first_chunk", firstChunk, 1);
  if (firstChunk < condFrames) {
    throw new RangeError(
      `first_chunk must be >= cond_frames (${condFrames}) so it can condition the next chunk, got ${firstChunk}`
    );
  }
  checkInt("chunk", chunk, 1);
  if (chunk <= condFrames) {
    throw new RangeError(`chunk must be > cond_frames (${condFrames}) to add new frames, got ${chunk}`);
  }
  if (typeof totalFrames !== "number" || !Number.isInteger(totalFrames) || totalFrames < firstChunk) {
    throw new RangeError(`total_frames must be >= first_chunk (${firstChunk}), one chunk; got ${totalFrames}`);
  }

  const newPerChunk = chunk - condFrames;
  const chunks = [{ index: 0, cond_range: [0, 0], new_range: [0, firstChunk], keep_range: [0, firstChunk] }];
  let end = firstChunk;
  while (end < totalFrames) {
    const nNew = Math.min(newPerChunk, totalFrames - end);
    chunks.push({
      index: chunks.length,
      cond_range: [end - condFrames, end],
      new_range: [end, end + nNew],
      keep_range: [condFrames, condFrames + nNew],
    });
    end += nNew;
  }
  return {
    total_frames: totalFrames,
    num_chunks: chunks.length,
    chunks,
    frames_generated: firstChunk + (chunks.length - 1) * newPerChunk,
    first_chunk: firstChunk,
    chunk,
    cond_frames: condFrames,
  };
}

/**
 * Overlapping [start, end) windows of the refiner, covering every frame: windows start at
 * 0, C - O, 2 (C - O), ... while they fit, then one more window is aligned to the end of the
 * video (the official code drops those frames instead). A video no longer than one chunk is a
 * single window.
 *
 * @returns {number[][]} [[start, end], ...]
 * @throws {RangeError} num_frames < 1, chunk < 1, or overlap outside [0, chunk - 1].
 */
export function refinerPlan(numFrames, chunk = 24, overlap = 8) {
  checkInt("num_frames", numFrames, 1);
  checkInt("chunk", chunk, 1);
  if (typeof overlap !== "number" || !Number.isInteger(overlap) || overlap < 0 || overlap >= chunk) {
    throw new RangeError(`overlap must be an integer in [0, chunk - 1] = [0, ${chunk - 1}], got ${overlap}`);
  }
  if (numFrames <= chunk) return [[0, numFrames]];
  const stride = chunk - overlap;
  const windows = [];
  let start = 0;
  while (start + chunk <= numFrames) {
    windows.push([start, start + chunk]);
    start += stride;
  }
  if (windows[windows.length - 1][1] < numFrames) windows.push([numFrames - chunk, numFrames]);
  return windows;
}

/** Overlap of each window with its left neighbour (one entry per boundary), as plans.window_overlaps. */
export function windowOverlaps(windows) {
  const overlaps = [];
  for (let i = 1; i < windows.length; i++) overlaps.push(windows[i - 1][1] - windows[i][0]);
  return overlaps;
}

"""Frame plan: what the extender and the refiner will do for a target length, before any sampling.

Artists size a long video in frames and seconds; this node answers "how many chunks, how many
refiner windows, how long at this fps" so a graph can be planned (and wired: its INT outputs can
drive the extender's `total_frames`).
"""
from __future__ import annotations

from comfy_api.latest import io, ui

from streamingt2v_core.sampling.plans import extension_plan, refiner_plan


def describe_plan(total_frames: int, fps: float, first_chunk: int, refine_chunk: int, refine_overlap: int) -> tuple[int, int, str]:
    """Return (extension chunks, refiner windows, a human-readable summary)."""
    if not 0 <= refine_overlap < refine_chunk:
        raise ValueError(f"refine_overlap: must be smaller than refine_chunk ({refine_chunk}) so each window moves the "
                         f"plan on, got {refine_overlap}")
    ext = extension_plan(total_frames, first_chunk=first_chunk)
    windows = refiner_plan(total_frames, chunk=refine_chunk, overlap=refine_overlap) if total_frames >= refine_chunk else []
    lines = [
        f"{total_frames} frames = {total_frames / fps:.2f} s at {fps:g} fps",
        f"extender: {ext.num_chunks} chunks (first {first_chunk} frames, then {ext.num_chunks - 1} x 8 new frames"
        + (f", last chunk trimmed by {ext.frames_generated - total_frames}" if ext.frames_generated > total_frames else "")
        + ")",
    ]
    if windows:
        lines.append(f"refiner: {len(windows)} windows of {refine_chunk} frames, overlap {refine_overlap}; last window {windows[-1][0]}..{windows[-1][1] - 1}")
    else:
        lines.append(f"refiner: video shorter than one {refine_chunk}-frame window")
    return ext.num_chunks, len(windows), "\n".join(lines)


class FramePlanNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VFramePlan",
            display_name="StreamingT2V Frame Plan",
            category="StreamingT2V/utils",
            description="Shows the extender's chunk plan and the refiner's window plan for a target length, and its duration.",
            inputs=[
                io.Int.Input("total_frames", default=240, min=8, max=100000, tooltip="Length of the long video in frames (the first chunk included)."),
                io.Float.Input("fps", default=8.0, min=1.0, max=120.0, step=1.0, tooltip="Playback rate used to report the duration; StreamingT2V was trained at 8 fps."),
                io.Int.Input("first_chunk", default=16, min=8, max=1024, tooltip="Frames of the first chunk (16 from the text-to-video model)."),
                io.Int.Input("refine_chunk", default=24, min=2, max=1024, tooltip="Frames per refiner window (the paper uses 24)."),
                io.Int.Input("refine_overlap", default=8, min=0, max=1023, tooltip="Frames shared by neighbouring refiner windows (the paper uses 8); must be smaller than refine_chunk."),
            ],
            outputs=[
                io.Int.Output("frames", display_name="frames", tooltip="The target length, to wire into the extender's total_frames."),
                io.Int.Output("extension_chunks", display_name="extension_chunks", tooltip="Chunks the extender samples, the first included."),
                io.Int.Output("refiner_windows", display_name="refiner_windows", tooltip="Windows the refiner denoises at every step."),
                io.Float.Output("seconds", display_name="seconds", tooltip="Duration at the given fps."),
                io.String.Output("summary", display_name="summary", tooltip="The plan in words."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, total_frames: int, fps: float, first_chunk: int, refine_chunk: int, refine_overlap: int) -> io.NodeOutput:
        chunks, windows, summary = describe_plan(total_frames, fps, first_chunk, refine_chunk, refine_overlap)
        return io.NodeOutput(total_frames, chunks, windows, total_frames / fps, summary, ui=ui.PreviewText(summary))


NODES = [FramePlanNode]

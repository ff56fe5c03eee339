"""The Drift & Seams metric node: where along a long video the joins stutter and the colours (and,
with a CLIP_VISION model, the subject) drift away from the anchor chunk.

An output node like the other metric nodes (:mod:`nodes.metrics`, whose report writer, plot image,
result box and series helpers it uses): the summary and a plot thumbnail on the node, the numbers as outputs, a plot IMAGE with three
panels over the frame axis, and a JSON report under ``output/StreamingT2V/metrics/``. The numbers
come from :func:`streamingt2v_core.metrics.drift.measure_drift_and_seams`; this node only picks the
frames to embed, runs the host's image encoder on them and checks what it returns.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from comfy_api.latest import io

from streamingt2v_core.metrics.drift import (
    DRIFT_PLANS,
    DriftSeamsResult,
    chunk_segments,
    chunk_windows,
    clip_sample_frames,
    measure_drift_and_seams,
)
from streamingt2v_core.metrics.plot import plot_drift_and_seams

from .metrics import Series, _plot_image, _prefix_input, _progress, _result_ui, _series, _write_report
from .validation import alpha_note, unit_range

_EMBED_BATCH = 16


def encode_frames(clip_vision: Any, images: torch.Tensor, frames: list[int],
                  progress=None) -> torch.Tensor:
    """Pooled image embeddings ``[len(frames), D]`` (float32, CPU) of the chosen frames with a host
    CLIP_VISION model, in batches; a model of another kind gets an error naming ``clip_vision``."""
    if not callable(getattr(clip_vision, "encode_image", None)):
        raise ValueError(f"clip_vision: expected a CLIP_VISION model (CLIPVisionLoader) with encode_image, "
                         f"got {type(clip_vision).__name__}")
    rows: list[torch.Tensor] = []
    for start in range(0, len(frames), _EMBED_BATCH):
        batch = images[frames[start:start + _EMBED_BATCH]]
        output = clip_vision.encode_image(batch, crop=True)
        try:
            embeds = output["image_embeds"]
        except (KeyError, AttributeError, TypeError):
            embeds = None
        if not isinstance(embeds, torch.Tensor):
            raise ValueError("clip_vision: this image encoder returns no pooled image embedding (image_embeds); "
                             "use a CLIP, SigLIP or DINOv2 vision model from CLIPVisionLoader")
        if embeds.dim() != 2 or embeds.shape[0] != batch.shape[0]:
            raise ValueError(f"clip_vision: expected one pooled embedding per frame, [{batch.shape[0]}, D], "
                             f"got image_embeds of shape {tuple(embeds.shape)}")
        if rows and embeds.shape[1] != rows[0].shape[1]:
            raise ValueError(f"clip_vision: embedding size changed between batches ({rows[0].shape[1]} then "
                             f"{embeds.shape[1]})")
        embeds = embeds.detach().to("cpu", torch.float32)
        bad = [frames[start + i] for i in range(embeds.shape[0]) if not torch.isfinite(embeds[i]).all()]
        if bad:
            raise ValueError(f"clip_vision: gave NaN or infinite embeddings for frames {bad[:8]} (broken weights, "
                             "or an fp16 overflow: try loading it in fp32)")
        rows.append(embeds)
        if progress is not None:
            progress(start + batch.shape[0])
    return torch.cat(rows)


def summary_text(result: DriftSeamsResult, report_path: str, with_clip: bool) -> str:
    """The text shown on the node."""
    worst = result.worst_join
    flagged = result.flagged_joins
    lines = [f"Seams: score {result.seam_score:.3f} (1.0 = seamless); {len(flagged)} of {len(result.joins)} joins stand out"
             + (": " + ", ".join(f"frame {j.frame} (x{j.ratio:.2f})" for j in flagged[:6]) if flagged else "")
             + ("" if worst is None or flagged else f"; worst join frame {worst.frame} (x{worst.ratio:.2f})")]
    lines.append(f"Colour drift vs the anchor chunk: last chunk dE {result.final_delta_e:.2f}, max {result.max_delta_e:.2f}, "
                 f"{result.drift_per_chunk:.2f} dE per chunk (about 2.3 is just noticeable)")
    if with_clip:
        last = result.chunks[-1].clip_similarity
        lines.append(f"Image similarity to the anchor frame: last chunk {last:.3f}, "
                     f"{result.clip_drift_per_chunk:+.4f} per chunk ({len(result.clip_frames)} frames embedded)")
    else:
        lines.append("No clip_vision connected: colour statistics only (connect a CLIPVisionLoader to measure "
                     "how the subject drifts)")
    lines += [f"note: {note}" for note in result.notes[:4]]
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


class DriftSeamsNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VDriftSeams",
            display_name="StreamingT2V Drift & Seams",
            category="StreamingT2V/metrics",
            description="Where a long video loses quality: a seam ratio at every join of the chunk plan (change "
                        "across the join over the change inside the chunks around it; which joins stand out), and "
                        "the drift of every chunk from the anchor chunk: mean colour and spread in CIELAB and, with a "
                        "CLIP_VISION model, image-embedding similarity to the anchor frame.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames to evaluate (more than one chunk)."),
                io.Combo.Input("chunk_plan", options=list(DRIFT_PLANS), default="extension",
                               tooltip="Whose joins to score: the extender's chunks (a first chunk, then new frames "
                                       "per chunk) or the refiner's 24-frame windows overlapping by 8."),
                io.Int.Input("first_chunk", default=16, min=1, max=4096,
                             tooltip="Extension plan: frames of the first chunk (the Initial Chunk's length, or the "
                                     "IMAGE batch given to Extend as first_chunk)."),
                io.Int.Input("new_frames_per_chunk", default=8, min=1, max=4096,
                             tooltip="Extension plan: frames each later chunk adds (8: chunks of 16 conditioned on "
                                     "the last 8)."),
                io.Int.Input("clip_frames_per_chunk", default=8, min=1, max=64,
                             tooltip="With clip_vision: frames per chunk to embed, evenly spaced and ending on the "
                                     "chunk's last frame (plus the anchor frame 0). Fewer is faster on a CPU."),
                _prefix_input("StreamingT2V/metrics/drift_seams"),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional image encoder (CLIPVisionLoader, e.g. the CLIP ViT-H/14 the "
                                            "extender's APM uses): adds each chunk's similarity to the anchor frame. "
                                            "Without it only colour statistics are measured."),
            ],
            outputs=[
                io.Float.Output("seam_score", display_name="seam_score",
                                tooltip="Mean change at the joins over the mean change inside chunks (1.0 = seamless; "
                                        "bench/bench_seams.py's seam score)."),
                io.String.Output("flagged_joins", display_name="flagged_joins",
                                 tooltip="First frame after each join that stands out, comma separated (empty: none)."),
                io.Float.Output("color_drift", display_name="color_drift",
                                tooltip="CIE76 delta E between the last chunk's and the anchor chunk's mean colour "
                                        "(CIELAB; about 2.3 is just noticeable)."),
                Series.Output("series", display_name="series",
                              tooltip="Per-pair frame change with the joins, per-frame colour drift and similarities."),
                io.Image.Output("plot", display_name="plot",
                                tooltip="Panels over the frame axis: frame change with the joins that stand out in red, "
                                        "colour drift, and (with clip_vision) similarity to the anchor; grey: chunk starts."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, chunk_plan: str, first_chunk: int, new_frames_per_chunk: int,
                clip_frames_per_chunk: int, filename_prefix: str, clip_vision: Any = None) -> io.NodeOutput:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] < 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected an IMAGE batch [frames, height, width, 3], got {got}")
        # The rules of every node (nodes/validation.py): alpha dropped with a note, 0..255 or [-1, 1] refused, values
        # a little outside [0, 1] clamped with a note; NaN frames are left out below, not refused.
        input_notes = [n for n in [alpha_note(images, "images")] if n]
        images = images[..., :3]
        num_frames = int(images.shape[0])
        # The plan and the anchor first: what cannot be measured is refused before any encoder runs.
        windows = chunk_windows(chunk_plan, num_frames, first_chunk, new_frames_per_chunk, name="images")
        segments = chunk_segments(windows, num_frames)
        finite = torch.isfinite(images.reshape(num_frames, -1)).all(dim=1)
        if bool(finite.any()):
            _, note = unit_range(images if bool(finite.all()) else images[finite], "images")
            if note:
                images = images.clamp(0.0, 1.0)  # NaN stays NaN: those frames are left out
                input_notes.append(note)
        anchor_start, anchor_end = segments[0]
        if not finite[anchor_start:anchor_end].any():
            raise ValueError(f"images: every frame of the anchor chunk (frames {anchor_start}..{anchor_end - 1}) holds "
                             "NaN or inf values; there is nothing to measure the drift against")
        embed_frames: list[int] = []
        if clip_vision is not None:
            skip = [int(i) for i in torch.nonzero(~finite).flatten()]
            if 0 in skip:
                raise ValueError("images: frame 0 (the anchor) holds NaN or inf values; the similarity to the anchor "
                                 "cannot be measured (disconnect clip_vision for the colour statistics)")
            embed_frames = clip_sample_frames(segments, clip_frames_per_chunk, skip)
        update = _progress(num_frames + len(embed_frames))
        embeddings = None
        if embed_frames:
            embeddings = encode_frames(clip_vision, images, embed_frames,
                                       progress=lambda done: update(done, 0))
        result = measure_drift_and_seams(images, chunk_plan, first_chunk=first_chunk,
                                         new_frames_per_chunk=new_frames_per_chunk, embeddings=embeddings,
                                         embedded_frames=embed_frames or None, name="images",
                                         progress=lambda done, _total: update(len(embed_frames) + done, 0))
        if not math.isfinite(result.seam_score):
            raise ValueError("images: no two consecutive frames are finite (NaN or inf frames everywhere); "
                             "the seams cannot be measured")
        report = {**result.to_report(), "clip_vision": None if clip_vision is None else type(clip_vision).__name__,
                  "clip_frames_per_chunk": clip_frames_per_chunk if clip_vision is not None else None}
        path = _write_report(filename_prefix, report)
        plot = plot_drift_and_seams(result)
        flagged = [j.frame for j in result.flagged_joins]
        series = _series("Drift & Seams", "mean |frame change|", [i + 0.5 for i in range(num_frames - 1)],
                         result.pair_change, num_frames, flagged, joins=report["joins"],
                         frame_delta_e=result.frame_delta_e, clip_frames=result.clip_frames,
                         clip_similarity=result.clip_similarity, windows=[list(w) for w in result.windows])
        plot_image = _plot_image(plot)
        # Numbers and plot in the node's fixed-size result box, like the other metric nodes: the
        # host's own preview would grow the node after every run, over its neighbours.
        summary = summary_text(result, path, clip_vision is not None) + "".join(f"\nnote: {n}" for n in input_notes)
        return io.NodeOutput(result.seam_score, ", ".join(str(f) for f in flagged), result.final_delta_e, series,
                             plot_image, ui=_result_ui(cls, plot_image, summary))


NODES = [DriftSeamsNode]

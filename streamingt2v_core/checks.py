"""Cheap checks for non-finite values and value ranges, with errors that name the input.

NaN and inf never pass silently: a NaN pixel in a first chunk spreads through the VAE and the CAM
into every later chunk, a NaN weight turns every output into NaN, and uint8 conversion would hide
both (NaN becomes 0). The nodes call these helpers on what they are given before any sampling, and
on what the model returns at every sampler step (:class:`FiniteWatch`), so a failure is reported
where it starts: which input, which frames, which step, and what to try.

Costs (``bench/bench_finite_checks.py``): one read pass over the tensor and no large temporary
(frames are scanned in blocks with ``aminmax``, weights with a float32 ``sum``); the exact per-frame
search runs only once something was found.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

__all__ = [
    "NonFiniteError",
    "all_finite",
    "nonfinite_frames",
    "describe_indices",
    "frames_value_range",
    "check_frames_finite",
    "unit_range",
    "nonfinite_parameters",
    "FiniteWatch",
]

#: Frames per block of the frame scans: bounds the temporaries for long videos.
_FRAME_BLOCK = 64
#: Float frames within this far outside [0, 1] are clamped with a note; further out they are another range.
RANGE_CLAMP_LIMIT = 0.5


class NonFiniteError(ValueError):
    """NaN or inf values found; ``input_name`` is the node input the message starts with.

    ``step`` (1-based) and ``total_steps`` are set when a sampler step produced them, ``frames`` lists
    the (latent) frame indices that hold them when known.
    """

    def __init__(self, message: str, input_name: str, *, step: int | None = None, total_steps: int | None = None,
                 frames: list[int] | None = None) -> None:
        super().__init__(message)
        self.input_name = input_name
        self.step = step
        self.total_steps = total_steps
        self.frames = list(frames or [])


def all_finite(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` holds no NaN or inf (integer and bool tensors always do).

    One float32 ``sum`` (no temporary the size of the tensor): a NaN or an inf makes the sum
    non-finite; only then (or if huge finite values overflowed the sum) the exact test runs.
    """
    if not torch.is_tensor(tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
        return True
    if tensor.numel() == 0:
        return True
    if bool(torch.isfinite(tensor.sum(dtype=torch.float32 if tensor.is_floating_point() else None))):
        return True
    return bool(torch.isfinite(tensor).all())


def _frame_blocks(frames: torch.Tensor, dim: int) -> Iterable[tuple[int, torch.Tensor]]:
    n = frames.shape[dim]
    for start in range(0, n, _FRAME_BLOCK):
        yield start, frames.narrow(dim, start, min(_FRAME_BLOCK, n - start))


def nonfinite_frames(frames: torch.Tensor, dim: int = 0) -> list[int]:
    """Indices along ``dim`` of the frames that hold NaN or inf, scanned in blocks."""
    if not torch.is_tensor(frames) or not frames.is_floating_point():
        return []
    bad: list[int] = []
    for start, block in _frame_blocks(frames, dim):
        if all_finite(block):
            continue
        per_frame = torch.isfinite(block.movedim(dim, 0).reshape(block.shape[dim], -1)).all(dim=1)
        bad += [start + int(i) for i in torch.nonzero(~per_frame).flatten()]
    return bad


def describe_indices(indices: list[int], limit: int = 6) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``; long lists end with ``"... (n in all)"``."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    text = ", ".join(parts[:limit])
    if len(parts) > limit:
        text += f", ... ({len(set(indices))} in all)"
    return text


def frames_value_range(frames: torch.Tensor) -> tuple[float, float]:
    """(min, max) over all values, one block of frames at a time; NaN when a NaN is present."""
    lo, hi = float("inf"), float("-inf")
    for _, block in _frame_blocks(frames, 0):
        b_lo, b_hi = torch.aminmax(block.detach())
        b_lo, b_hi = float(b_lo), float(b_hi)
        if b_lo != b_lo or b_hi != b_hi:  # NaN propagates through aminmax
            return float("nan"), float("nan")
        lo, hi = min(lo, b_lo), max(hi, b_hi)
    return lo, hi


def check_frames_finite(frames: torch.Tensor, name: str, consequence: str, dim: int = 0,
                        unit: str = "frames") -> None:
    """Raise :class:`NonFiniteError` naming ``name`` and the frames that hold NaN or inf.

    ``consequence`` says what the node would do with them (why it refuses), e.g. "the extender conditions every
    chunk on the last 8 frames, so NaN would spread into the whole video".
    """
    bad = nonfinite_frames(frames, dim)
    if not bad:
        return
    total = frames.shape[dim]
    single = unit[:-1] if unit.endswith("s") else unit
    if total == 1:
        which = f"{single} 0 holds"
    elif len(bad) == total:
        which = f"every {single} holds"
    elif len(bad) == 1:
        which = f"{single} {bad[0]} of {total} holds"
    else:
        which = f"{unit} {describe_indices(bad)} of {total} hold"
    raise NonFiniteError(f"{name}: {which} NaN or inf values (a failed decode upstream, e.g. a VAE overflowing in "
                         f"fp16?); {consequence}", name, frames=bad)


def unit_range(frames: torch.Tensor, name: str, limit: float = RANGE_CLAMP_LIMIT) -> tuple[torch.Tensor, str | None]:
    """Frames clamped to [0, 1] and a note saying so, or the frames unchanged and None.

    Values a little outside [0, 1] come from resampling filters, upscalers and fp16 rounding: they are clamped, and
    the note (for the node's info output) says how far out they were. Values further out than ``limit`` mean
    another range ([-1, 1] or 0..255) and are refused with a ``ValueError`` naming ``name``. Non-finite values
    must have been refused before (:func:`check_frames_finite`).
    """
    lo, hi = frames_value_range(frames)
    if lo >= 0.0 and hi <= 1.0:
        return frames, None
    if lo < -limit or hi > 1.0 + limit:
        guess = "0..255" if hi > 2.0 else "[-1, 1]" if lo < -limit else "another range"
        raise ValueError(f"{name}: expected an IMAGE with values in [0, 1], got values from {lo:.4g} to {hi:.4g} "
                         f"(this looks like {guess} data); convert it to [0, 1] first")
    outside = int(((frames < 0.0) | (frames > 1.0)).sum())
    note = (f"{name}: {outside} values from {lo:.4g} to {hi:.4g} were outside [0, 1] (resampling overshoot?) and "
            f"were clamped to [0, 1]")
    return frames.clamp(0.0, 1.0), note


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` that hold NaN or inf (one float32 sum per tensor)."""
    bad = []
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.is_meta:
            continue
        if not all_finite(tensor.detach()):
            bad.append(name)
    return bad


class FiniteWatch:
    """A sampler-step check: call it with the step index and the step's tensors (the prediction x0 and the state x).

    Raises :class:`NonFiniteError` naming ``input_name`` (the model) at the first step whose tensors hold NaN or
    inf, with the (latent) frames that hold them along ``frame_dim``; ``describe`` turns those frames into words
    (e.g. the refiner's windows) and ``advice`` says what to try. One float32 sum per tensor and step.
    """

    def __init__(self, total_steps: int, *, input_name: str = "model", what: str = "the sampled latent",
                 advice: str = "", frame_dim: int = 2, describe: Callable[[list[int]], str] | None = None) -> None:
        self.total_steps = int(total_steps)
        self.input_name = input_name
        self.what = what
        self.advice = advice
        self.frame_dim = frame_dim
        self.describe = describe
        self.checked = 0

    def __call__(self, step: int, *tensors: torch.Tensor | None) -> None:
        self.checked += 1
        for tensor in tensors:
            if tensor is None or all_finite(tensor):
                continue
            frames: list[int] = []
            where = ""
            if tensor.ndim > self.frame_dim:
                frames = nonfinite_frames(tensor, self.frame_dim)
                if frames:
                    where = f" in latent frames {describe_indices(frames)} of {tensor.shape[self.frame_dim]}"
                    if self.describe is not None:
                        where += f", {self.describe(frames)}"
            message = (f"{self.input_name}: {self.what} went NaN or inf at step {step + 1} of {self.total_steps}"
                       f"{where}")
            if self.advice:
                message += f"; {self.advice}"
            raise NonFiniteError(message, self.input_name, step=step + 1, total_steps=self.total_steps,
                                 frames=frames)

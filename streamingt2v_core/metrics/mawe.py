"""MAWE, the motion-aware warp error (paper Sec. 5, Table 1), as the official ``mawe.py`` computes it.

For every pair of consecutive frames (t, t+1), at 720x720:

* ``F_t``: forward optical flow from frame t to frame t+1 (RAFT-large in the official code);
* ``OF_t``: the mean over pixels of ``|F_t|`` (pixels);
* a forward splat of frame t: every source pixel ``p`` is written to ``q = round(p + F_t(p))``
  when ``q`` lies in the image, the last write (in row-major source order) winning; target pixels
  nobody lands on are unknown and left out;
* ``W_t``: the mean squared difference between frame t+1 and the splat over the known pixels and
  the 3 channels, in 0..255 units;
* ``MAWE = mean_t W_t / (c * OF_t)`` with ``c = 9.5``.

That official value is a mean of per-pair ratios, which explodes when a pair barely moves, so we
also report a robust variant, the ratio of the means ``mean_t W_t / (c * mean_t OF_t)``. The two
agree when motion is steady; only the official one is comparable to the paper.

Flow backends: RAFT-large (torchvision) from a local weights file, as the paper; or OpenCV's DIS
optical flow when no RAFT file is available. A DIS number is *not* comparable to the paper's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .frames import FrameArray, to_uint8_frames

__all__ = [
    "DEFAULT_COEFF",
    "DEFAULT_SIZE",
    "FlowFn",
    "FlowBackend",
    "MAWEResult",
    "RaftFlow",
    "DisFlow",
    "make_flow_backend",
    "load_raft_large",
    "resize_frames",
    "forward_warp",
    "warp_error",
    "mean_flow_magnitude",
    "motion_aware_warp_error",
]

DEFAULT_COEFF = 9.5
"""The official ``--coeff`` default (the paper's c)."""

DEFAULT_SIZE = 720
"""The official code resizes every frame to 720x720 before computing flow and warps."""

LOW_MOTION_PX = 0.05
"""Pairs whose mean flow magnitude is below this many pixels are flagged as near-static (their
per-pair ratio, and so the official MAWE, is dominated by noise)."""

FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``flow_fn(frames_t, frames_t1) -> flow``: frames ``[N, 3, H, W]`` float in 0..255, flow
``[N, 2, H, W]`` in pixels, channel 0 = x (right), channel 1 = y (down), from t to t+1."""


# --------------------------------------------------------------------------------------------
# The pieces of the official computation
# --------------------------------------------------------------------------------------------


def resize_frames(frames: torch.Tensor, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Resize uint8 frames ``[N, 3, H, W]`` to ``size x size`` as the official code does.

    The official code resizes the uint8 video with torchvision's bilinear resize without
    antialiasing, which rounds back to uint8; we return the same values as float32 in 0..255.
    """
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [N, 3, H, W], got dtype {frames.dtype}")
    out = frames.float()
    if tuple(out.shape[-2:]) != (size, size):
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=False)
        out = out.round_().clamp_(0.0, 255.0)
    return out


def forward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-splat ``image`` along ``flow`` with rounded targets, the last write winning.

    Args:
        image: ``[N, C, H, W]``.
        flow: ``[N, 2, H, W]`` (x, y) displacement in pixels from ``image`` to the next frame.

    Returns:
        ``(warped, known)``: ``warped`` ``[N, C, H, W]`` holds at each target pixel the source
        pixel that landed there last (row-major source order, as in the official code's numpy
        assignment), 0 where nobody landed; ``known`` ``[N, H, W]`` bool marks the pixels that
        were hit.
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"image must be [N, C, H, W] and flow [N, 2, H, W], got "
                         f"{tuple(image.shape)} and {tuple(flow.shape)}")
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} must share "
                         f"batch and spatial size")
    n, c, h, w = image.shape
    device = image.device
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=flow.dtype),
                            torch.arange(w, device=device, dtype=flow.dtype), indexing="ij")
    # torch.round rounds half to even, like the official code's Tensor.round().
    tx = (xs + flow[:, 0]).round_()
    ty = (ys + flow[:, 1]).round_()
    inside = ((tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)).reshape(n, -1)
    # Sources that leave the frame write to a spare slot past the end, dropped afterwards.
    target = torch.where(inside, (ty * w + tx).reshape(n, -1).long(), h * w)
    source = torch.arange(h * w, device=device).expand(n, -1)
    # Several sources may land on one target; numpy's fancy assignment in the official code keeps
    # the last one in row-major order, i.e. the largest source index: a deterministic amax.
    winner = torch.full((n, h * w + 1), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(1, target, source, reduce="amax", include_self=True)
    winner = winner[:, :-1]
    known = winner >= 0
    gathered = torch.gather(image.reshape(n, c, h * w), 2,
                            winner.clamp(min=0).unsqueeze(1).expand(n, c, h * w))
    warped = torch.where(known.unsqueeze(1), gathered, torch.zeros((), dtype=image.dtype, device=device))
    return warped.reshape(n, c, h, w), known.reshape(n, h, w)


def warp_error(target: torch.Tensor, warped: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean squared error over known pixels and all channels, per pair: ``[N]``.

    Values are in the units of the inputs (0..255 for the official metric). As in the official
    code, a pair with no known pixel divides by the full element count (giving 0).
    """
    mask = known.unsqueeze(1).to(target.dtype)
    squared = ((target - warped) * mask).pow(2).sum(dim=(1, 2, 3))
    count = mask.sum(dim=(1, 2, 3)) * target.shape[1]
    count = torch.where(count > 0, count, torch.full_like(count, float(target[0].numel())))
    return squared / count


def mean_flow_magnitude(flow: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the flow's Euclidean norm, per pair: ``[N]`` (pixels)."""
    return torch.hypot(flow[:, 0], flow[:, 1]).mean(dim=(1, 2))


# --------------------------------------------------------------------------------------------
# Flow backends
# --------------------------------------------------------------------------------------------


@dataclass
class FlowBackend:
    """A flow function with its name and whether its numbers compare to the paper's."""

    name: str
    flow_fn: FlowFn
    comparable_to_paper: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def load_raft_large(weights_path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """torchvision's RAFT-large with weights from a local file (no download).

    The file is a state dict as torchvision publishes it (``raft_large_C_T_SKHT_V2-ff5fadd5.pth``
    is the official metric's ``Raft_Large_Weights.DEFAULT``) in ``.pth``/``.pt`` or
    ``.safetensors``; pickles are read with ``weights_only=True``.

    Raises:
        ValueError: missing file, unreadable file, or a state dict that is not RAFT-large.
    """
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError as exc:  # pragma: no cover - torchvision ships with ComfyUI
        raise ValueError("the RAFT flow backend needs torchvision (pip install torchvision)") from exc
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise ValueError(f"weights_path: RAFT weights file not found: {path!r}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from streamingt2v_core.safe_load import describe_load_failure

        # Never PyTorch's own text: it advises weights_only=False, which would run the pickle's code.
        reason = describe_load_failure(exc)
        raise ValueError(f"weights_path: cannot read RAFT weights from {path!r}: {reason}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights_path: {path!r} does not hold a state dict")
    model = raft_large(weights=None, progress=False)
    missing, unexpected = _compare_keys(model.state_dict(), state)
    if missing or unexpected:
        raise ValueError(
            f"weights_path: {path!r} is not a torchvision RAFT-large state dict "
            f"(missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, "
            f"e.g. {unexpected[:3]})"
        )
    expected = model.state_dict()
    misfit = [k for k in expected if torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(expected[k].shape)]
    if misfit:
        k = misfit[0]
        raise ValueError(f"weights_path: {path!r} does not fit RAFT-large: {len(misfit)} tensors have other shapes "
                         f"(e.g. {k}: {list(state[k].shape)} in the file, {list(expected[k].shape)} in RAFT-large)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()  # torch's last line is the specific one
        raise ValueError(f"weights_path: {path!r} does not fit RAFT-large: {first}") from None
    return model.eval().to(device)


def _compare_keys(expected: dict, given: dict) -> tuple[list[str], list[str]]:
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    return missing, unexpected


class RaftFlow:
    """RAFT-large flow as the official metric runs it (12 refinement iterations, last one kept).

    Inputs are normalised as ``Raft_Large_Weights.transforms()`` does (0..255 -> [-1, 1]).
    """

    def __init__(self, model: torch.nn.Module, num_flow_updates: int = 12):
        self.model = model
        self.num_flow_updates = num_flow_updates

    @torch.no_grad()
    def __call__(self, frames_t: torch.Tensor, frames_t1: torch.Tensor) -> torch.Tensor:
        h, w = frames_t.shape[-2:]
        if h % 8 or w % 8 or h < 128 or w < 128:
            raise ValueError(f"size: RAFT needs frame sides divisible by 8 and at least 128, got {h}x{w}")
        device = next(self.model.parameters()).device
        a = (frames_t.to(device) / 255.0) * 2.0 - 1.0
        b = (frames_t1.to(device) / 255.0) * 2.0 - 1.0
        flows = self.model(a.contiguous(), b.contiguous(), num_flow_updates=self.num_flow_updates)
        return flows[-1].float()


class DisFlow:
    """OpenCV's DIS optical flow on grey frames (a CPU fallback; not comparable to the paper)."""

    PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "medium"):
        import cv2

        if preset not in self.PRESETS:
            raise ValueError(f"preset must be one of {sorted(self.PRESETS)}, got {preset!r}")
        self.preset = preset
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(self.PRESETS[preset])

    def __call__(self, frames_t: torch.Tensor, frames_t1: torch.Tensor) -> torch.Tensor:
        cv2 = self._cv2
        flows = []
        for a, b in zip(frames_t, frames_t1):
            grey_a = cv2.cvtColor(_to_hwc_uint8(a), cv2.COLOR_RGB2GRAY)
            grey_b = cv2.cvtColor(_to_hwc_uint8(b), cv2.COLOR_RGB2GRAY)
            flow = self._dis.calc(grey_a, grey_b, None)  # [H, W, 2], (dx, dy) from a to b
            flows.append(torch.from_numpy(flow).permute(2, 0, 1).contiguous())
        return torch.stack(flows).to(frames_t.device)


def _to_hwc_uint8(frame: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(
        frame.detach().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    )


def make_flow_backend(
    backend: Literal["auto", "raft", "dis"] = "auto",
    raft_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    raft_model: torch.nn.Module | None = None,
) -> FlowBackend:
    """Pick the flow backend: RAFT-large when weights are given (``auto`` or ``raft``), else DIS.

    Args:
        backend: ``"auto"`` (RAFT if ``raft_weights``/``raft_model`` is given, else DIS),
            ``"raft"`` (fails without weights) or ``"dis"``.
        raft_weights: path of the RAFT-large weights file.
        device: where RAFT runs.
        raft_model: an already loaded RAFT-large (e.g. cached by a node); wins over the file.
    """
    if backend not in ("auto", "raft", "dis"):
        raise ValueError(f"backend must be 'auto', 'raft' or 'dis', got {backend!r}")
    device = torch.device(device)
    has_raft = raft_model is not None or raft_weights is not None
    if backend == "raft" and not has_raft:
        raise ValueError("backend='raft' needs raft_weights (a RAFT-large weights file)")
    if backend == "dis" or not has_raft:
        return FlowBackend("opencv_dis_medium", DisFlow("medium"), False, torch.device("cpu"))
    model = raft_model if raft_model is not None else load_raft_large(raft_weights, device)
    model = model.to(device)
    return FlowBackend("raft_large", RaftFlow(model), True, device)


# --------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------


@dataclass
class MAWEResult:
    """Result of :func:`motion_aware_warp_error`.

    Attributes:
        mawe: the official value, ``mean_t W_t / (c * OF_t)`` (mean of per-pair ratios). A pair
            without motion and without change counts 0 (the official code: NaN, so a static video
            had a NaN MAWE); a pair that changes without motion is inf, as officially. Never NaN.
        mawe_robust: ``mean_t W_t / (c * mean_t OF_t)`` (ratio of means; our guard against
            near-static pairs, not the paper's definition); 0 for a static video.
        warp_errors: ``W_t`` per pair (0..255 units, squared).
        motions: ``OF_t`` per pair (pixels at ``size`` x ``size``).
        ratios: ``W_t / (c * OF_t)`` per pair, the series the official value averages.
        backend: flow backend name (``raft_large`` or ``opencv_dis_medium``).
        comparable_to_paper: True only for RAFT-large at 720x720 with c = 9.5.
        coeff, size: the c and the resize used.
        low_motion_pairs: pairs with ``OF_t`` below :data:`LOW_MOTION_PX`.
        static_pairs: pairs with ``OF_t == 0`` exactly.
        notes: what the numbers mean where pairs do not move (shown by the node, in the report).
    """

    mawe: float
    mawe_robust: float
    warp_errors: list[float]
    motions: list[float]
    ratios: list[float]
    backend: str
    comparable_to_paper: bool
    coeff: float
    size: int
    low_motion_pairs: list[int] = field(default_factory=list)
    static_pairs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        """A JSON-ready dict (inf/NaN become None)."""
        return {
            "metric": "MAWE",
            "mawe_official": _finite_or_none(self.mawe),
            "mawe_official_definition": "mean over pairs of W_t / (c * OF_t) (official mawe.py)",
            "mawe_robust": _finite_or_none(self.mawe_robust),
            "mawe_robust_definition": "mean(W_t) / (c * mean(OF_t)) (ratio of means; not the paper's)",
            "flow_backend": self.backend,
            "comparable_to_paper": self.comparable_to_paper,
            "coeff": self.coeff,
            "size": self.size,
            "warp_errors": [_finite_or_none(v) for v in self.warp_errors],
            "motions": [_finite_or_none(v) for v in self.motions],
            "ratios": [_finite_or_none(v) for v in self.ratios],
            "low_motion_pairs": list(self.low_motion_pairs),
            "low_motion_threshold_px": LOW_MOTION_PX,
            "static_pairs": list(self.static_pairs),
            "notes": list(self.notes),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def motion_aware_warp_error(
    frames: FrameArray,
    flow: FlowBackend | FlowFn | None = None,
    coeff: float = DEFAULT_COEFF,
    size: int = DEFAULT_SIZE,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MAWEResult:
    """MAWE of a video, following the official ``mawe.py``.

    Args:
        frames: ``[T, H, W, 3]`` RGB, float in [0, 1] or uint8, T >= 2.
        flow: a :class:`FlowBackend` (from :func:`make_flow_backend`), a bare :data:`FlowFn`
            (reported as ``custom``), or None for DIS.
        coeff: the c in ``W_t / (c * OF_t)`` (official default 9.5).
        size: frames are resized to ``size x size`` first (official: 720).
        batch_size: pairs per flow call.
        device: where the warps run (default: the backend's device).
        progress: called with ``(pairs_done, pairs_total)`` after each batch.

    Raises:
        ValueError: fewer than 2 frames, bad ``frames``, ``coeff`` or ``size``, or a flow
            function that returns the wrong shape.
    """
    video = to_uint8_frames(frames, "frames", min_frames=2)
    if not (isinstance(coeff, (int, float)) and math.isfinite(coeff) and coeff > 0):
        raise ValueError(f"coeff must be a positive number, got {coeff!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if flow is None:
        flow = make_flow_backend("dis")
    if isinstance(flow, FlowBackend):
        backend = flow
    elif callable(flow):
        backend = FlowBackend("custom", flow, False)
    else:
        raise ValueError(f"flow must be a FlowBackend, a callable or None, got {type(flow).__name__}")
    work_device = torch.device(device) if device is not None else backend.device

    num_pairs = video.shape[0] - 1
    warp_errors: list[float] = []
    motions: list[float] = []
    previous: torch.Tensor | None = None  # the last resized frame, reused as the next pair's t
    for start in range(0, num_pairs, batch_size):
        stop = min(start + batch_size, num_pairs)
        # Frames start..stop (inclusive) give the pairs start..stop-1.
        first_new = start if previous is None else start + 1
        fresh = torch.from_numpy(video[first_new:stop + 1]).to(work_device).permute(0, 3, 1, 2)
        fresh = resize_frames(fresh, size)
        clip = fresh if previous is None else torch.cat([previous, fresh])
        previous = clip[-1:]
        frames_t, frames_t1 = clip[:-1], clip[1:]
        flow_t = flow_call(backend.flow_fn, frames_t, frames_t1).to(work_device)
        warped, known = forward_warp(frames_t, flow_t)
        warp_errors += warp_error(frames_t1, warped, known).tolist()
        motions += mean_flow_magnitude(flow_t).tolist()
        if progress is not None:
            progress(stop, num_pairs)

    errors_t = torch.tensor(warp_errors, dtype=torch.float64)
    motions_t = torch.tensor(motions, dtype=torch.float64)
    ratios_t = errors_t / (coeff * motions_t)
    # A pair that does not move and does not change (0 error over 0 motion) is perfectly consistent: 0, where the
    # official code gets NaN (0/0) and a static video's MAWE is NaN. A pair that does not move but changes (flicker,
    # a cut the flow missed) keeps the official inf (error over no motion).
    static = motions_t == 0
    ratios_t[static & (errors_t == 0)] = 0.0
    ratios = ratios_t.tolist()
    mawe = float(ratios_t.mean())
    mean_motion = float(motions_t.mean())
    mean_error = float(errors_t.mean())
    if mean_motion > 0:
        mawe_robust = mean_error / (coeff * mean_motion)
    else:
        mawe_robust = 0.0 if mean_error == 0 else float("inf")
    comparable = (backend.comparable_to_paper and size == DEFAULT_SIZE
                  and float(coeff) == DEFAULT_COEFF)
    return MAWEResult(
        mawe=mawe,
        mawe_robust=mawe_robust,
        warp_errors=warp_errors,
        motions=motions,
        ratios=[float(r) for r in ratios],
        backend=backend.name,
        comparable_to_paper=comparable,
        coeff=float(coeff),
        size=size,
        low_motion_pairs=[i for i, m in enumerate(motions) if m < LOW_MOTION_PX],
        static_pairs=[i for i in range(num_pairs) if bool(static[i])],
        notes=_static_notes(static, errors_t, num_pairs),
    )


def _static_notes(static: torch.Tensor, errors: torch.Tensor, num_pairs: int) -> list[str]:
    """What the user must know about pairs without motion (the official ratio is 0/0 or x/0 there)."""
    still = static & (errors == 0)
    flicker = static & (errors > 0)
    notes = []
    if int(still.sum()) == num_pairs:
        notes.append("no motion: the video is static (every pair's flow is 0 px and its warp error 0), so MAWE is 0 "
                     "by definition (0 error over 0 motion; the official code would give NaN)")
    elif bool(still.any()):
        notes.append(f"{int(still.sum())} of {num_pairs} pairs neither move nor change; they count as 0 (0 error over 0 "
                     f"motion; the official code would give NaN)")
    if bool(flicker.any()):
        pairs = [i for i in range(num_pairs) if bool(flicker[i])]
        shown = ", ".join(str(i) for i in pairs[:6]) + (", ..." if len(pairs) > 6 else "")
        notes.append(f"{len(pairs)} of {num_pairs} pairs change without any motion (pairs {shown}: flicker, or a cut "
                     f"the flow missed): their ratio W_t / (c * 0) is infinite, so the official MAWE is inf; "
                     f"mawe_robust (ratio of means) is finite while any pair moves")
    return notes


def flow_call(flow_fn: FlowFn, frames_t: torch.Tensor, frames_t1: torch.Tensor) -> torch.Tensor:
    """Run a flow function and check it returned ``[N, 2, H, W]`` finite values."""
    flow = flow_fn(frames_t, frames_t1)
    expected = (frames_t.shape[0], 2, *frames_t.shape[-2:])
    if not isinstance(flow, torch.Tensor) or tuple(flow.shape) != expected:
        got = tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__
        raise ValueError(f"flow function must return a tensor shaped {expected}, got {got}")
    return flow.float()

"""Bad inputs to Load Run, Randomized Blending Windows and Frame Plan through the real host (cases and checks:
bad_inputs_helpers).
"""
from __future__ import annotations

from typing import Callable

import pytest
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    LOAD_RUN, PLAN, WINDOWS, Bench, bench, Case, check_case,
)


def load_run(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VLoadRun", "inputs": {"run_name": "latest", "fps": 8.0,
                                                                     "frames_output": "whole video"}},
               "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}
        api["1"]["inputs"].update(inputs)
        return api
    return build


def windows_node(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VModelLoader",
                     "inputs": {"model_name": "tiny_refiner_non_ema_0035000.pth", "weight_dtype": "fp32",
                                "kind": "auto"}},
               "w": {"class_type": "StreamingT2VRandomizedBlendingWindows", "inputs": {
                   "model": ["1", 0], "chunk": 8, "overlap": 2, "blend_mode": "randomized", "seed": 0,
                   "guidance_rescale": 0.0, "max_batch": 0}},
               "p": {"class_type": "PreviewAny", "inputs": {"source": ["w", 0]}}}
        api["w"]["inputs"].update(inputs)
        return api
    return build


def frame_plan(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VFramePlan", "inputs": {
            "total_frames": 240, "fps": 8.0, "first_chunk": 16, "refine_chunk": 24, "refine_overlap": 8}}}
        api["1"]["inputs"].update(inputs)
        return api
    return build


CASES: list[Case] = [
    # Load Run, windows, plan
    Case("load-run-missing", LOAD_RUN, "run", "a run name that does not exist",
         r"^run: run 'no-such-run': no such run in <ComfyUI>/output/StreamingT2V/runs", load_run(run="no-such-run")),
    Case("windows-overlap", WINDOWS, "overlap", "overlap 8 with chunk 8",
         r"^overlap must be an integer in \[0, chunk - 1\]", windows_node(overlap=8)),
    Case("plan-overlap", PLAN, "refine_overlap", "refine_overlap 24 with refine_chunk 24",
         r"^refine_overlap: ", frame_plan(refine_overlap=24)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)

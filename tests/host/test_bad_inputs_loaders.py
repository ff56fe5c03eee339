"""Bad inputs to the Model Loader through the real host (cases and checks: bad_inputs_helpers)."""
from __future__ import annotations

from typing import Callable

import pytest
from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    MODEL_LOADER, Bench, bench, Case, check_case, run_case,
)


def loader(model_name: str, kind: str = "auto", dtype: str = "fp32") -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        return {"m": {"class_type": "StreamingT2VModelLoader",
                      "inputs": {"model_name": b.files.get(model_name, model_name), "weight_dtype": dtype,
                                 "kind": kind}},
                "p": {"class_type": "PreviewAny", "inputs": {"source": ["m", 1]}}}
    return build


CASES: list[Case] = [
    # Model Loader
    Case("loader-nan", MODEL_LOADER, "model_name", "a checkpoint with NaN in a weight tensor",
         r"^model_name: .*holds NaN or inf values in 1 weight tensor \(e.g. base_model.conv_in.bias\)",
         loader("nan_extender")),
    Case("loader-fp16-range", MODEL_LOADER, "model_name", "weights beyond fp16's range, weight_dtype fp16",
         r"^model_name: .*beyond fp16's range.*bf16 or fp32", loader("big_weights_base", dtype="fp16")),
    Case("loader-kind", MODEL_LOADER, "kind", "kind extender for a base UNet3D file",
         r"^model_name: cannot load 'modelscope_t2v_unet.safetensors' .*kind mismatch: kind='extender' was asked for",
         loader("modelscope_t2v_unet.safetensors", kind="extender")),
    Case("loader-code", MODEL_LOADER, "model_name", "a .ckpt whose pickle would call os.system",
         r"^model_name: .*refused for safety", loader("code_refiner")),
    Case("loader-groups", MODEL_LOADER, "norm_num_groups", "a diffusers UNet3D with 16 norm groups, no config.json",
         r"^assumed: norm_num_groups=32 assumed", loader("groups16_unet3d"), outcome="note",
         read=lambda outputs, host: next(line for line in outputs["m"][1].splitlines() if "assumed" in line)),
    Case("loader-missing", MODEL_LOADER, "model_name", "a file name that is not in the list",
         r"^model_name: 'no_such_model.safetensors' not found in \['<ComfyUI>/models/streamingt2v'",
         loader("no_such_model.safetensors")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    check_case(case, bench)


def test_a_checkpoint_that_would_run_code_is_refused_without_unsafe_advice(bench):
    """The refusal names the global, says why, and what to use instead; never PyTorch's advice to turn
    weights_only off (which would run the code)."""
    seen = run_case(next(c for c in CASES if c.id == "loader-code"), bench)
    assert "system" in seen.text and "safetensors" in seen.text, seen.text
    assert "weights_only" not in seen.text.replace("weights_only=True", ""), seen.text

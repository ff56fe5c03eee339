"""Every node's registered defaults, read from the schema the host serves (`/object_info`), against the documented
official values (docs: /work/shared/SPEC.md section 1, README's node table and "Differences from the official code").

Every other test and workflow passes sampler, steps or coefficients explicitly, so only this module sees a changed
default: Extend's sampler going from `ddpm` (DDIM eta = 1, the official sampler) to `ddim` (eta = 0) failed nothing
before it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

REPO_ROOT = Path(__file__).resolve().parents[2]

# node type -> input -> default. "official": the official code's value (SPEC section 1); "pack": the pack's documented
# choice where the official code has none or differs on purpose (README says why).
EXPECTED = {
    "StreamingT2VInitialChunk": {
        "width": 256, "height": 256, "frames": 16,  # official: 16 frames at 256x256
        "steps": 50, "cfg": 9.0,                     # official: ModelScope T2V, 50 steps, CFG 9
        "sampler_name": "dpmpp_2m", "scheduler": "normal",  # pack: the host's KSampler path
        "seed": 0,
    },
    "StreamingT2VExtend": {
        "width": 256, "height": 256,
        "steps": 50, "cfg": 7.5,                     # official: DDIM 50 steps, CFG 7.5
        "sampler_name": "ddpm", "scheduler": "ddim_uniform",  # official: DDIM eta = 1, leading spacing (README)
        "total_frames": 80, "seed": 33,              # official: seed 33 in the official inference script
    },
    "StreamingT2VRefine": {
        "steps": 30, "cfg": 7.5, "guidance_rescale": 0.2,     # official: DPM++ 2M SDE 30 steps, CFG 7.5, rescale 0.2
        "sampler_name": "dpmpp_2m_sde", "scheduler": "streamingt2v_trailing",
        "denoise": 0.6,                                       # official: SDEdit from t' = 599 of 1000
        "chunk": 24, "overlap": 8, "blend_mode": "randomized",  # official: 24-frame chunks overlapping by 8
        "width": 1024, "height": 592,                         # pack: fits 12 GB (README); official 1280x720
        "seed": 0,
    },
    "StreamingT2VRandomizedBlendingWindows": {
        "chunk": 24, "overlap": 8, "blend_mode": "randomized", "guidance_rescale": 0.0, "max_batch": 0, "seed": 0,
    },
    "StreamingT2VMAWE": {"coeff": 9.5, "size": 256},  # official c = 9.5; pack: 256 for speed (720 = the paper's)
    "StreamingT2VFramePlan": {"total_frames": 240, "fps": 8.0, "first_chunk": 16, "refine_chunk": 24,
                              "refine_overlap": 8},
    "StreamingT2VModelLoader": {"kind": "auto", "weight_dtype": "default"},
}


@pytest.fixture(scope="module")
def schema(comfy_host) -> dict[str, dict]:
    """node type -> input name -> (type or option list, options dict), as /object_info serves them."""
    out = {}
    for name in comfy_host.nodes.NODE_CLASS_MAPPINGS:
        if not name.startswith("StreamingT2V"):
            continue
        inputs = comfy_host.node_info(name)["input"]
        out[name] = {k: (v[0], v[1] if len(v) > 1 and isinstance(v[1], dict) else {})
                     for section in ("required", "optional") for k, v in (inputs.get(section) or {}).items()}
    return out


def combo_options(kind, options: dict) -> list:
    return list(kind) if isinstance(kind, (list, tuple)) else list(options.get("options", []))


@pytest.mark.parametrize("node_type", sorted(EXPECTED))
def test_defaults_are_the_documented_values(schema, node_type):
    inputs = schema[node_type]
    got = {name: inputs[name][1].get("default") for name in EXPECTED[node_type] if name in inputs}
    assert got == EXPECTED[node_type]


@pytest.mark.parametrize("node_type", sorted(EXPECTED))
def test_every_default_is_a_value_the_input_accepts(schema, node_type):
    """A combo default the host's validation would refuse (say a sampler the host does not have) fails here."""
    for name, (kind, options) in schema[node_type].items():
        if "default" not in options:
            continue
        default = options["default"]
        choices = combo_options(kind, options)
        if choices:
            assert default in choices, (node_type, name, default)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert options.get("min", default) <= default <= options.get("max", default), (node_type, name)


def test_the_host_has_the_official_extender_sampler(comfy_host):
    """`ddpm` in the host is DDIM with eta = 1 (ancestral noise at every step): not `ddim`, which is eta = 0."""
    import comfy.samplers

    assert "ddpm" in comfy.samplers.KSampler.SAMPLERS and "ddim_uniform" in comfy.samplers.KSampler.SCHEDULERS


def seed_fixed_nodes() -> list[str]:
    """js/runs.js's SEED_FIXED_NODES: the node types whose seed control the frontend extension sets to "fixed"."""
    text = (REPO_ROOT / "js" / "runs.js").read_text(encoding="utf-8")
    block = re.search(r"export const SEED_FIXED_NODES = \[(.*?)\];", text, re.S)
    assert block, "js/runs.js no longer declares SEED_FIXED_NODES"
    assert re.search(r'control\.value === "randomize"\) control\.value = "fixed"', text), \
        "js/runs.js no longer turns a new node's seed control to fixed"
    return re.findall(r'"(StreamingT2V\w+)"', block.group(1))


# A seed whose control is "randomize" starts a new video at every queue, where the run store would resume the same
# run: every node whose output feeds a long run keeps its seed fixed after generate.
SEEDED_NOT_FIXED: dict[str, str] = {}


def test_every_seed_has_a_control_and_starts_fixed(schema):
    fixed = seed_fixed_nodes()
    seeded = sorted(n for n, inputs in schema.items() if "seed" in inputs)
    assert {"StreamingT2VExtend", "StreamingT2VInitialChunk", "StreamingT2VRefine",
            "StreamingT2VRandomizedBlendingWindows"} <= set(seeded)
    for node_type in seeded:
        options = schema[node_type]["seed"][1]
        assert options.get("control_after_generate") is True, node_type  # the widget has a control at all
        assert options.get("min") == 0 and options.get("max") >= 2 ** 32 - 1, node_type
    assert sorted(set(seeded) - set(fixed)) == sorted(SEEDED_NOT_FIXED), "seeds that start at randomize"
    assert set(fixed) <= set(seeded), "js/runs.js lists node types without a seed"

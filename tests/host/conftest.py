"""Fixtures for tests that run in the real ComfyUI host.

`comfy_host` boots the host in this process once per session (ComfyUI keeps global state), with a
base directory of its own under pytest's temp folder: its models/, input/, output/ and
custom_nodes/ (where this pack is linked) belong to the tests. `host_weights` fills models/ with
random weights in the real key layouts (see scripts/demo_weights.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
for _p in (str(REPO_ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from harness import (  # noqa: E402
    WORKFLOWS_DIR,
    Host,
    PromptExecutionError,
    PromptValidationError,
    boot_host,
    booted_host,
    host_dir,
    release_host_models,
)


# Host modules in the quick tier (`bash scripts/test.sh --quick`): seconds each after the shared host start-up,
# no workflow runs, no full-size encoders. Measured with --durations on 2 cores.
QUICK_HOST_MODULES = {
    "test_node_defaults.py",
    "test_context_blend.py",
    "test_registration.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/host" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.host)
            if Path(str(item.fspath)).name in QUICK_HOST_MODULES:
                item.add_marker(pytest.mark.quick)


@pytest.fixture(scope="module", autouse=True)
def _release_host_models_after_each_module():
    """What a module loaded into the host (models in the executor's output cache, the model manager's list, the
    pack's model caches) is released when the module ends: the next module starts lean (peak RSS is one module's,
    not the sum of all), and no module passes only because an earlier one left a model loaded."""
    yield
    host = booted_host()
    if host is not None:
        release_host_models(host)


def pytest_sessionfinish(session, exitstatus):
    """Release the host's models while every module is still alive: otherwise ModelPatcher.__del__ runs during
    interpreter shutdown, after the host's modules were torn down, and prints "AttributeError: 'NoneType' object
    has no attribute 'ON_DETACH'" below pytest's summary."""
    host = booted_host()
    if host is not None:
        release_host_models(host, final=True)


@pytest.fixture(scope="session")
def comfy_host(tmp_path_factory) -> Host:
    if not (host_dir() / "main.py").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the ComfyUI host is missing at {host_dir()}: .ci/run must run scripts/setup.sh")
        pytest.skip(f"no ComfyUI host at {host_dir()}: run `bash scripts/setup.sh`")
    return boot_host(tmp_path_factory.mktemp("comfy_base"))


@pytest.fixture(scope="session")
def models_dir(comfy_host) -> Path:
    return comfy_host.models_dir


@pytest.fixture(scope="session")
def host_weights(comfy_host) -> dict[str, Path]:
    """Random weights in the real layouts, written once per session: tiny UNets (scripts/demo_weights.py), the tiny
    text and vision encoders and SD VAE (scripts/demo_weights_tiny_encoders.py, loaded through its host hook: no test
    here is about the full-size ones, which cost seconds per prompt and frame and GBs of RSS)."""
    from scripts.demo_weights import write_all
    from scripts.demo_weights_tiny_encoders import write_tiny_host_encoders
    from streamingt2v_core.metrics.synthetic import write_evaluation_assets

    write_tiny_host_encoders(comfy_host.models_dir)  # first: write_all keeps the demo files already there
    written = write_all(comfy_host.models_dir)
    # evaluate_video.json loads a sample video from input/ and a tiny CLIP model
    write_evaluation_assets(comfy_host.input_dir, comfy_host.models_dir)
    return written


@pytest.fixture(scope="session")
def host_encoder_weights(comfy_host) -> dict[str, Path]:
    """Only the host's own encoders (SD VAE, CLIP-H text, ViT-H vision), tiny as in host_weights."""
    from scripts.demo_weights import write_host_encoders
    from scripts.demo_weights_tiny_encoders import write_tiny_host_encoders

    write_tiny_host_encoders(comfy_host.models_dir)
    return write_host_encoders(comfy_host.models_dir)


@pytest.fixture(scope="session")
def object_info(comfy_host, host_weights) -> dict:
    # after the weights: file-name combos (model loaders) list what is in the models folder
    return comfy_host.object_info()


@pytest.fixture
def run_prompt(comfy_host):
    return comfy_host.run_prompt


def workflow_api(name: str, object_info: dict) -> dict:
    from scripts.workflow_format import workflow_to_api

    return workflow_to_api(WORKFLOWS_DIR / name, object_info)


__all__ = ["PromptExecutionError", "PromptValidationError", "workflow_api", "WORKFLOWS_DIR"]

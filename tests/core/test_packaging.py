"""requirements.txt (for ComfyUI-Manager users) lists pyproject's runtime dependencies, torch aside."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_PROVIDED = {"torch", "torchvision"}


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def test_requirements_txt_matches_pyproject_runtime_dependencies():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]} - HOST_PROVIDED
    listed = {_name(l) for l in (REPO_ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")}
    assert listed == declared


def test_pyproject_has_the_registry_section():
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    assert tool["PublisherId"] and tool["DisplayName"] == "StreamingT2V" and "Icon" in tool

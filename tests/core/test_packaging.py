"""Packaging: requirements.txt matches pyproject, and pyproject.toml follows the Comfy registry's
specification (docs.comfy.org/registry/specifications), so `comfy node publish` accepts the pack.

The registry's own validator is `comfy node validate` of comfy-cli (PyPI). It is not run here:
comfy-cli 1.23 pulls in 22 packages (uv, ruff, posthog and mixpanel telemetry, cookiecutter...)
for a check that parses the same fields (comfy_cli/registry/config_parser.py) and runs ruff's
S102/S307/E702 rules. This file checks the documented rules field by field, the same version
pattern comfy-cli applies to `requires-comfyui`, the same exec/eval/semicolon rules on the
pack's code, and what the registry's pack would put in the zip.
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_PROVIDED = {"torch", "torchvision"}
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
COMFY = PYPROJECT["tool"]["comfy"]
# What the pack needs at run time inside ComfyUI's custom_nodes/.
RUNTIME_PATHS = ["__init__.py", "nodes/__init__.py", "js/streamingt2v.js", "workflows/text_to_long_video.json",
                 "streamingt2v_core/__init__.py", "pyproject.toml", "requirements.txt", "README.md"]


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def test_requirements_txt_matches_pyproject_runtime_dependencies():
    declared = {_name(r) for r in PROJECT["dependencies"]} - HOST_PROVIDED
    listed = {_name(l) for l in (REPO_ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")}
    assert listed == declared


def test_node_id_follows_the_registry_naming_rules():
    name = PROJECT["name"]
    assert len(name) < 100
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name), "only alphanumerics, hyphens, underscores and periods"
    assert not re.search(r"[._-]{2}", name), "no consecutive special characters"
    assert re.match(r"[A-Za-z]", name), "cannot start with a number or special character"
    assert "comfyui" not in name.lower(), "the registry asks packs not to include 'ComfyUI' in the name"


def test_version_license_urls_and_classifiers():
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"]), "semantic X.Y.Z version"
    license_ = PROJECT["license"]
    assert isinstance(license_, dict) and (license_.get("text") or (REPO_ROOT / license_.get("file", "")).is_file())
    assert PROJECT["description"]
    assert re.fullmatch(r"https://github\.com/[^/]+/[^/]+", PROJECT["urls"]["Repository"])
    # comfy-cli keeps OS classifiers only under these prefixes and accelerators only from this set.
    for classifier in PROJECT.get("classifiers", []):
        if classifier.startswith("Operating System :: "):
            assert classifier.split(" :: ")[1] in {"Microsoft", "POSIX", "MacOS", "OS Independent"}, classifier
        if classifier.startswith("Environment ::"):
            assert classifier.removeprefix("Environment :: ") in {
                "GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend", "GPU :: Apple Metal"}


def test_tool_comfy_section():
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", COMFY["PublisherId"])
    assert COMFY["DisplayName"] == "StreamingT2V"
    for folder in COMFY.get("includes", []):
        assert (REPO_ROOT / folder).is_dir(), folder


def test_requires_comfyui_is_the_hosts_range_the_pack_checks_and_was_tested_with():
    spec = COMFY["requires-comfyui"]
    # comfy-cli (registry/config_parser.py, validate_version) drops any other form without a word.
    part = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
    assert all(part.match(p.strip()) for p in spec.split(",")), spec
    init = (REPO_ROOT / "__init__.py").read_text()
    minimum = re.search(r"MIN_HOST_VERSION = \((\d+), (\d+), (\d+)\)", init).groups()
    assert f">={'.'.join(minimum)}" in spec.replace(" ", "").split(",")
    tested = REPO_ROOT / ".host" / "ComfyUI" / "comfyui_version.py"
    if tested.is_file():  # the host scripts/setup.sh installs, the one every host test runs on
        version = re.search(r'__version__ = "([^"]+)"', tested.read_text()).group(1)
        assert Version(version) in SpecifierSet(spec), (version, spec)


def test_icon_is_a_square_image_of_at_most_400_px_in_this_repository():
    icon = COMFY["Icon"]
    repo = PROJECT["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert icon.startswith(prefix), icon
    path = REPO_ROOT / icon.removeprefix(prefix)
    assert path.suffix in {".svg", ".png", ".jpg", ".gif"} and path.is_file(), path
    root = ET.parse(path).getroot()
    width, height = float(root.get("width")), float(root.get("height"))
    assert width == height <= 400
    _x, _y, vw, vh = (float(v) for v in root.get("viewBox").split())
    assert vw == vh


def _runtime_python_files() -> list[Path]:
    files = [REPO_ROOT / "__init__.py"]
    for folder in ("nodes", "streamingt2v_core"):
        files += sorted((REPO_ROOT / folder).rglob("*.py"))
    return files


def test_no_exec_eval_or_several_statements_on_one_line_in_the_pack():
    """The rules comfy-cli's validate runs with ruff before publishing (S102 exec, S307 eval,
    E702 several statements on one line), checked on the code the registry ships."""
    problems = []
    for path in _runtime_python_files():
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval"):
                problems.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.func.id}()")
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string == ";":
                problems.append(f"{path.relative_to(REPO_ROOT)}:{tok.start[0]}: two statements on one line")
    assert problems == []


def _packed_files() -> list[str] | None:
    """The files `comfy node pack` puts in the zip: git-tracked files minus .comfyignore."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    patterns = [l.strip() for l in (REPO_ROOT / ".comfyignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert all(p.endswith("/") and "*" not in p for p in patterns), "this check understands folder patterns only"
    return [f for f in tracked.splitlines() if not any(f.startswith(p) for p in patterns)]


def test_the_registry_zip_holds_what_the_pack_needs_and_no_tests():
    packed = _packed_files()
    if packed is None:
        pytest.skip("not a git checkout")
    for path in RUNTIME_PATHS:
        assert path in packed, path
    assert any(f.startswith("nodes/") for f in packed) and any(f.startswith("js/") for f in packed)
    assert not any(f.startswith(("tests/", "bench/")) for f in packed)

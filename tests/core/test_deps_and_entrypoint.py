"""One-line messages instead of stack traces: missing optional libraries, missing or old host."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamingt2v_core.deps import MissingDependency, require

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_require_returns_the_module():
    assert require("json").dumps([1]) == "[1]"


def test_missing_optional_dependency_names_the_pip_package():
    with pytest.raises(MissingDependency) as info:
        require("scenedetect_not_installed_xyz", "the SCuts metric")
    message = str(info.value)
    assert "\n" not in message
    assert "the SCuts metric" in message and "pip install scenedetect_not_installed_xyz" in message


def test_known_module_maps_to_its_pip_name(monkeypatch):
    import importlib

    real_import = importlib.import_module

    def import_without_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_without_cv2)
    with pytest.raises(MissingDependency, match="pip install opencv-python-headless"):
        require("cv2")


ENTRY = r'''
import asyncio, importlib.util, sys, types
mode = sys.argv[1]
if mode == "old":
    api = types.ModuleType("comfy_api"); latest = types.ModuleType("comfy_api.latest")
    latest.ComfyExtension = object; latest.io = object()
    sys.modules.update({"comfy_api": api, "comfy_api.latest": latest})
    version = types.ModuleType("comfyui_version"); version.__version__ = "0.3.40"
    sys.modules["comfyui_version"] = version
spec = importlib.util.spec_from_file_location("pack_under_test", sys.argv[2], submodule_search_locations=[sys.argv[3]])
pack = importlib.util.module_from_spec(spec); sys.modules["pack_under_test"] = pack
spec.loader.exec_module(pack)
assert pack.WEB_DIRECTORY == "./js"
try:
    asyncio.run(pack.comfy_entrypoint())
except pack.HostNotSupported as exc:
    print("MESSAGE:" + str(exc))
'''


@pytest.mark.parametrize("mode,expected", [("missing", "needs ComfyUI >= 0.3.60"), ("old", "found 0.3.40")])
def test_pack_entrypoint_says_in_one_line_when_the_host_is_missing_or_too_old(mode, expected):
    result = subprocess.run(
        [sys.executable, "-c", ENTRY, mode, str(REPO_ROOT / "__init__.py"), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [l for l in result.stdout.splitlines() if l.startswith("MESSAGE:")]
    assert len(lines) == 1 and expected in lines[0], result.stdout

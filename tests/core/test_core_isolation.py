"""streamingt2v_core never imports ComfyUI: every module imports in a process where it cannot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

BLOCKER = r'''
import importlib, importlib.abc, pkgutil, sys
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server", "execution", "latent_preview", "node_helpers"}
class BlockHost(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HOST_MODULES:
            raise ImportError(f"streamingt2v_core imported the host module {name!r}")
        return None
sys.meta_path.insert(0, BlockHost())
import streamingt2v_core
names = []
for info in pkgutil.walk_packages(streamingt2v_core.__path__, "streamingt2v_core."):
    importlib.import_module(info.name)
    names.append(info.name)
print(len(names), "modules")
'''


def test_core_imports_without_the_host():
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count = int(result.stdout.split()[0])
    assert count >= 3, result.stdout

"""Shared test set-up: the repository root is importable (scripts/, streamingt2v_core/)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Fixed seed before every test; results must not depend on test order."""
    try:
        import torch
    except ImportError:  # the import-isolation test runs without torch in some set-ups
        yield
        return
    torch.manual_seed(0)
    yield

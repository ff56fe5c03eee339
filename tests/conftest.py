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


# ---------------------------------------------------------------------------------------------------------------
# Random order (opt-in): STREAMINGT2V_TEST_ORDER_SEED=<int> shuffles the order of the modules and of the tests inside
# each module (a module's tests stay together, so module fixtures are built once; browser tests stay last, where
# Playwright's event loop needs them). The seed is printed in the header: rerun with it to reproduce an order.
ORDER_SEED_ENV = "STREAMINGT2V_TEST_ORDER_SEED"


def _order_seed() -> int | None:
    import os

    value = os.environ.get(ORDER_SEED_ENV, "").strip()
    return int(value) if value else None


def pytest_report_header(config):
    seed = _order_seed()
    return f"test order shuffled with {ORDER_SEED_ENV}={seed}" if seed is not None else None


def pytest_collection_modifyitems(config, items):
    seed = _order_seed()
    if seed is None:
        return
    import random

    rng = random.Random(seed)
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(str(item.fspath), []).append(item)
    names = list(modules)
    rng.shuffle(names)
    names.sort(key=lambda n: "tests/browser" in n.replace("\\", "/"))  # stable: browser modules last
    for name in names:
        rng.shuffle(modules[name])
    items[:] = [item for name in names for item in modules[name]]

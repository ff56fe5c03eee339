"""Layering inside the core: the metrics judge frames, not models, so they never import the model code."""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS = REPO_ROOT / "streamingt2v_core" / "metrics"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions), relative imports resolved."""
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def test_metrics_never_import_the_model_code():
    offenders = {p.name: sorted(m for m in imported_modules(p) if m.startswith("streamingt2v_core.models"))
                 for p in sorted(METRICS.glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_safe_load_helpers_live_in_the_core_and_the_old_path_still_imports():
    from streamingt2v_core import safe_load
    from streamingt2v_core.models.loading import safe_pickle, sources

    assert safe_pickle.describe_load_failure is safe_load.describe_load_failure
    assert sources.load_weights_only is safe_load.load_weights_only
    assert imported_modules(METRICS / "mawe.py") >= {"streamingt2v_core.safe_load"}

"""All bad-input cases together: docs/RELIABILITY.md, and the checks that span nodes.

`test_reliability_table_is_up_to_date` renders the table from the cases of every test_bad_inputs_* module and the
texts they recorded, and compares it with docs/RELIABILITY.md (regenerate:
`.venv/bin/python scripts/reliability_table.py`).
Run alone it runs every case; after the other modules it reuses what they recorded (bad_inputs_helpers._SEEN).
"""
from __future__ import annotations

import os
import re

from bad_inputs_helpers import (  # noqa: F401 (bench: this module's fixture)
    _SEEN, REPO_ROOT, Case, bench, run_case,
)
from test_bad_inputs_extend import CASES as EXTEND_CASES
from test_bad_inputs_initial_chunk import CASES as INITIAL_CASES
from test_bad_inputs_loaders import CASES as LOADER_CASES
from test_bad_inputs_metrics import CASES as METRIC_CASES
from test_bad_inputs_refine import CASES as REFINE_CASES
from test_bad_inputs_runs_plans import CASES as RUNS_PLANS_CASES

from scripts.reliability_table import TABLE_PATH, WRITE_ENV, Row, render


#: Every case, in the table's order (each module's cases in the order they were written).
CASES: list[Case] = [*LOADER_CASES, *INITIAL_CASES, *EXTEND_CASES, *REFINE_CASES, *METRIC_CASES, *RUNS_PLANS_CASES]


def test_the_case_list_covers_enough_ground():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.outcome for c in CASES} >= {"refused", "stopped", "note", "fallback", "defined", "host"}


def test_mismatched_model_inputs_are_refused_before_the_host_sampler(bench, monkeypatch):
    """The wrong-width text, VAE and image encoder never reach comfy.sample.sample (counted directly, besides the
    guider count every refused case checks)."""
    import comfy.sample

    calls = []
    original = comfy.sample.sample
    monkeypatch.setattr(comfy.sample, "sample", lambda *a, **k: calls.append(1) or original(*a, **k))
    ids = ["initial-sd15-text", "initial-no-tokens", "initial-vae-16ch", "extend-sdxl-text", "extend-vae-16ch",
           "extend-clip-vision-vit-l", "extend-gray-first-chunk"]
    for case in (c for c in CASES if c.id in ids):
        _SEEN.pop(case.id, None)
        seen = run_case(case, bench)
        assert seen.exception_type == "ValueError" and re.search(case.expect, seen.first_line), seen.text
    assert calls == []


def test_the_tests_the_table_refers_to_exist():
    from scripts.reliability_table import ALSO_COVERED

    refs = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", ALSO_COVERED)
    assert len(refs) >= 8
    for path, name in refs:
        source = (REPO_ROOT / path).read_text(encoding="utf-8")
        assert not name or f"def {name}(" in source, f"{path} has no test {name}"


def test_reliability_table_is_up_to_date(bench):
    rows = [Row(c.node, c.input, c.bad, c.outcome, run_case(c, bench).first_line) for c in CASES]
    text = render(rows)
    if os.environ.get(WRITE_ENV):
        TABLE_PATH.write_text(text, encoding="utf-8")
    committed = TABLE_PATH.read_text(encoding="utf-8") if TABLE_PATH.exists() else ""
    assert committed == text, ("docs/RELIABILITY.md is not what the cases produce; regenerate it with "
                               "`.venv/bin/python scripts/reliability_table.py`")

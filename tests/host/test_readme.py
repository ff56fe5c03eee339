"""The README stays true: every registered node of the pack is documented with every input."""
from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_node_and_input(object_info):
    text = README.read_text()
    rows = {line.split("|")[1].strip().strip("*"): line for line in text.splitlines() if line.startswith("| **StreamingT2V")}
    for node_id, info in object_info.items():
        if not node_id.startswith("StreamingT2V"):
            continue
        name = info["display_name"]
        assert name in rows, f"README has no row for node {name!r} (regenerate with scripts/node_table.py)"
        for section in ("required", "optional"):
            for input_name in info.get("input_order", {}).get(section) or []:
                assert f"`{input_name}`" in rows[name], f"README row of {name!r} does not list input {input_name!r}"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci

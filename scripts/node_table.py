"""Print the README's node table (Markdown) from the registered nodes' schemas.

    .venv/bin/python scripts/node_table.py > /tmp/nodes.md

The README must list every node with every input; tests/host/test_readme.py checks it stays true.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.comfy_host import boot_host  # noqa: E402


def node_rows(object_info: dict) -> list[str]:
    rows = ["| node | what it does | inputs | outputs |", "|---|---|---|---|"]
    for node_id in sorted(n for n in object_info if n.startswith("StreamingT2V")):
        info = object_info[node_id]
        inputs = []
        for section in ("required", "optional"):
            for name in (info.get("input_order", {}).get(section) or []):
                spec = info["input"][section][name]
                typ = "COMBO" if isinstance(spec[0], list) else spec[0]
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                default = f" = {opts['default']!r}" if "default" in opts and typ != "COMBO" else ""
                optional = " (optional)" if section == "optional" else ""
                inputs.append(f"`{name}` {typ}{default}{optional}")
        outputs = [f"`{n}` {t}" for n, t in zip(info.get("output_name", []), info.get("output", []))]
        description = (info.get("description") or "").replace("\n", " ").replace("|", "/")
        rows.append(f"| **{info['display_name']}** | {description} | {'<br>'.join(inputs)} | {'<br>'.join(outputs) or '-'} |")
    return rows


if __name__ == "__main__":
    host = boot_host(Path(tempfile.mkdtemp()))
    print("\n".join(node_rows(host.object_info())))

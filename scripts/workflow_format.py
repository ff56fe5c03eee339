"""UI-format workflow files: validate them against the host's registered nodes, convert to API format.

Workflow files (`workflows/*.json`) are what the web UI saves (`nodes`, `links`, `widgets_values`).
`validate_workflow` checks one the way the frontend would (node types exist, links connect
matching types, widget values fit the declared inputs: count, type, range, combo options) and
`workflow_to_api` converts it to the API format the executor takes. Both work from the
`/object_info` data of a host (a running server's, or `Host.object_info()` in-process), so the
demo, the tests and the browser test share one implementation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Node types that exist only in the web UI (no backend class); the API format drops them.
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Upload inputs add one extra (valueless) widget in the UI after the file name.
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "mesh_upload")


def _inputs_in_order(info: dict) -> list[tuple[str, Any, dict, bool]]:
    """(name, type, options, required) for each declared input in the order the UI lays them out."""
    out = []
    for section in ("required", "optional"):
        spec = info.get("input", {}).get(section, {}) or {}
        order = info.get("input_order", {}).get(section, list(spec.keys()))
        for name in order:
            entry = spec[name]
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, typ, opts, section == "required"))
    return out


def _widget_kind(typ: Any, opts: dict) -> tuple[str | None, list | None]:
    if isinstance(typ, list):
        return "COMBO", typ
    if typ == "COMBO":
        return "COMBO", list(opts.get("options", []))
    if typ in WIDGET_TYPES:
        return typ, None
    return None, None


def _has_control_widget(name: str, typ: str, opts: dict) -> bool:
    # The frontend adds a "control after generate" widget (fixed/increment/randomize) after
    # seed-like INT inputs; its value is stored in widgets_values right after the seed.
    if typ != "INT":
        return False
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return name in ("seed", "noise_seed")


def _types_compatible(out_type: str, in_type: Any) -> bool:
    if isinstance(in_type, list):  # a combo fed by a link: the UI allows COMBO outputs
        return out_type in ("COMBO", "*") or isinstance(out_type, list)
    if out_type == "*" or in_type == "*":
        return True
    outs = {t.strip() for t in str(out_type).split(",")}
    ins = {t.strip() for t in str(in_type).split(",")}
    return bool(outs & ins)


def _widget_values_by_input(node: dict, info: dict) -> tuple[dict[str, Any], list[str]]:
    """Map a UI node's widgets_values onto its widget inputs; return (values, problems)."""
    problems: list[str] = []
    raw = node.get("widgets_values", [])
    if isinstance(raw, dict):  # some nodes (VHS) store a dict keyed by input name
        return dict(raw), problems
    values: dict[str, Any] = {}
    i = 0
    for name, typ, opts, _req in _inputs_in_order(info):
        kind, _ = _widget_kind(typ, opts)
        if kind is None or opts.get("forceInput"):
            continue
        if i >= len(raw):
            problems.append(f"widget '{name}': no value in widgets_values (has {len(raw)} values)")
            break
        values[name] = raw[i]
        i += 1
        if _has_control_widget(name, kind, opts):
            if i < len(raw) and raw[i] in ("fixed", "increment", "decrement", "randomize"):
                i += 1
        if any(opts.get(flag) for flag in UPLOAD_FLAGS) and i < len(raw) and isinstance(raw[i], str) and raw[i] in ("image", "video", "audio", ""):
            i += 1
    if i < len(raw):
        problems.append(f"{len(raw) - i} unexpected extra widget value(s) {raw[i:]!r}")
    return values, problems


def _check_widget_value(name: str, typ: Any, opts: dict, value: Any) -> str | None:
    kind, combo = _widget_kind(typ, opts)
    if kind == "COMBO":
        if combo and value not in combo:
            shown = combo if len(combo) <= 8 else combo[:8] + ["..."]
            return f"input '{name}': value {value!r} is not one of {shown}"
        return None
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            return f"input '{name}': expected an integer, got {value!r}"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"input '{name}': expected a number, got {value!r}"
    if kind in ("INT", "FLOAT"):
        lo, hi = opts.get("min"), opts.get("max")
        if lo is not None and value < lo:
            return f"input '{name}': value {value} is below the minimum {lo}"
        if hi is not None and value > hi:
            return f"input '{name}': value {value} is above the maximum {hi}"
    if kind == "STRING" and not isinstance(value, str):
        return f"input '{name}': expected text, got {value!r}"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"input '{name}': expected true/false, got {value!r}"
    return None


def _load(workflow: dict | str | Path) -> dict:
    if isinstance(workflow, (str, Path)):
        return json.loads(Path(workflow).read_text())
    return workflow


def validate_workflow(workflow: dict | str | Path, object_info: dict[str, dict]) -> list[str]:
    """Problems of a UI-format workflow against the registered nodes; [] when it is valid.

    Each problem names the node (id, type and title) and the input.
    """
    wf = _load(workflow)
    problems: list[str] = []
    nodes_by_id = {n["id"]: n for n in wf.get("nodes", [])}

    def label(node: dict) -> str:
        title = node.get("title")
        return f"node {node['id']} ({node['type']}{', ' + repr(title) if title else ''})"

    for node in nodes_by_id.values():
        if node["type"] in FRONTEND_ONLY_TYPES:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{label(node)}: node type '{node['type']}' is not registered (missing custom node?)")
            continue
        values, wproblems = _widget_values_by_input(node, info)
        problems += [f"{label(node)}: {p}" for p in wproblems]
        linked = {inp["name"] for inp in node.get("inputs", []) if inp.get("link") is not None}
        for name, typ, opts, required in _inputs_in_order(info):
            if name in linked:
                continue
            kind, _ = _widget_kind(typ, opts)
            if kind is None or opts.get("forceInput"):
                if required:
                    problems.append(f"{label(node)}: required input '{name}' ({typ}) is not connected")
                continue
            if name in values:
                err = _check_widget_value(name, typ, opts, values[name])
                if err:
                    problems.append(f"{label(node)}: {err}")
    for link in wf.get("links", []):
        link_id, src_id, src_slot, dst_id, dst_slot, ltype = link[:6]
        src, dst = nodes_by_id.get(src_id), nodes_by_id.get(dst_id)
        if src is None or dst is None:
            problems.append(f"link {link_id}: connects missing node {src_id if src is None else dst_id}")
            continue
        if dst["type"] in FRONTEND_ONLY_TYPES or src["type"] in FRONTEND_ONLY_TYPES:
            continue
        sinfo, dinfo = object_info.get(src["type"]), object_info.get(dst["type"])
        if sinfo is None or dinfo is None:
            continue
        outs = sinfo.get("output", [])
        if src_slot >= len(outs):
            problems.append(f"link {link_id}: {label(src)} has no output slot {src_slot}")
            continue
        dst_inputs = dst.get("inputs", [])
        if dst_slot >= len(dst_inputs):
            problems.append(f"link {link_id}: {label(dst)} has no input slot {dst_slot}")
            continue
        in_name = dst_inputs[dst_slot]["name"]
        declared = {n: t for n, t, _o, _r in _inputs_in_order(dinfo)}
        if in_name not in declared:
            problems.append(f"link {link_id}: {label(dst)} has no input named '{in_name}'")
            continue
        if not _types_compatible(outs[src_slot], declared[in_name]):
            problems.append(
                f"link {link_id}: {label(src)} output {src_slot} ({outs[src_slot]}) cannot feed {label(dst)} input '{in_name}' ({declared[in_name]})"
            )
    return problems


def workflow_to_api(workflow: dict | str | Path, object_info: dict[str, dict]) -> dict:
    """Convert a UI-format workflow into the API format (`{id: {class_type, inputs}}`)."""
    wf = _load(workflow)
    problems = validate_workflow(wf, object_info)
    if problems:
        raise ValueError("invalid workflow:\n" + "\n".join(problems))
    nodes_by_id = {n["id"]: n for n in wf.get("nodes", [])}
    links = {l[0]: l for l in wf.get("links", [])}

    def source_of(link_id: int) -> list:
        link = links[link_id]
        src = nodes_by_id[link[1]]
        if src["type"] == "Reroute":  # follow reroutes back to the real output
            return source_of(src["inputs"][0]["link"])
        return [str(src["id"]), link[2]]

    api: dict[str, dict] = {}
    for node in nodes_by_id.values():
        if node["type"] in FRONTEND_ONLY_TYPES or node.get("mode", 0) in (2, 4):
            continue
        info = object_info[node["type"]]
        values, _ = _widget_values_by_input(node, info)
        inputs: dict[str, Any] = {}
        links_by_name = {inp["name"]: inp.get("link") for inp in node.get("inputs", [])}
        for name, _typ, _opts, _req in _inputs_in_order(info):
            link_id = links_by_name.get(name)
            if link_id is not None:
                src = nodes_by_id[links[link_id][1]]
                if src["type"] == "PrimitiveNode":
                    inputs[name] = src["widgets_values"][0]
                else:
                    inputs[name] = source_of(link_id)
            elif name in values:
                inputs[name] = values[name]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node.get("title", node["type"])}}
    return api

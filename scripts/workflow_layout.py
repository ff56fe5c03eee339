"""Layout checks of UI-format workflows: what an artist sees when the file opens.

The web UI (ComfyUI frontend 1.32, LiteGraph) draws a node as a title bar of 30 px above its
`pos`, a body of `size`, output sockets on the right edge and input sockets on the left edge,
one 20 px row each, widgets below the socket rows, and links as cubic Bezier splines between
sockets. "Zoom to fit" scales the view so that the graph's bounds fill 75 % of the canvas, and the
canvas draws nodes in low detail (no titles, no widget text) below a zoom threshold.

This module holds that geometry (numbers from the frontend, cited where used) and the checks a
readable workflow passes:

* no node box (title bar included) overlaps another, and no node badge (the frontend's
  "comfyui-streamingt2v" source label, drawn just above a pack node's title bar) covers another node;
* every node is either inside a group's body (below its title) or outside the group entirely,
  and groups do not overlap one another;
* no link passes under a node's box (links are drawn behind nodes);
* links leaving one node from different sockets do not cross each other;
* the zoom that fits the whole graph into a 1600x1000 canvas is at least 5 % above the low-detail
  threshold (`ZOOM_MARGIN`), so one more widget or a slightly larger node cannot tip it into low detail.

The geometry comes either from a workflow file alone (`geometry_from_workflow`, an estimate
that needs the nodes' `/object_info` only for sockets that sit on widget rows) or from the live
editor (the browser test reads node boxes and socket positions from the frontend itself and
builds the same `Geometry`), so the same checks run in a fast test and in the real UI.

Approximation, documented: a link is checked as a polyline of points sampled along its spline
every few graph units (`SAMPLE_STEP`); a point inside a node's box (shrunk by `BOX_MARGIN`) means
the link runs under that node. Near its own two sockets a link necessarily touches its own nodes
(`ENDPOINT_CLEARANCE`), so those few units are not checked against the link's own nodes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LiteGraph's constants in the frontend the host ships (comfyui_frontend_package 1.32.9):
TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT
SLOT_HEIGHT = 20  # LiteGraph.NODE_SLOT_HEIGHT; socket i sits at pos.y + (i + 0.7) * SLOT_HEIGHT
WIDGET_ROW = 24  # LiteGraph.NODE_WIDGET_HEIGHT (20) + the 4 px the frontend leaves between widgets
WIDGETS_TOP_MARGIN = 6  # first widget row starts 6 px below the socket rows
NODE_TEXT_SIZE = 14  # LiteGraph.NODE_TEXT_SIZE
GROUP_TITLE_HEIGHT = 24 * 1.4  # LGraphGroup.titleHeight = font_size (24 by default) * 1.4
SPLINE_CONTROL = 0.25  # LGraphCanvas.renderLink: control points at 0.25 x the socket distance
FIT_FILL = 0.75  # DragAndScale.fitToBounds default zoom: the bounds fill 75 % of the canvas
FIT_PADDING = 10  # createBounds() pads the fitted items by 10 px on each side
# The canvas switches to low-detail drawing when the scale drops below
# LiteGraph.Canvas.MinFontSizeForLOD / (NODE_TEXT_SIZE * sqrt(devicePixelRatio))
# (LGraphCanvas.updateLowQualityThreshold); the setting's default is 8 px, so 8 / 14 = 0.571 at
# a device pixel ratio of 1.
MIN_FONT_SIZE_FOR_LOD = 8
LOW_DETAIL_ZOOM = MIN_FONT_SIZE_FOR_LOD / NODE_TEXT_SIZE
FIT_CANVAS = (1600, 1000)  # the window the graph must be readable in, whole
# How far above the low-detail threshold "Zoom to fit" must stay: two workflows once fitted at 0.574, 0.4 % above
# 0.571, so one more widget would have made them unreadable.
ZOOM_MARGIN = 0.05
READABLE_ZOOM = LOW_DETAIL_ZOOM * (1 + ZOOM_MARGIN)

# The node source badge the frontend draws on every custom node (setting Comfy.NodeBadge.NodeSourceBadgeMode,
# default "hide built-in"): a label "comfyui-streamingt2v" right-aligned just above the title bar, measured in the
# frontend 1.32 at zoom 1: 20 px tall, 3 px above the title, about 125 px wide, 3 px in from the right edge.
BADGE_HEIGHT = 20
BADGE_GAP = 3
BADGE_WIDTH = 128
PACK_TYPE_PREFIX = "StreamingT2V"

SAMPLE_STEP = 4.0  # graph units between checked points of a link
BOX_MARGIN = 1.0  # a link may graze a node's edge
ENDPOINT_CLEARANCE = 24.0  # the part of a link this close to its own socket is not checked against its own node

FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = ("seed", "noise_seed")


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def overlap(self, other: "Box") -> tuple[float, float]:
        """Width and height of the intersection (<= 0 when the boxes do not meet)."""
        return (min(self.right, other.right) - max(self.x, other.x),
                min(self.bottom, other.bottom) - max(self.y, other.y))

    def contains_box(self, other: "Box") -> bool:
        return other.x >= self.x and other.y >= self.y and other.right <= self.right and other.bottom <= self.bottom

    def contains_point(self, x: float, y: float, margin: float = 0.0) -> bool:
        return self.x + margin < x < self.right - margin and self.y + margin < y < self.bottom - margin


@dataclass
class LinkPath:
    link_id: int
    source: int  # node id
    source_slot: int
    target: int
    start: tuple[float, float]  # output socket
    end: tuple[float, float]  # input socket


@dataclass
class Geometry:
    """What the editor draws: node boxes (title bar included), group boxes and links."""

    nodes: dict[int, Box]
    labels: dict[int, str]
    groups: list[tuple[str, Box]] = field(default_factory=list)
    links: list[LinkPath] = field(default_factory=list)
    badges: dict[int, Box] = field(default_factory=dict)  # node id -> its source badge (pack nodes only)
    unplaced_links: list[str] = field(default_factory=list)  # links whose sockets could not be located

    def bounds(self) -> Box:
        boxes = list(self.nodes.values()) + [b for _t, b in self.groups]
        x0 = min(b.x for b in boxes)
        y0 = min(b.y for b in boxes)
        x1 = max(b.right for b in boxes)
        y1 = max(b.bottom for b in boxes)
        return Box(x0, y0, x1 - x0, y1 - y0)


# ---------------------------------------------------------------------------------------------
# Geometry from a workflow file
# ---------------------------------------------------------------------------------------------


def badge_box(node_box: Box) -> Box:
    """Where the frontend draws a pack node's source badge, from the node's box (title bar included)."""
    return Box(node_box.right - BADGE_WIDTH, node_box.y - BADGE_GAP - BADGE_HEIGHT, BADGE_WIDTH - 3, BADGE_HEIGHT)


def _title_height(node: dict) -> float:
    """A Reroute is drawn without a title bar (the frontend's RerouteNode: title_mode NO_TITLE)."""
    return 0 if node["type"] == "Reroute" else TITLE_HEIGHT


def _label(node: dict) -> str:
    return f"#{node['id']} {node.get('title') or node['type']}"


def _declared_inputs(info: dict) -> list[tuple[str, Any, dict]]:
    out = []
    for section in ("required", "optional"):
        spec = info.get("input", {}).get(section, {}) or {}
        for name in info.get("input_order", {}).get(section, list(spec.keys())):
            entry = spec[name]
            out.append((name, entry[0], entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}))
    return out


def _is_widget(typ: Any, opts: dict) -> bool:
    return (isinstance(typ, list) or typ in WIDGET_TYPES) and not opts.get("forceInput")


def _widget_socket_offsets(info: dict, n_socket_rows: int) -> dict[str, float | None]:
    """y offset (from the node's pos) of the socket drawn next to each widget; None when a widget
    of unknown height (a multiline text box) comes before it."""
    y: float | None = n_socket_rows * SLOT_HEIGHT + WIDGETS_TOP_MARGIN
    offsets: dict[str, float | None] = {}
    for name, typ, opts in _declared_inputs(info):
        if not _is_widget(typ, opts):
            continue
        offsets[name] = None if y is None else y + SLOT_HEIGHT / 2
        if y is None:
            continue
        if typ == "STRING" and opts.get("multiline"):
            y = None  # a DOM text box: its height depends on the node's size
            continue
        y += WIDGET_ROW
        control = opts.get("control_after_generate", name in SEED_NAMES if typ == "INT" else False)
        if control:
            y += WIDGET_ROW  # the "control after generate" widget
    return offsets


def _socket_rows(node: dict, info: dict | None) -> tuple[list[str], int]:
    """Names of the node's socket (non-widget) inputs in drawing order, and its socket row count."""
    if info is None:
        names = [i["name"] for i in node.get("inputs", []) if not i.get("widget")]
        return names, max(len(names), len(node.get("outputs", [])))
    names = [n for n, t, o in _declared_inputs(info) if not _is_widget(t, o)]
    return names, max(len(names), len(info.get("output", [])))


def geometry_from_workflow(workflow: dict | str | Path, object_info: dict[str, dict] | None = None) -> Geometry:
    """The geometry the editor draws for a workflow file, estimated from its saved positions and
    sizes (the browser test checks that the editor keeps them) and the frontend's layout rules."""
    wf = json.loads(Path(workflow).read_text()) if isinstance(workflow, (str, Path)) else workflow
    object_info = object_info or {}
    nodes = {n["id"]: n for n in wf.get("nodes", [])}
    geo = Geometry(
        nodes={i: Box(n["pos"][0], n["pos"][1] - _title_height(n), n["size"][0], n["size"][1] + _title_height(n))
               for i, n in nodes.items()},
        labels={i: _label(n) for i, n in nodes.items()},
        groups=[(g.get("title", ""), Box(*g["bounding"])) for g in wf.get("groups", [])],
    )
    geo.badges = {i: badge_box(geo.nodes[i]) for i, n in nodes.items() if str(n["type"]).startswith(PACK_TYPE_PREFIX)}
    for link in wf.get("links", []):
        link_id, src_id, src_slot, dst_id, dst_slot = link[:5]
        src, dst = nodes.get(src_id), nodes.get(dst_id)
        if src is None or dst is None:
            continue
        start = (src["pos"][0] + src["size"][0] - SLOT_HEIGHT / 2 + 1, src["pos"][1] + (src_slot + 0.7) * SLOT_HEIGHT)
        end = _input_socket(dst, dst_slot, object_info.get(dst["type"]))
        if end is None:
            geo.unplaced_links.append(f"link {link_id} into {_label(dst)}")
            continue
        geo.links.append(LinkPath(link_id, src_id, src_slot, dst_id, start, end))
    return geo


def _input_socket(node: dict, slot: int, info: dict | None) -> tuple[float, float] | None:
    x = node["pos"][0] + SLOT_HEIGHT / 2
    inputs = node.get("inputs", [])
    if slot >= len(inputs):
        return None
    entry = inputs[slot]
    names, rows = _socket_rows(node, info)
    if entry.get("widget"):
        if info is None:
            return None
        offset = _widget_socket_offsets(info, rows).get(entry["widget"]["name"])
        return None if offset is None else (x, node["pos"][1] + offset)
    row = names.index(entry["name"]) if entry["name"] in names else slot
    return (x, node["pos"][1] + (row + 0.7) * SLOT_HEIGHT)


# ---------------------------------------------------------------------------------------------
# Links as the frontend draws them
# ---------------------------------------------------------------------------------------------


def spline_points(start: tuple[float, float], end: tuple[float, float], step: float = SAMPLE_STEP) -> list[tuple[float, float]]:
    """Points along the link's cubic Bezier: it leaves the output to the right and enters the
    input from the left, control points 0.25 x the socket distance away (LGraphCanvas.renderLink,
    LinkRenderType.SPLINE_LINK, the default link style)."""
    (x0, y0), (x3, y3) = start, end
    d = math.dist(start, end) * SPLINE_CONTROL
    x1, y1, x2, y2 = x0 + d, y0, x3 - d, y3
    # The curve's speed |B'(t)| never exceeds 3x its longest control-polygon side, so this many
    # evenly spaced t keep neighbouring points at most `step` apart.
    longest = max(math.dist((x0, y0), (x1, y1)), math.dist((x1, y1), (x2, y2)), math.dist((x2, y2), (x3, y3)))
    n = max(2, int(math.ceil(3 * longest / step)) + 1)
    points = []
    for k in range(n):
        t = k / (n - 1)
        u = 1 - t
        a, b, c, e = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        points.append((a * x0 + b * x1 + c * x2 + e * x3, a * y0 + b * y1 + c * y2 + e * y3))
    return points


def _segments_cross(p: tuple, q: tuple, r: tuple, s: tuple) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2, d3, d4 = orient(r, s, p), orient(r, s, q), orient(p, q, r), orient(p, q, s)
    return d1 * d2 < 0 and d3 * d4 < 0


def _polylines_cross(a: list[tuple], b: list[tuple]) -> bool:
    for i in range(len(a) - 1):
        for j in range(len(b) - 1):
            if _segments_cross(a[i], a[i + 1], b[j], b[j + 1]):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def fit_zoom(geo: Geometry, canvas: tuple[float, float] = FIT_CANVAS) -> float:
    """The scale "Zoom to fit" (Comfy.Canvas.FitView) picks for the whole graph on a canvas of this
    size (DragAndScale.fitToBounds with createBounds' 10 px padding; bounds narrower than 300 px
    count as 300)."""
    b = geo.bounds()
    w, h = b.w + 2 * FIT_PADDING, b.h + 2 * FIT_PADDING
    return min(FIT_FILL * canvas[0] / max(w, 300), FIT_FILL * canvas[1] / max(h, 300))


def overlapping_nodes(geo: Geometry) -> list[str]:
    ids = sorted(geo.nodes)
    problems = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            dx, dy = geo.nodes[a].overlap(geo.nodes[b])
            if dx > 0 and dy > 0:
                problems.append(f"{geo.labels[a]} and {geo.labels[b]} overlap ({dx:.0f}x{dy:.0f})")
    return problems


def covering_badges(geo: Geometry) -> list[str]:
    """Node badges drawn over another node (they cover its last widget's value)."""
    problems = []
    for node_id, badge in sorted(geo.badges.items()):
        for other_id, box in geo.nodes.items():
            dx, dy = badge.overlap(box)
            if other_id != node_id and dx > 0 and dy > 0:
                problems.append(f"the badge of {geo.labels[node_id]} covers {geo.labels[other_id]} ({dx:.0f}x{dy:.0f}): "
                                f"leave {BADGE_HEIGHT + BADGE_GAP} px above the pack node's title")
    return problems


def group_problems(geo: Geometry) -> list[str]:
    problems = []
    for title, box in geo.groups:
        body = Box(box.x, box.y + GROUP_TITLE_HEIGHT, box.w, box.h - GROUP_TITLE_HEIGHT)
        for node_id, node in geo.nodes.items():
            dx, dy = box.overlap(node)
            if dx <= 0 or dy <= 0 or body.contains_box(node):
                continue
            problems.append(f"group {title!r} cuts through {geo.labels[node_id]} (or covers it with its title)")
    for i, (ta, a) in enumerate(geo.groups):
        for tb, b in geo.groups[i + 1:]:
            dx, dy = a.overlap(b)
            if dx > 0 and dy > 0:
                problems.append(f"groups {ta!r} and {tb!r} overlap ({dx:.0f}x{dy:.0f})")
    return problems


def links_under_nodes(geo: Geometry) -> list[str]:
    problems = []
    for link in geo.links:
        points = spline_points(link.start, link.end)
        for node_id, box in geo.nodes.items():
            own = {link.source: link.start, link.target: link.end}.get(node_id)
            hit = next((p for p in points if box.contains_point(*p, margin=BOX_MARGIN)
                        and (own is None or math.dist(p, own) > ENDPOINT_CLEARANCE)), None)
            if hit is not None:
                problems.append(f"link {link.link_id} ({geo.labels[link.source]} -> {geo.labels[link.target]}) "
                                f"runs under {geo.labels[node_id]} at ({hit[0]:.0f}, {hit[1]:.0f})")
    return problems


def crossing_fan_out(geo: Geometry) -> list[str]:
    """Links leaving one node from different outputs that cross each other (the outputs are
    in the wrong vertical order for their targets)."""
    problems = []
    by_source: dict[int, list[LinkPath]] = {}
    for link in geo.links:
        by_source.setdefault(link.source, []).append(link)
    for source, links in by_source.items():
        for i, a in enumerate(links):
            for b in links[i + 1:]:
                if a.source_slot == b.source_slot:
                    continue
                if _polylines_cross(spline_points(a.start, a.end, 8.0), spline_points(b.start, b.end, 8.0)):
                    problems.append(f"links {a.link_id} and {b.link_id} from {geo.labels[source]} cross")
    return problems


def layout_problems(geo: Geometry, canvas: tuple[float, float] = FIT_CANVAS,
                    low_detail_zoom: float = LOW_DETAIL_ZOOM, margin: float = ZOOM_MARGIN) -> list[str]:
    """Everything that makes the graph hard to read at a glance; [] for a clean layout."""
    problems = overlapping_nodes(geo) + covering_badges(geo) + group_problems(geo) + links_under_nodes(geo)
    problems += crossing_fan_out(geo)
    zoom = fit_zoom(geo, canvas)
    needed = low_detail_zoom * (1 + margin)
    if zoom < needed:
        b = geo.bounds()
        problems.append(f"the whole graph ({b.w:.0f}x{b.h:.0f}) fits a {canvas[0]}x{canvas[1]} canvas only at zoom "
                        f"{zoom:.3f}, less than {margin:.0%} above the frontend's low-detail threshold "
                        f"{low_detail_zoom:.3f} (at or below it titles and widgets are not drawn): needs {needed:.3f}")
    return problems


def geometry_from_live(data: dict[str, Any]) -> Geometry:
    """A Geometry from what the browser test reads out of the live editor (see
    tests/browser/page_helpers.js, `layout()`): boxes and socket positions as the frontend has them."""
    geo = Geometry(
        nodes={int(n["id"]): Box(*n["box"]) for n in data["nodes"]},
        labels={int(n["id"]): f"#{n['id']} {n['title']}" for n in data["nodes"]},
        groups=[(g["title"], Box(*g["box"])) for g in data.get("groups", [])],
    )
    geo.badges = {int(n["id"]): badge_box(geo.nodes[int(n["id"])]) for n in data["nodes"]
                  if str(n.get("type", "")).startswith(PACK_TYPE_PREFIX)}
    for link in data.get("links", []):
        geo.links.append(LinkPath(int(link["id"]), int(link["source"]), int(link["sourceSlot"]), int(link["target"]),
                                  tuple(link["start"]), tuple(link["end"])))
    return geo


def socket_mismatches(estimated: Geometry, live: Geometry, tolerance: float = 2.0) -> list[str]:
    """Links whose sockets the file-only estimate places differently from the live editor."""
    live_links = {l.link_id: l for l in live.links}
    problems = []
    for link in estimated.links:
        other = live_links.get(link.link_id)
        if other is None:
            problems.append(f"link {link.link_id}: not drawn in the editor")
            continue
        for end, a, b in (("start", link.start, other.start), ("end", link.end, other.end)):
            if math.dist(a, b) > tolerance:
                problems.append(f"link {link.link_id} {end}: estimated {tuple(round(v) for v in a)}, "
                                f"drawn at {tuple(round(v) for v in b)}")
    return problems


def box_mismatches(estimated: Geometry, live: Geometry, tolerance: float = 1.0) -> list[str]:
    """Nodes the editor draws at another place or size than the file says (it grows nodes whose
    saved size is too small for their widgets)."""
    problems = []
    for node_id, box in estimated.nodes.items():
        other = live.nodes.get(node_id)
        if other is None:
            problems.append(f"{estimated.labels[node_id]}: not in the editor")
        elif max(abs(box.x - other.x), abs(box.y - other.y), abs(box.w - other.w), abs(box.h - other.h)) > tolerance:
            problems.append(f"{estimated.labels[node_id]}: saved box {_fmt(box)}, drawn {_fmt(other)}")
    return problems


def _fmt(box: Box) -> str:
    return f"[{box.x:.0f}, {box.y:.0f}, {box.w:.0f}x{box.h:.0f}]"


def describe(geo: Geometry, canvas: tuple[float, float] = FIT_CANVAS) -> str:
    b = geo.bounds()
    return (f"bounds {b.w:.0f}x{b.h:.0f}, fit zoom {fit_zoom(geo, canvas):.3f} (low detail below {LOW_DETAIL_ZOOM:.3f}, "
            f"required {READABLE_ZOOM:.3f})")

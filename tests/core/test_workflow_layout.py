"""scripts/workflow_layout.py: the geometry of the frontend's drawing and the checks built on it,
on small graphs whose problems are known (the shipped workflows are checked in tests/host and, on
the live editor, in tests/browser)."""
from __future__ import annotations

import math

import pytest

from scripts.workflow_layout import (
    FIT_FILL,
    FIT_PADDING,
    GROUP_TITLE_HEIGHT,
    LOW_DETAIL_ZOOM,
    READABLE_ZOOM,
    TITLE_HEIGHT,
    ZOOM_MARGIN,
    Box,
    crossing_fan_out,
    fit_zoom,
    geometry_from_workflow,
    group_problems,
    layout_problems,
    links_under_nodes,
    overlapping_nodes,
    spline_points,
)


def _node(node_id: int, pos, size, outputs: int = 0, inputs: int = 0, type_: str = "Note") -> dict:
    return {"id": node_id, "type": type_, "title": f"n{node_id}", "pos": list(pos), "size": list(size),
            "inputs": [{"name": f"in{i}", "type": "*", "link": None} for i in range(inputs)],
            "outputs": [{"name": f"out{i}", "type": "*", "links": []} for i in range(outputs)]}


def _graph(nodes, links=(), groups=()) -> dict:
    return {"nodes": nodes, "links": [list(l) for l in links],
            "groups": [{"title": t, "bounding": list(b)} for t, b in groups]}


def test_boxes_include_the_title_bar_and_sockets_sit_on_the_frontends_rows():
    wf = _graph([_node(1, (100, 200), (300, 100), outputs=2), _node(2, (600, 200), (200, 100), inputs=2)],
                [(1, 1, 1, 2, 1, "*")])
    geo = geometry_from_workflow(wf)
    assert geo.nodes[1] == Box(100, 200 - TITLE_HEIGHT, 300, 100 + TITLE_HEIGHT)
    (link,) = geo.links
    # Measured in the frontend 1.32: output i at (x + w - 9, y + 14 + 20 i), input i at (x + 10, y + 14 + 20 i).
    assert link.start == (100 + 300 - 9, 200 + 14 + 20)
    assert link.end == (600 + 10, 200 + 14 + 20)


def test_spline_leaves_right_enters_left_with_quarter_distance_control_points():
    start, end = (0.0, 0.0), (400.0, 300.0)
    points = spline_points(start, end, step=1.0)
    assert points[0] == pytest.approx(start) and points[-1] == pytest.approx(end)
    d = 0.25 * 500.0
    # Cubic Bezier P0=(0,0), P1=(d,0), P2=(400-d,300), P3=(400,300) at t = 1/2.
    mid = ((0 + 3 * d + 3 * (400 - d) + 400) / 8, (0 + 0 + 3 * 300 + 300) / 8)
    assert min(math.dist(p, mid) for p in points) < 1.0
    assert all(math.dist(a, b) <= 1.0 + 1e-9 for a, b in zip(points, points[1:]))


def test_a_link_under_a_node_is_found_and_moving_the_node_clears_it():
    source = _node(1, (0, 100), (200, 80), outputs=1)
    target = _node(2, (800, 100), (200, 80), inputs=1)
    blocker = _node(3, (400, 60), (100, 120))
    wf = _graph([source, target, blocker], [(7, 1, 0, 2, 0, "*")])
    problems = links_under_nodes(geometry_from_workflow(wf))
    assert len(problems) == 1 and "link 7" in problems[0] and "#3" in problems[0]
    blocker["pos"] = [400, 300]  # below the link
    assert links_under_nodes(geometry_from_workflow(wf)) == []


def test_a_link_doubling_back_behind_its_own_target_is_found():
    # The target sits left of the source: the spline leaves rightwards and comes back through both.
    wf = _graph([_node(1, (600, 100), (200, 200), outputs=1), _node(2, (100, 100), (600, 200), inputs=1)],
                [(1, 1, 0, 2, 0, "*")])
    assert links_under_nodes(geometry_from_workflow(wf))


def test_overlapping_nodes_count_the_title_bar():
    upper = _node(1, (0, 0), (200, 100))
    lower = _node(2, (0, 100 + TITLE_HEIGHT - 5), (200, 100))  # its title bar covers 5 px of the upper node
    assert overlapping_nodes(geometry_from_workflow(_graph([upper, lower])))
    lower["pos"][1] = 100 + TITLE_HEIGHT
    assert overlapping_nodes(geometry_from_workflow(_graph([upper, lower]))) == []


def test_groups_hold_nodes_whole_and_below_their_title():
    node = _node(1, (50, 100), (200, 100))  # box y 70..200
    inside = ("stage", (40, 70 - GROUP_TITLE_HEIGHT - 1, 300, 200))
    under_title = ("stage", (40, 60, 300, 200))
    cutting = ("stage", (40, 0, 100, 300))
    assert group_problems(geometry_from_workflow(_graph([node], groups=[inside]))) == []
    assert group_problems(geometry_from_workflow(_graph([node], groups=[under_title])))
    assert group_problems(geometry_from_workflow(_graph([node], groups=[cutting])))
    overlapping = [("a", (0, 0, 100, 100)), ("b", (50, 50, 100, 100))]
    assert group_problems(geometry_from_workflow(_graph([], groups=overlapping)))


def test_fan_out_links_in_the_wrong_order_cross():
    """frame_plan.json as it was: output 3 went to the lower preview, output 4 to the upper one."""
    plan = _node(1, (60, 120), (360, 230), outputs=5)
    upper = _node(2, (480, 120), (420, 200), inputs=1)
    lower = _node(3, (480, 360), (420, 120), inputs=1)
    crossed = [(1, 1, 4, 2, 0, "*"), (2, 1, 3, 3, 0, "*")]
    assert crossing_fan_out(geometry_from_workflow(_graph([plan, upper, lower], crossed)))
    in_order = [(1, 1, 3, 2, 0, "*"), (2, 1, 4, 3, 0, "*")]
    assert crossing_fan_out(geometry_from_workflow(_graph([plan, upper, lower], in_order))) == []


def test_fit_zoom_is_the_frontends_zoom_to_fit_and_the_threshold_its_lod_rule():
    wide = _graph([_node(1, (0, TITLE_HEIGHT), (1900, 300))])
    expected = FIT_FILL * 1600 / (1900 + 2 * FIT_PADDING)
    assert fit_zoom(geometry_from_workflow(wide), (1600, 1000)) == pytest.approx(expected)
    assert LOW_DETAIL_ZOOM == pytest.approx(8 / 14)
    assert any("low-detail" in p for p in layout_problems(geometry_from_workflow(_graph([_node(1, (0, 30), (2200, 300))]))))
    assert layout_problems(geometry_from_workflow(wide)) == []


def test_fit_zoom_must_keep_a_five_percent_margin_above_the_low_detail_threshold():
    """Two workflows once fitted at 0.574, 0.4 % above 0.571: readable today, unreadable after one more widget."""
    assert ZOOM_MARGIN >= 0.05 and READABLE_ZOOM == pytest.approx(LOW_DETAIL_ZOOM * (1 + ZOOM_MARGIN))

    def graph_at(zoom: float) -> dict:
        width = FIT_FILL * 1600 / zoom - 2 * FIT_PADDING  # the width "Zoom to fit" gives exactly this zoom
        return _graph([_node(1, (0, TITLE_HEIGHT), (width, 300))])

    tight = geometry_from_workflow(graph_at(0.574))
    assert fit_zoom(tight) == pytest.approx(0.574)
    problems = layout_problems(tight)
    assert len(problems) == 1 and "5% above" in problems[0] and "needs 0.600" in problems[0], problems
    assert layout_problems(geometry_from_workflow(graph_at(READABLE_ZOOM * 1.001))) == []
    # The margin is a parameter of the check (0 gives the frontend's bare threshold).
    assert layout_problems(tight, margin=0.0) == []

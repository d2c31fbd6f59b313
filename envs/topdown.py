"""Top-down maps of a navigation graph: what ``render_mode="rgb_array"`` returns.

:func:`draw_topdown` rasterizes one scan seen from above (x to the right, y up; metres scaled
to fit) with PIL: every edge and viewpoint in grey (those more than ``FLOOR_GAP`` metres above
or below the current position paler, so multi-floor houses stay readable), the reference
path in green, the agent's path in red, the start in blue, the goal in gold (with the 3 m
success circle) and the current position as a black disc with a heading tick. The colours
are the module constants below, flat and unantialiased, so tests and tools can find them in
the returned pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vln_clip.graph import NavGraph
from vln_clip.task import SUCCESS_DISTANCE

BACKGROUND = (255, 255, 255)
EDGE = (190, 190, 190)
NODE = (140, 140, 140)
OTHER_FLOOR = (228, 228, 228)
REFERENCE = (40, 160, 40)
AGENT_PATH = (220, 30, 30)
START = (30, 80, 220)
GOAL = (235, 165, 0)
CURRENT = (0, 0, 0)
TEXT = (60, 60, 60)
FLOOR_GAP = 1.8  # metres: a viewpoint this far above/below the current one is on another floor
SUCCESS_RADIUS = SUCCESS_DISTANCE  # the success circle drawn around the goal


def draw_topdown(graph: NavGraph, *, trajectory: Sequence[str] = (), reference: Sequence[str] = (),
                 current: str | None = None, heading: float | None = None, start: str | None = None,
                 goal: str | None = None, size: int = 512, margin: int = 24,
                 title: str | None = None) -> np.ndarray:
    """Draw ``graph`` from above and return an ``(size, size, 3)`` uint8 RGB image.

    Args:
        graph: the scan's :class:`~vln_clip.graph.NavGraph`.
        trajectory: viewpoint ids the agent visited, in order (drawn red).
        reference: the reference (instruction) path (drawn green).
        current: where the agent is; defaults to the last trajectory entry.
        heading: agent heading in radians (MatterSim: clockwise from +y), drawn as a tick.
        start: start viewpoint; defaults to ``reference[0]`` or ``trajectory[0]``.
        goal: goal viewpoint; defaults to ``reference[-1]`` when the reference has 2+ entries.
        size: image side in pixels; margin: border in pixels; title: text at the top left.

    Unknown viewpoint ids raise :class:`~vln_clip.errors.DataError` (via ``graph.idx``).
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    if len(graph) == 0:
        return np.asarray(img, dtype=np.uint8).copy()
    traj = [graph.idx(v, "draw_topdown trajectory") for v in trajectory]
    ref = [graph.idx(v, "draw_topdown reference") for v in reference]
    cur = graph.idx(current, "draw_topdown current") if current else (traj[-1] if traj else None)
    st = graph.idx(start, "draw_topdown start") if start else (ref[0] if ref else (traj[0] if traj else None))
    gl = graph.idx(goal, "draw_topdown goal") if goal else (ref[-1] if len(ref) > 1 else None)

    pos = np.asarray(graph.positions, dtype=np.float64)
    pixels, scale = topdown_pixels(graph, size, margin)

    def px(i: int) -> tuple[float, float]:
        return (float(pixels[i, 0]), float(pixels[i, 1]))

    z_ref = pos[cur, 2] if cur is not None else (pos[st, 2] if st is not None else None)
    far = np.zeros(len(graph), dtype=bool) if z_ref is None else np.abs(pos[:, 2] - z_ref) > FLOOR_GAP
    r_node = max(2, size // 170)
    rows, cols = np.nonzero(np.triu(graph.adjacency, 1))
    for near_pass in (False, True):  # other floors first, underneath
        for a, b in zip(rows, cols):
            if (not far[a] and not far[b]) == near_pass:
                draw.line([px(a), px(b)], fill=EDGE if near_pass else OTHER_FLOOR, width=1)
        for i in range(len(graph)):
            if (not far[i]) == near_pass:
                x, y = px(i)
                draw.ellipse([x - r_node, y - r_node, x + r_node, y + r_node],
                             fill=NODE if near_pass else OTHER_FLOOR)
    if gl is not None:
        x, y = px(gl)
        r = SUCCESS_RADIUS * scale
        draw.ellipse([x - r, y - r, x + r, y + r], outline=GOAL, width=1)
    w_path = max(2, size // 128)
    for path, colour in ((ref, REFERENCE), (traj, AGENT_PATH)):
        if len(path) > 1:
            draw.line([px(i) for i in path], fill=colour, width=w_path)
        for i in path:
            x, y = px(i)
            draw.ellipse([x - r_node - 1, y - r_node - 1, x + r_node + 1, y + r_node + 1], fill=colour)
    r_mark = max(4, size // 64)
    for idx, colour in ((st, START), (gl, GOAL)):
        if idx is not None:
            x, y = px(idx)
            draw.rectangle([x - r_mark, y - r_mark, x + r_mark, y + r_mark], fill=colour)
    if cur is not None:
        x, y = px(cur)
        r = r_mark - 1
        draw.ellipse([x - r, y - r, x + r, y + r], fill=CURRENT)
        if heading is not None:
            length = 3 * r_mark
            draw.line([(x, y), (x + length * math.sin(heading), y - length * math.cos(heading))],
                      fill=CURRENT, width=max(2, size // 200))
    if title:
        draw.text((4, 4), title, fill=TEXT)
    return np.asarray(img, dtype=np.uint8).copy()


def topdown_pixels(graph: NavGraph, size: int = 512, margin: int = 24) -> tuple[np.ndarray, float]:
    """Where :func:`draw_topdown` puts each viewpoint: ``(N, 2)`` float (column, row) and px/metre.

    The map is centred on the graph's x/y bounding box grown by the success radius (so the
    goal's circle is never cut at the edge), x to the right and y up, scaled so the larger side
    fills ``size - 2 * margin`` pixels. Tools and tests use it to find a viewpoint (or a path
    segment) in the picture.
    """
    pos = np.asarray(graph.positions, dtype=np.float64)
    if len(pos) == 0:
        return np.zeros((0, 2)), 1.0
    lo, hi = pos[:, :2].min(0) - SUCCESS_RADIUS, pos[:, :2].max(0) + SUCCESS_RADIUS
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-6))
    scale = (size - 2 * margin) / span
    centre = (lo + hi) / 2.0
    cols = size / 2 + (pos[:, 0] - centre[0]) * scale
    rows = size / 2 - (pos[:, 1] - centre[1]) * scale
    return np.stack([cols, rows], axis=1), scale

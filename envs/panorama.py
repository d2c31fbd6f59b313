"""EnvDrop's panoramic action space, precomputed per scan as lookup tables.

EnvDrop builds the candidates of a viewpoint by sweeping MatterSim over the 36 discretized
views (view 0 = heading 0, elevation -30 degrees; turn right 30 degrees per view; look up
every 12 views) at 640x480 / VFOV 60 (a linear HFOV of 80 degrees). Every neighbour visible
in a view is scored by its angular distance ``sqrt(rel_heading^2 + rel_elevation^2)`` in that
view and is attached to the view where that distance is smallest (first seen wins ties).
Candidates keep the order in which the sweep first met them (a Python dict's insertion
order): by first visible view, then by angular distance inside that view.

The result depends only on the graph, so this module computes it once per scan for every
viewpoint at once (numpy over ``[viewpoints, neighbours, 36 views]``) with the exact float
conventions of :func:`vln_clip.envs.simulator.navigable_neighbours` (float32 positions, the
same HFOV test), and caches it in memory. Stepping an environment is then table lookups.

Per candidate the tables hold the neighbour, its view (EnvDrop's ``pointId``), its absolute
direction as EnvDrop computes it (``view heading + rel_heading`` and ``view elevation +
rel_elevation``) and its index in MatterSim's ``navigableLocations`` when the camera looks
at that view (EnvDrop's ``idx``, what a script passes to ``makeAction``).

The candidate feature relative to an agent looking at view ``a`` is
``[visual[view], angle_feature(heading - (a % 12) * 30deg, elevation)]``; STOP is a zero
vector (see :mod:`vln_clip.envs.nav_env` for where STOP sits).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from vln_clip.geometry import (HEADING_COUNT, HEADING_INCREMENT, NUM_VIEWS, VIEW_ELEVATIONS,
                               VIEW_HEADINGS, angle_feature)
from vln_clip.graph import NavGraph

#: EnvDrop renders 640x480 at VFOV 60 degrees; MatterSim's horizontal FOV is VFOV * W / H.
ENVDROP_WIDTH, ENVDROP_HEIGHT, ENVDROP_VFOV = 640, 480, math.radians(60)
ENVDROP_HFOV = ENVDROP_VFOV * ENVDROP_WIDTH / ENVDROP_HEIGHT

#: heading / elevation of each of the 36 views (the one definition lives in vln_clip.geometry)
SWEEP_HEADINGS = VIEW_HEADINGS
SWEEP_ELEVATIONS = VIEW_ELEVATIONS


def agent_heading(view: np.ndarray | int) -> np.ndarray | float:
    """The heading (radians) of an agent whose camera looks at ``view`` (EnvDrop's base heading)."""
    return (np.asarray(view) % HEADING_COUNT) * HEADING_INCREMENT


def view_angle_table() -> np.ndarray:
    """``[36 agent views, 36 views, 128]`` float32: EnvDrop's per-view angle features.

    Row ``a`` is what EnvDrop concatenates to the panorama of an agent looking at view ``a``:
    ``angle_feature(view heading - agent heading, view elevation)`` for every view.
    """
    base = SWEEP_HEADINGS[:, None]
    return angle_feature(SWEEP_HEADINGS[None, :] - base,
                         np.broadcast_to(SWEEP_ELEVATIONS[None, :], (NUM_VIEWS, NUM_VIEWS)))


@dataclass(frozen=True)
class ScanPanorama:
    """Candidate tables of one scan; row ``i`` is viewpoint ``graph.viewpoints[i]``.

    Columns beyond ``num_candidates[i]`` are padding (``neighbour == -1``).
    """

    scan: str
    num_candidates: np.ndarray  # (N,) int64
    neighbour: np.ndarray  # (N, M) int64, graph index of the candidate viewpoint, -1 = padding
    view: np.ndarray  # (N, M) int64, view (0..35) the candidate is attached to (EnvDrop pointId)
    heading: np.ndarray  # (N, M) float64, absolute heading of the candidate (view heading + rel heading)
    elevation: np.ndarray  # (N, M) float64, absolute elevation (view elevation + rel elevation)
    nav_index: np.ndarray  # (N, M) int64, index in navigableLocations when looking at `view`

    @property
    def max_candidates(self) -> int:
        """Largest number of real candidates at any viewpoint of the scan."""
        return int(self.num_candidates.max()) if len(self.num_candidates) else 0

    def candidates(self, ix: int) -> np.ndarray:
        """Graph indices of viewpoint ``ix``'s candidates, in candidate order."""
        return self.neighbour[ix, : self.num_candidates[ix]]

    def candidate_index(self, ix: int, target: int) -> int:
        """Position of neighbour ``target`` among ``ix``'s candidates, -1 when it is not one."""
        hits = np.flatnonzero(self.candidates(ix) == target)
        return int(hits[0]) if len(hits) else -1

    def angle_features(self, ix: int, agent_view: int) -> np.ndarray:
        """``[n, 128]`` angle features of ``ix``'s candidates for an agent looking at ``agent_view``."""
        n = int(self.num_candidates[ix])
        return angle_feature(self.heading[ix, :n] - agent_heading(agent_view), self.elevation[ix, :n])

    def candidate_features(self, ix: int, agent_view: int, visual: np.ndarray | None) -> np.ndarray:
        """``[n, D + 128]`` EnvDrop candidate features (``visual`` is the ``[36, D]`` panorama or None)."""
        n = int(self.num_candidates[ix])
        ang = self.angle_features(ix, agent_view)
        if visual is None or visual.shape[-1] == 0:
            return ang
        return np.concatenate([visual[self.view[ix, :n]].astype(np.float32), ang], axis=1)


_CACHE: dict[int, tuple["weakref.ref[NavGraph]", ScanPanorama]] = {}


def scan_panorama(graph: NavGraph, hfov: float = ENVDROP_HFOV) -> ScanPanorama:
    """The candidate tables of ``graph`` (computed once per graph object and kept in memory)."""
    key = id(graph)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is graph and hfov == ENVDROP_HFOV:
        return hit[1]
    pano = compute_scan_panorama(graph, hfov)
    if hfov == ENVDROP_HFOV:
        _CACHE[key] = (weakref.ref(graph, lambda _r, k=key: _CACHE.pop(k, None)), pano)
    return pano


def compute_scan_panorama(graph: NavGraph, hfov: float = ENVDROP_HFOV) -> ScanPanorama:
    """Vectorized EnvDrop sweep over every viewpoint of ``graph`` (see the module docstring)."""
    n = len(graph)
    adj = np.asarray(graph.adjacency, dtype=bool)
    deg = adj.sum(1) if n else np.zeros(0, dtype=np.int64)
    m = int(deg.max()) if n else 0
    empty_i = np.full((n, m), -1, dtype=np.int64)
    if m == 0:
        z = np.zeros((n, 0))
        return ScanPanorama(graph.scan, np.zeros(n, np.int64), empty_i, empty_i.copy(), z, z.copy(), empty_i.copy())
    # neighbours of each viewpoint in ascending index order (np.flatnonzero order), padded
    rows, cols = np.nonzero(adj)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
    nbr = np.full((n, m), -1, dtype=np.int64)
    nbr[rows, slot] = cols
    valid = nbr >= 0

    pos = graph.positions.astype(np.float32)
    target = pos[np.where(valid, nbr, 0)] - pos[:, None, :]  # (N, M, 3) float32
    horiz = target[..., :2]
    horiz_len = np.linalg.norm(horiz, axis=-1).astype(np.float32)
    abs_elev = np.arctan2(target[..., 2].astype(np.float64), horiz_len.astype(np.float64))  # (N, M)
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = horiz / horiz_len[..., None]

    # the camera's horizontal direction for the 12 headings, float32 as in the simulator
    cams = np.array([[math.cos(math.pi / 2 - h), math.sin(math.pi / 2 - h)]
                     for h in SWEEP_HEADINGS[:HEADING_COUNT]], dtype=np.float32)  # (12, 2)
    cos_angle = (normed[:, :, None, :] * cams[None, None, :, :]).sum(-1)  # (N, M, 12) float32
    if hfov < 2 * math.pi:
        vis12 = cos_angle >= math.cos(hfov / 2.0)
    else:
        vis12 = np.ones(cos_angle.shape, dtype=bool)
    hx = horiz[..., 0].astype(np.float64)[..., None]
    hy = horiz[..., 1].astype(np.float64)[..., None]
    cross = hx * cams[:, 1].astype(np.float64) - hy * cams[:, 0].astype(np.float64)
    dot = hx * cams[:, 0].astype(np.float64) + hy * cams[:, 1].astype(np.float64)
    rel_h12 = np.arctan2(cross, dot)  # (N, M, 12)

    rel_h = np.tile(rel_h12, (1, 1, 3))  # (N, M, 36): elevation never changes the heading part
    visible = np.tile(vis12, (1, 1, 3)) & valid[..., None]
    rel_e = abs_elev[..., None] - SWEEP_ELEVATIONS[None, None, :]
    dist = np.sqrt(rel_h**2 + rel_e**2)  # (N, M, 36)

    masked = np.where(visible, dist, np.inf)
    best = np.argmin(masked, axis=-1)  # first view with the smallest distance
    seen = visible.any(-1)
    first = np.where(seen, np.argmax(visible, axis=-1), NUM_VIEWS)
    first_dist = np.take_along_axis(dist, np.minimum(first, NUM_VIEWS - 1)[..., None], -1)[..., 0]
    first_dist = np.where(seen, first_dist, np.inf)

    # navigableLocations index at the best view: 1 + visible neighbours sorted before it there
    best_dist = np.take_along_axis(dist, best[..., None], -1)[..., 0]  # (N, M)
    vis_at_best = np.take_along_axis(visible[:, None, :, :], best[:, :, None, None].repeat(m, 2), -1)[..., 0]
    d_at_best = np.take_along_axis(dist[:, None, :, :], best[:, :, None, None].repeat(m, 2), -1)[..., 0]
    # vis_at_best[i, a, b]: neighbour b visible in candidate a's best view; d_at_best its distance there
    order_j = np.arange(m)
    before = (d_at_best < best_dist[..., None]) | ((d_at_best == best_dist[..., None])
                                                  & (order_j[None, None, :] < order_j[None, :, None]))
    nav_idx = 1 + (before & vis_at_best).sum(-1)

    # candidate order: first visible view, then distance there, then neighbour order (stable sort)
    key_first = np.where(seen, first, NUM_VIEWS + 1).astype(np.float64)
    order = np.lexsort((np.broadcast_to(order_j, (n, m)), first_dist, key_first), axis=-1)
    take = lambda a: np.take_along_axis(a, order, -1)  # noqa: E731
    seen_o = take(seen)
    num = seen_o.sum(1).astype(np.int64)
    best_o = take(best)
    rel_h_best = np.take_along_axis(rel_h, best[..., None], -1)[..., 0]
    rel_e_best = np.take_along_axis(rel_e, best[..., None], -1)[..., 0]
    heading = SWEEP_HEADINGS[best] + rel_h_best
    elevation = SWEEP_ELEVATIONS[best] + rel_e_best
    pad = ~seen_o
    return ScanPanorama(
        scan=graph.scan,
        num_candidates=num,
        neighbour=np.where(pad, -1, take(nbr)),
        view=np.where(pad, -1, best_o),
        heading=np.where(pad, 0.0, take(heading)),
        elevation=np.where(pad, 0.0, take(elevation)),
        nav_index=np.where(pad, -1, take(nav_idx)),
    )


"""EnvDrop's panoramic action space, precomputed per scan as lookup tables.

EnvDrop builds the candidates of a viewpoint by sweeping MatterSim over the 36 discretized
views (view 0 = heading 0, elevation -30 degrees; turn right 30 degrees per view; look up
every 12 views) at 640x480 / VFOV 60 (a linear HFOV of 80 degrees). Every neighbour visible
in a view is scored by its angular distance ``sqrt(rel_heading^2 + rel_elevation^2)`` in that
view and is attached to the view where that distance is smallest (first seen wins ties).
Candidates keep the order in which the sweep first met them (a Python dict's insertion
order): by first visible view, then by angular distance inside that view.

The result depends only on the graph, so this module computes it once per scan for every
viewpoint at once (numpy over ``[viewpoints, neighbours, 36 views]``) with the geometry the
simulator's navigable locations use (:func:`vln_clip.geometry.neighbour_directions`: float32
positions, the same HFOV test), and caches it in memory. Stepping an environment is then table
lookups. These tables are the one home of EnvDrop's candidates: the environments, the batched
tables, the teacher and the rollout display read them rather than deriving directions again.

Per candidate the tables hold the neighbour, its view (EnvDrop's ``pointId``), its absolute
direction as EnvDrop computes it (``view heading + rel_heading`` and ``view elevation +
rel_elevation``), its distance, and its index in MatterSim's ``navigableLocations`` when the
camera looks at that view (EnvDrop's ``idx``, what a script passes to ``makeAction``).

The candidate feature relative to an agent looking at view ``a`` is
``[visual[view], angle_feature(heading - (a % 12) * 30deg, elevation)]``
(:func:`candidate_angle_features`); STOP is a zero vector (see :mod:`vln_clip.envs.nav_env`
for where STOP sits).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from vln_clip.geometry import (ANGLE_FEATURE_SIZE, ELEVATION_LEVELS, HEADING_COUNT, NUM_VIEWS, VIEW_ELEVATIONS,
                               VIEW_HEADINGS, VIEW_HFOV, angle_feature, angular_distance, neighbour_directions,
                               view_heading, wrap_angles)
from vln_clip.graph import NavGraph

#: heading / elevation of each of the 36 views (the one definition lives in vln_clip.geometry)
SWEEP_HEADINGS = VIEW_HEADINGS
SWEEP_ELEVATIONS = VIEW_ELEVATIONS


def candidate_angle_features(heading: np.ndarray | float, elevation: np.ndarray | float,
                             agent_view: np.ndarray | int, size: int = ANGLE_FEATURE_SIZE) -> np.ndarray:
    """EnvDrop's angle feature of directions (absolute ``heading``, ``elevation``) for an agent
    looking at view ``agent_view``.

    The heading is taken relative to the agent's (``view_heading(agent_view)``) as the plain
    difference, not wrapped: the feature is periodic, and EnvDrop feeds it unwrapped. The
    elevation stays absolute. NavEnv, the batched environment and the per-view panorama angles
    all call this, so their features agree to the bit.
    """
    return angle_feature(heading - view_heading(agent_view), elevation, size)


def view_angle_table() -> np.ndarray:
    """``[36 agent views, 36 views, 128]`` float32: EnvDrop's per-view angle features.

    Row ``a`` is what EnvDrop concatenates to the panorama of an agent looking at view ``a``:
    ``angle_feature(view heading - agent heading, view elevation)`` for every view.
    """
    return candidate_angle_features(SWEEP_HEADINGS[None, :],
                                    np.broadcast_to(SWEEP_ELEVATIONS[None, :], (NUM_VIEWS, NUM_VIEWS)),
                                    np.arange(NUM_VIEWS)[:, None])


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
    distance: np.ndarray  # (N, M) float64, 3-D distance to the candidate (MatterSim's rel_distance)

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
        return candidate_angle_features(self.heading[ix, :n], self.elevation[ix, :n], agent_view)

    def relative_headings(self, ix: int, agent_view: int) -> np.ndarray:
        """``[n]`` headings of ``ix``'s candidates relative to an agent looking at ``agent_view``,
        wrapped to (-pi, pi] (positive to the right): the direction a person reads."""
        n = int(self.num_candidates[ix])
        return wrap_angles(self.heading[ix, :n] - view_heading(agent_view))

    def candidate_features(self, ix: int, agent_view: int, visual: np.ndarray | None) -> np.ndarray:
        """``[n, D + 128]`` EnvDrop candidate features (``visual`` is the ``[36, D]`` panorama or None)."""
        n = int(self.num_candidates[ix])
        ang = self.angle_features(ix, agent_view)
        if visual is None or visual.shape[-1] == 0:
            return ang
        return np.concatenate([visual[self.view[ix, :n]].astype(np.float32), ang], axis=1)


_CACHE: dict[int, tuple["weakref.ref[NavGraph]", ScanPanorama]] = {}


def scan_panorama(graph: NavGraph, hfov: float = VIEW_HFOV) -> ScanPanorama:
    """The candidate tables of ``graph`` (computed once per graph object and kept in memory)."""
    key = id(graph)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is graph and hfov == VIEW_HFOV:
        return hit[1]
    pano = compute_scan_panorama(graph, hfov)
    if hfov == VIEW_HFOV:
        _CACHE[key] = (weakref.ref(graph, lambda _r, k=key: _CACHE.pop(k, None)), pano)
    return pano


def compute_scan_panorama(graph: NavGraph, hfov: float = VIEW_HFOV) -> ScanPanorama:
    """Vectorized EnvDrop sweep over every viewpoint of ``graph`` (see the module docstring)."""
    n = len(graph)
    adj = np.asarray(graph.adjacency, dtype=bool)
    deg = adj.sum(1) if n else np.zeros(0, dtype=np.int64)
    m = int(deg.max()) if n else 0
    empty_i = np.full((n, m), -1, dtype=np.int64)
    if m == 0:
        z = np.zeros((n, 0))
        return ScanPanorama(graph.scan, np.zeros(n, np.int64), empty_i, empty_i.copy(), z, z.copy(), empty_i.copy(),
                            z.copy())
    # neighbours of each viewpoint in ascending index order (np.flatnonzero order), padded
    rows, cols = np.nonzero(adj)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
    nbr = np.full((n, m), -1, dtype=np.int64)
    nbr[rows, slot] = cols
    valid = nbr >= 0

    # MatterSim's geometry for the camera at each of the 12 headings (one home: vln_clip.geometry)
    dirs = neighbour_directions(graph.positions, np.arange(n)[:, None], np.where(valid, nbr, 0),
                                SWEEP_HEADINGS[:HEADING_COUNT], hfov)
    rel_h = np.tile(dirs.rel_heading, (1, 1, ELEVATION_LEVELS))  # (N, M, 36): elevation never changes the heading
    visible = np.tile(dirs.visible, (1, 1, ELEVATION_LEVELS)) & valid[..., None]
    rel_e = dirs.rel_elevation(SWEEP_ELEVATIONS)  # (N, M, 36)
    dist = angular_distance(rel_h, rel_e)  # (N, M, 36)

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
        distance=np.where(pad, 0.0, take(dirs.distance)),
    )


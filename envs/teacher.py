"""Teachers: the panoramic one (a candidate index) and R2R's low-level "shortest agent".

* :func:`teacher_table` / :func:`panoramic_teacher`: the candidate that follows the shortest
  path to the goal, i.e. the index of ``graph.next_step(current, goal)`` among the current
  viewpoint's EnvDrop candidates, and STOP (= the number of candidates, see
  :mod:`vln_clip.envs.nav_env`) at the goal. Precomputed per scan as an ``[N, N]`` table so the
  environments and the batched training path look it up instead of searching.
* :class:`ShortestAgent`: the R2R baseline teacher in MatterSim action style
  (``(index, heading_delta, elevation_delta)``) for scripts that drive the raw
  :class:`~vln_clip.envs.simulator.Simulator` (or MatterSim itself) one action at a time.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vln_clip.geometry import ELEVATION_INCREMENT, ELEVATION_LEVELS, HEADING_INCREMENT, view_level, world_heading
from vln_clip.graph import UNREACHABLE, NavGraph

from .panorama import ScanPanorama, scan_panorama

# MatterSim-style low-level actions (navigable index, heading delta, elevation delta)
LEFT = (0, -1, 0)
RIGHT = (0, 1, 0)
UP = (0, 0, 1)
DOWN = (0, 0, -1)
STOP_ACTION = (0, 0, 0)


def teacher_table(graph: NavGraph, pano: ScanPanorama | None = None) -> np.ndarray:
    """``[N, N]`` int64: teacher candidate index at viewpoint ``i`` for goal ``j``.

    Entry ``(i, j)`` is the slot of ``graph.next_hop[i, j]`` among ``i``'s candidates and
    ``num_candidates[i]`` (STOP) when ``i == j``. Should the next hop ever not be a candidate
    (a neighbour straight above, invisible to MatterSim's horizontal FOV test), the candidate
    with the smallest ``edge + remaining distance`` is used; when the goal is unreachable the
    entry is STOP.
    """
    pano = pano if pano is not None else scan_panorama(graph)
    n = len(graph)
    num = pano.num_candidates
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    nb = pano.neighbour
    valid = nb >= 0
    table = np.repeat(num[:, None], n, axis=1).astype(np.int64)
    if nb.shape[1] == 0:
        return table
    nh = np.asarray(graph.next_hop)
    match = (nb[:, :, None] == nh[:, None, :]) & valid[..., None]  # (N, M, N)
    has = match.any(1)
    slot = match.argmax(1)
    safe = np.where(valid, nb, 0)
    weights = graph.edge_weights[np.arange(n)[:, None], safe]  # (N, M)
    cost = weights[..., None] + np.asarray(graph.distances)[safe]  # (N, M, N)
    cost = np.where(valid[..., None], cost, np.inf)
    alt = cost.argmin(1)
    alt_ok = np.isfinite(cost.min(1)) & (nh != UNREACHABLE)
    table = np.where(has, slot, np.where(alt_ok, alt, table))
    np.fill_diagonal(table, num)
    return table.astype(np.int64)


def panoramic_teacher(graph: NavGraph, current: str, goal: str | None) -> int:
    """Candidate index that follows the shortest path from ``current`` to ``goal``.

    STOP (= the number of candidates at ``current``) at the goal; -1 without a goal (test splits).
    """
    if goal is None:
        return -1
    pano = scan_panorama(graph)
    i, j = graph.idx(current, "teacher"), graph.idx(goal, "teacher goal")
    if i == j:
        return int(pano.num_candidates[i])
    k = pano.candidate_index(i, int(graph.next_hop[i, j]))
    if k >= 0:
        return k
    return int(teacher_table(graph, pano)[i, j])


class ShortestAgent:
    """R2R's shortest-path teacher for a MatterSim-style simulator, one batch item per call.

    Each call to :meth:`act` looks at the simulator state and returns one low-level action
    ``(navigable index, heading delta, elevation delta)``:

    * at the goal: STOP ``(0, 0, 0)``;
    * next hop (Dijkstra, recomputed every step) visible in ``navigableLocations``: turn right
      if its ``rel_heading`` is more than one turn (30 degrees) to the right, left if more than one
      to the left; else look up/down if ``|rel_elevation|`` exceeds one tilt (30 degrees) and
      the camera can still tilt that way; else move to it;
    * next hop not visible: level the camera first, then turn toward its world heading
      (:func:`vln_clip.geometry.world_heading`, R2R's ``pi/2 - atan2(dy, dx)``) the shorter way.
    """

    def __init__(self, graphs: "dict[str, NavGraph] | object") -> None:
        self.graphs = graphs

    def _graph(self, scan: str) -> NavGraph:
        return self.graphs[scan]  # type: ignore[index]

    def act(self, state: object, goal: str) -> tuple[int, int, int]:
        graph = self._graph(state.scanId)  # type: ignore[attr-defined]
        here = state.location.viewpointId  # type: ignore[attr-defined]
        if here == goal:
            return STOP_ACTION
        nxt = graph.next_step(here, goal)
        nav = state.navigableLocations  # type: ignore[attr-defined]
        level = view_level(state.viewIndex)  # type: ignore[attr-defined]
        top = ELEVATION_LEVELS - 1
        for k, loc in enumerate(nav[1:], 1):
            if loc.viewpointId != nxt:
                continue
            if loc.rel_heading > HEADING_INCREMENT:
                return RIGHT
            if loc.rel_heading < -HEADING_INCREMENT:
                return LEFT
            if loc.rel_elevation > ELEVATION_INCREMENT and level < top:
                return UP
            if loc.rel_elevation < -ELEVATION_INCREMENT and level > 0:
                return DOWN
            return (k, 0, 0)
        if level == 0:
            return UP
        if level == top:
            return DOWN
        loc = state.location  # type: ignore[attr-defined]
        tgt = graph.position(nxt)
        target_heading = world_heading(tgt[0] - loc.x, tgt[1] - loc.y)
        heading = state.heading  # type: ignore[attr-defined]
        if heading > target_heading and heading - target_heading < math.pi:
            return LEFT
        if target_heading > heading and target_heading - heading > math.pi:
            return LEFT
        return RIGHT

    def act_batch(self, states: Sequence[object], goals: Sequence[str]) -> list[tuple[int, int, int]]:
        return [self.act(s, g) for s, g in zip(states, goals)]


def run_shortest_agent(sim: object, scans: Sequence[str], starts: Sequence[str], headings: Sequence[float],
                       goals: Sequence[str], max_actions: int = 100) -> list[list[tuple[str, float, float]]]:
    """Drive ``sim`` (batch size ``len(scans)``) with :class:`ShortestAgent` until every item stops.

    Returns R2R trajectories: the start state plus the state after every non-stop action, as
    ``(viewpoint, heading, elevation)``. Items that stopped keep receiving no-op actions
    ``(0, 0, 0)`` (MatterSim's index 0 is the current viewpoint).
    """
    sim.newEpisode(list(scans), list(starts), list(headings), [0.0] * len(scans))  # type: ignore[attr-defined]
    agent = ShortestAgent(sim.graphs)  # type: ignore[attr-defined]
    trajs = [[(s.location.viewpointId, s.heading, s.elevation)] for s in sim.getState()]  # type: ignore[attr-defined]
    ended = [False] * len(scans)
    for _ in range(max_actions):
        acts = []
        for b, (state, goal) in enumerate(zip(sim.getState(), goals)):  # type: ignore[attr-defined]
            act = STOP_ACTION if ended[b] else agent.act(state, goal)
            if act == STOP_ACTION:
                ended[b] = True
            acts.append(act)
        if all(ended):
            break
        sim.makeAction([a[0] for a in acts], [a[1] for a in acts], [a[2] for a in acts])  # type: ignore[attr-defined]
        for b, state in enumerate(sim.getState()):  # type: ignore[attr-defined]
            if acts[b] != STOP_ACTION:
                trajs[b].append((state.location.viewpointId, state.heading, state.elevation))
    return trajs

"""Augmentation paths for back-translation, sampled with R2R's path statistics.

R2R paths are shortest paths of 4 to 6 edges whose start and goal are at least 5 m apart
(graph distance). :func:`sample_aug_paths` draws (start, goal) pairs with exactly those
properties inside the training scans (pairs already in the training file are left out, so
every augmented path is new), and writes them like EnvDrop's ``aug_paths.json``: a JSON list
of R2R-format entries ``{"distance", "scan", "path_id", "path", "heading", "instructions"}``.

``instructions`` is an empty list in the file: back-translation fills it at training time
with the speaker's greedy instruction for that path under the rollout's environmental
dropout mask (a new instruction whenever the path is drawn again, because the mask
changes). Read the file with :func:`read_aug_paths`; the strict R2R reader rejects entries
without instructions on purpose.

Hop counts come from the graph's next-hop table in a vectorized walk (no per-pair Python
path search), so a real Matterport scan (up to ~350 viewpoints) takes milliseconds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vln_clip.episodes import Episode, read_episodes
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore, NavGraph
from vln_clip.io import read_json, write_json

AUG_PATH_ID_OFFSET = 1_000_000


def hop_counts(graph: NavGraph, max_hops: int) -> np.ndarray:
    """``[N, N]`` number of edges on the shortest path (``max_hops + 1`` when longer/unreachable)."""
    n = len(graph)
    cur = np.tile(np.arange(n)[:, None], (1, n))
    goal = np.tile(np.arange(n)[None, :], (n, 1))
    hops = np.zeros((n, n), dtype=np.int32)
    nh = graph.next_hop
    for _ in range(max_hops + 1):
        active = (cur != goal) & (cur >= 0)
        if not active.any():
            break
        cur[active] = nh[cur[active], goal[active]]
        hops[active] += 1
    hops[(cur != goal)] = max_hops + 1
    return hops


def check_aug_options(per_scan: int, min_edges: int, max_edges: int, min_distance: float) -> None:
    """The sampling options make sense; raises :class:`DataError` naming the option and the fix.

    ``per_scan`` is a slice bound: a negative one would mean "all but the last N" pairs and
    write thousands of paths; an empty edge range or ``per_scan`` 0 would write an empty file
    that only fails later, in back-translation.
    """
    if per_scan < 1:
        raise DataError(f"--per-scan {per_scan}: must be a positive integer (paths sampled per scan)")
    if min_edges < 1:
        raise DataError(f"--min-edges {min_edges}: a path needs at least 1 edge")
    if max_edges < min_edges:
        raise DataError(f"--min-edges {min_edges} --max-edges {max_edges}: the range is empty; "
                        "give --max-edges >= --min-edges (R2R: 4 to 6)")
    if not min_distance >= 0.0:
        raise DataError(f"--min-distance {min_distance}: must be zero or more metres")


def sample_aug_paths(graphs: GraphStore, scans: Iterable[str], per_scan: int, seed: int = 0,
                     min_edges: int = 4, max_edges: int = 6, min_distance: float = 5.0,
                     exclude: Iterable[tuple[str, str, str]] = (),
                     path_id_offset: int = AUG_PATH_ID_OFFSET) -> list[dict[str, Any]]:
    """Up to ``per_scan`` new shortest paths per scan with R2R's statistics (see module doc)."""
    check_aug_options(per_scan, min_edges, max_edges, min_distance)
    rng = np.random.default_rng(seed)
    excluded = set(exclude)
    out: list[dict[str, Any]] = []
    for scan in sorted(set(scans)):
        g = graphs[scan]
        hops = hop_counts(g, max_edges)
        ok = (hops >= min_edges) & (hops <= max_edges) & (g.distances >= min_distance) & np.isfinite(g.distances)
        pairs = np.argwhere(ok)
        pairs = [(int(a), int(b)) for a, b in pairs
                 if (scan, g.viewpoints[a], g.viewpoints[b]) not in excluded]
        if not pairs:
            continue
        order = rng.permutation(len(pairs))[:per_scan]
        for k in sorted(order.tolist()):
            a, b = pairs[k]
            path = g.shortest_path(g.viewpoints[a], g.viewpoints[b])
            out.append({
                "distance": round(float(g.distances[a, b]), 4),
                "scan": scan,
                "path_id": path_id_offset + len(out),
                "path": path,
                "heading": round(float(rng.uniform(0.0, 2 * math.pi)), 4),
                "instructions": [],
            })
    return out


def write_aug_paths(connectivity: str | os.PathLike[str], scans_from: str | os.PathLike[str],
                    out: str | os.PathLike[str], per_scan: int = 500, seed: int = 0,
                    min_edges: int = 4, max_edges: int = 6, min_distance: float = 5.0) -> dict[str, Any]:
    """Sample paths in the scans of ``scans_from`` (an R2R JSON or RxR guide file) and write them."""
    check_aug_options(per_scan, min_edges, max_edges, min_distance)
    graphs = GraphStore(connectivity)
    episodes = read_episodes(scans_from)
    if not episodes:
        raise DataError(f"{scans_from}: no episodes, so no training scans to sample in")
    exclude = {(e.scan, e.path[0], e.path[-1]) for e in episodes}
    scans = sorted({e.scan for e in episodes})
    offset = AUG_PATH_ID_OFFSET
    numeric = [int(e.path_id) for e in episodes if str(e.path_id).isdigit()]
    if numeric:
        offset = max(offset, max(numeric) + 1)
    items = sample_aug_paths(graphs, scans, per_scan, seed, min_edges, max_edges, min_distance,
                             exclude, offset)
    write_json(out, items)
    edges = [len(i["path"]) - 1 for i in items]
    dists = [i["distance"] for i in items]
    return {"paths": len(items), "scans": len({i["scan"] for i in items}),
            "mean_edges": round(float(np.mean(edges)), 3) if edges else 0.0,
            "mean_distance": round(float(np.mean(dists)), 3) if dists else 0.0, "out": str(out)}


def read_aug_paths(path: str | os.PathLike[str]) -> list[Episode]:
    """Augmented paths as goal-carrying :class:`Episode` objects with an empty instruction."""
    path = Path(path)
    data = read_json(path, "augmented-path file")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of R2R-format paths (from `vln-clip data aug-paths`)")
    eps = []
    for n, item in enumerate(data):
        for key in ("path_id", "scan", "path", "heading"):
            if not isinstance(item, dict) or key not in item:
                raise DataError(f"{path}: entry {n} has no {key!r}; regenerate with `vln-clip data aug-paths`")
        if len(item["path"]) < 2:
            raise DataError(f"{path}: entry {n} (path_id {item['path_id']}) has fewer than 2 viewpoints")
        eps.append(Episode(instr_id=f"{item['path_id']}_0", path_id=str(item["path_id"]), scan=str(item["scan"]),
                           path=tuple(item["path"]), heading=float(item["heading"]),
                           instruction=(item.get("instructions") or [""])[0], dataset="aug"))
    return eps

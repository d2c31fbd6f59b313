"""Matterport navigation graphs: loading, validation and cached all-pairs tables.

A scan's ``<scan>_connectivity.json`` lists every panorama with its 4x4 row-major pose
(position at pose[3], pose[7], pose[11]), an ``included`` flag and an ``unobstructed``
row. The navigation graph keeps included viewpoints only, with an undirected edge where
the pair is unobstructed and both ends are included, weighted by 3-D Euclidean distance.

Every metric, the teacher and the environments ask the same two questions (how far,
which way next), so the all-pairs distance and next-hop tables are computed once per scan
with scipy's Dijkstra and cached to disk keyed by the file's content hash.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import DataError, StorageError
from .io import atomic_path, read_json
from .paths import cache_dir

CACHE_VERSION = 1
UNREACHABLE = -1


@dataclass
class NavGraph:
    """One scan's navigation graph with dense shortest-path tables.

    ``distances[i, j]`` is the shortest-path length in metres (inf when unreachable);
    ``next_hop[i, j]`` is the neighbour of ``i`` on that path (``j`` itself when i == j,
    -1 when unreachable). Tables are indexed by ``index[viewpoint_id]``.
    """

    scan: str
    viewpoints: list[str]
    positions: np.ndarray  # (N, 3) float64, metres, z up
    heights: np.ndarray  # (N,) camera height above the floor
    adjacency: np.ndarray  # (N, N) bool, symmetric
    distances: np.ndarray  # (N, N) float64
    next_hop: np.ndarray  # (N, N) int32
    source: str = ""
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {vp: i for i, vp in enumerate(self.viewpoints)}

    # -- size -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.viewpoints)

    def __contains__(self, viewpoint: object) -> bool:
        return viewpoint in self.index

    @property
    def num_edges(self) -> int:
        return int(np.triu(self.adjacency, 1).sum())

    @property
    def edge_weights(self) -> np.ndarray:
        """(N, N) Euclidean distances (dense; only meaningful where ``adjacency``)."""
        diff = self.positions[:, None, :] - self.positions[None, :, :]
        return np.sqrt((diff**2).sum(-1))

    # -- lookups ----------------------------------------------------------------------
    def idx(self, viewpoint: str, context: str = "") -> int:
        """Index of a viewpoint, or an error naming the scan and what asked."""
        try:
            return self.index[viewpoint]
        except KeyError:
            where = f" ({context})" if context else ""
            raise DataError(
                f"viewpoint {viewpoint!r}{where} is not an included viewpoint of scan {self.scan} "
                f"({self.source or 'connectivity graph'}); check the scan id and the connectivity files"
            ) from None

    def position(self, viewpoint: str) -> np.ndarray:
        return self.positions[self.idx(viewpoint)]

    def neighbors(self, viewpoint: str) -> list[str]:
        row = self.adjacency[self.idx(viewpoint)]
        return [self.viewpoints[j] for j in np.flatnonzero(row)]

    def has_edge(self, a: str, b: str) -> bool:
        return bool(self.adjacency[self.idx(a), self.idx(b)])

    def distance(self, a: str, b: str) -> float:
        return float(self.distances[self.idx(a), self.idx(b)])

    def next_step(self, current: str, goal: str) -> str:
        """The neighbour of ``current`` on the shortest path to ``goal`` (``goal`` when there)."""
        j = int(self.next_hop[self.idx(current), self.idx(goal)])
        if j == UNREACHABLE:
            raise DataError(f"scan {self.scan}: {goal} is not reachable from {current}")
        return self.viewpoints[j]

    def shortest_path(self, a: str, b: str) -> list[str]:
        """Viewpoints of the shortest path from ``a`` to ``b``, both ends included."""
        i, j = self.idx(a), self.idx(b)
        if self.next_hop[i, j] == UNREACHABLE:
            raise DataError(f"scan {self.scan}: {b} is not reachable from {a}")
        path = [i]
        while path[-1] != j:
            path.append(int(self.next_hop[path[-1], j]))
        return [self.viewpoints[k] for k in path]

    def path_length(self, path: Iterable[str]) -> float:
        """Sum of shortest-path distances between consecutive entries (repeats add 0)."""
        ids = [self.idx(v) for v in path]
        if len(ids) < 2:
            return 0.0
        return float(self.distances[ids[:-1], ids[1:]].sum())

    def check_path(self, path: list[str], context: str) -> None:
        """Raise when a step of ``path`` is not an edge of the graph (repeats allowed)."""
        for a, b in zip(path, path[1:]):
            if a != b and not self.has_edge(a, b):
                raise DataError(
                    f"{context}: step {a} -> {b} is not an edge of scan {self.scan}; "
                    f"paths must move between adjacent (unobstructed, included) viewpoints"
                )


# ----------------------------------------------------------------------------------------
# Loading


def read_connectivity(path: str | os.PathLike[str]) -> list[dict]:
    """The entries of one ``<scan>_connectivity.json``, every one checked (the only parser of the format).

    Each entry needs ``image_id``, a 16-number ``pose`` (4x4 row-major), ``included`` and an
    ``unobstructed`` row with one flag per entry; a problem names the file, the entry and the fix.
    The graph (:func:`load_graph`) keeps the included viewpoints; the panorama rotations of the
    feature renderer (:func:`vln_clip.features.views.read_pano_rotations`) need every entry.
    """
    path = Path(path)
    data = read_json(path, "connectivity graph")
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON list of viewpoints")
    n = len(data)
    for k, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"{path}: entry {k} is not an object; re-download the connectivity file")
        for key in ("image_id", "pose", "included", "unobstructed"):
            if key not in item:
                raise DataError(f"{path}: entry {k} has no {key!r} field; each viewpoint needs "
                                "image_id, pose, included, unobstructed (Matterport format)")
        pose = item["pose"]
        if not isinstance(pose, list) or len(pose) != 16:
            raise DataError(f"{path}: entry {k} ({item['image_id']}): pose must have 16 numbers "
                            f"(4x4 row-major), got {len(pose) if isinstance(pose, list) else pose!r}")
        if len(item["unobstructed"]) != n:
            raise DataError(f"{path}: entry {k} ({item['image_id']}): 'unobstructed' has "
                            f"{len(item['unobstructed'])} entries, expected {n} (one per viewpoint)")
    return data


def pose_rotation(pose: list[float]) -> np.ndarray:
    """The 3x3 camera rotation of a connectivity ``pose`` (4x4 row-major; the position is column 3)."""
    return np.asarray(pose, dtype=np.float64).reshape(4, 4)[:3, :3].copy()


def _parse_connectivity(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    data = read_connectivity(path)
    n = len(data)
    ids: list[str] = []
    pos = np.zeros((n, 3))
    heights = np.zeros(n)
    included = np.zeros(n, dtype=bool)
    unob = np.zeros((n, n), dtype=bool)
    for k, item in enumerate(data):
        pose = item["pose"]
        ids.append(str(item["image_id"]))
        pos[k] = (pose[3], pose[7], pose[11])
        heights[k] = float(item.get("height", 1.5))
        included[k] = bool(item["included"])
        unob[k] = np.asarray(item["unobstructed"], dtype=bool)
    keep = np.flatnonzero(included)
    adj = unob[np.ix_(keep, keep)]
    np.fill_diagonal(adj, False)
    one_way = np.argwhere(adj & ~adj.T)
    if len(one_way):  # an undirected graph would let an agent walk back along a one-way edge
        a, b = (ids[keep[k]] for k in one_way[0])
        raise DataError(f"{path}: 'unobstructed' is not symmetric among included viewpoints: {a} -> {b} is "
                        f"unobstructed but {b} -> {a} is not ({len(one_way)} such pair(s)); Matterport "
                        "graphs are undirected: set both entries to the same value")
    return [ids[k] for k in keep], pos[keep], heights[keep], adj


def _all_pairs(positions: np.ndarray, adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    n = len(positions)
    if n == 0:
        return np.zeros((0, 0)), np.zeros((0, 0), dtype=np.int32)
    diff = positions[:, None, :] - positions[None, :, :]
    weights = np.sqrt((diff**2).sum(-1)) * adjacency
    dist, pred = shortest_path(csr_matrix(weights), method="D", directed=False, return_predecessors=True)
    # pred[g, i] is i's predecessor on the path from g, i.e. i's next hop toward g.
    nxt = pred.T.astype(np.int32)
    nxt[nxt < 0] = UNREACHABLE
    np.fill_diagonal(nxt, np.arange(n, dtype=np.int32))
    return dist, nxt


def load_graph(path: str | os.PathLike[str], use_cache: bool = True) -> NavGraph:
    """Load one ``<scan>_connectivity.json`` with its tables (from the disk cache when valid)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: connectivity file not found")
    scan = path.name.replace("_connectivity.json", "")
    raw = path.read_bytes()
    digest = hashlib.sha1(raw).hexdigest()[:16]
    cached = cache_dir() / "graphs" / f"{scan}-{digest}-v{CACHE_VERSION}.npz"
    if use_cache and cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as z:
                return NavGraph(scan, [str(v) for v in z["viewpoints"]], z["positions"], z["heights"],
                                z["adjacency"], z["distances"], z["next_hop"], source=str(path))
        except Exception:  # a corrupt cache is rebuilt, never trusted
            pass
    ids, pos, heights, adj = _parse_connectivity(path)
    dist, nxt = _all_pairs(pos, adj)
    graph = NavGraph(scan, ids, pos, heights, adj, dist, nxt, source=str(path))
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, viewpoints=np.array(ids), positions=pos, heights=heights,
                             adjacency=adj, distances=dist, next_hop=nxt)
        except (OSError, StorageError):  # a cache that cannot be written (full disk) is only slower
            pass
    return graph


class GraphStore:
    """Lazily loaded graphs of a connectivity directory, one load per scan per process."""

    def __init__(self, connectivity_dir: str | os.PathLike[str], use_cache: bool = True) -> None:
        self.root = Path(connectivity_dir)
        if not self.root.is_dir():
            raise DataError(
                f"{self.root}: connectivity directory not found; pass the folder holding "
                "<scan>_connectivity.json files (e.g. Matterport3DSimulator/connectivity, or "
                "`vln-clip data synth --out DIR` then DIR/connectivity)"
            )
        self.use_cache = use_cache
        self._graphs: dict[str, NavGraph] = {}

    @property
    def scans(self) -> list[str]:
        """Scans in ``scans.txt`` when present, else every ``*_connectivity.json`` file."""
        listing = self.root / "scans.txt"
        if listing.exists():
            return [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        return sorted(p.name.replace("_connectivity.json", "") for p in self.root.glob("*_connectivity.json"))

    def __contains__(self, scan: object) -> bool:
        return (self.root / f"{scan}_connectivity.json").exists()

    def __getitem__(self, scan: str) -> NavGraph:
        graph = self._graphs.get(scan)
        if graph is None:
            path = self.root / f"{scan}_connectivity.json"
            if not path.exists():
                raise DataError(
                    f"unknown scan {scan!r}: {path} does not exist; the episode file and the "
                    f"connectivity directory must come from the same dataset"
                )
            graph = self._graphs[scan] = load_graph(path, self.use_cache)
        return graph

    def get(self, scan: str) -> NavGraph:
        return self[scan]

    def load_all(self, scans: Iterable[str] | None = None) -> dict[str, NavGraph]:
        return {s: self[s] for s in (scans if scans is not None else self.scans)}


def graph_stats(store: GraphStore) -> dict[str, float]:
    """Counts that identify a connectivity release (90 scans, 10,567 viewpoints, 21,468 edges for Matterport)."""
    graphs = store.load_all()
    viewpoints = sum(len(g) for g in graphs.values())
    edges = sum(g.num_edges for g in graphs.values())
    return {
        "scans": len(graphs),
        "viewpoints": viewpoints,
        "edges": edges,
        "mean_degree": round(2 * edges / viewpoints, 4) if viewpoints else 0.0,
    }

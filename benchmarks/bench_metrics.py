"""Vectorized scorer vs a naive per-episode Python scorer, side by side.

The naive baseline is how the classic R2R/R4R evaluation scripts work: build a networkx graph
per scan, run Dijkstra from every node (``all_pairs_dijkstra_path_length``), then score each
episode in Python loops (a double loop for DTW). The vectorized path is
:func:`vln_clip.eval.metrics.score_paths` on the cached all-pairs tables of
:class:`vln_clip.graph.GraphStore`.

Both score the same prediction set (by default 2,349 instructions, the size of R2R val unseen,
taken from R2R_train with seeded random-walk trajectories of 1-12 viewpoints (``--max-steps``) and a few turns
in place), and the script checks that every episode-level value agrees to 1e-9.

Usage::

    python benchmarks/bench_metrics.py [--connectivity DIR] [--split R2R_train.json] [--n 2349]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VLN_CLIP_SHARED", REPO.parent / "shared"))


def random_walks(episodes, graphs, seed: int = 0, max_steps: int = 12) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    out = {}
    for ep in episodes:
        g = graphs[ep.scan]
        path = [ep.start]
        for _ in range(int(rng.integers(0, max_steps))):
            nbrs = g.neighbors(path[-1])
            if rng.random() < 0.15 or not nbrs:
                path.append(path[-1])  # turn in place
            else:
                path.append(nbrs[int(rng.integers(len(nbrs)))])
        out[ep.instr_id] = path
    return out


# ----------------------------------------------------------------------------------------
# Naive reference scorer (networkx + pure Python)


def naive_tables(graphs, scans):
    import networkx as nx

    tables = {}
    for scan in scans:
        g = graphs[scan]
        G = nx.Graph()
        G.add_nodes_from(g.viewpoints)
        w = g.edge_weights
        for i, j in zip(*np.nonzero(np.triu(g.adjacency, 1))):
            G.add_edge(g.viewpoints[i], g.viewpoints[j], weight=float(w[i, j]))
        tables[scan] = dict(nx.all_pairs_dijkstra_path_length(G))
    return tables


def naive_score(paths, episodes, tables) -> dict[str, dict[str, float]]:
    out = {}
    for ep in episodes:
        d = tables[ep.scan]
        P, R = paths[ep.instr_id], list(ep.path)
        goal = R[-1]
        tl = sum(d[a][b] for a, b in zip(P, P[1:]))
        ne = d[P[-1]][goal]
        oe = min(d[v][goal] for v in P)
        sr = float(ne < 3.0)
        sp = d[R[0]][goal]
        spl = sr * sp / max(tl, sp) if max(tl, sp) > 0 else sr
        Q = [v for k, v in enumerate(P) if k == 0 or P[k - 1] != v]
        n, m = len(Q), len(R)
        dtw = [[math.inf] * (m + 1) for _ in range(n + 1)]
        dtw[0][0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                dtw[i][j] = d[Q[i - 1]][R[j - 1]] + min(dtw[i - 1][j], dtw[i][j - 1], dtw[i - 1][j - 1])
        ndtw = math.exp(-dtw[n][m] / (3.0 * m))
        sdtw = ndtw if d[P[-1]][goal] <= 3.0 else 0.0
        pc = sum(math.exp(-min(d[u][v] for v in P) / 3.0) for u in R) / m
        lr = sum(d[a][b] for a, b in zip(R, R[1:]))
        exp_len = pc * lr
        den = exp_len + abs(exp_len - tl)
        ls = exp_len / den if den > 0 else 1.0
        out[ep.instr_id] = {"trajectory_length": tl, "nav_error": ne, "oracle_error": oe, "success": sr,
                            "spl": spl, "ndtw": ndtw, "sdtw": sdtw, "cls": pc * ls}
    return out


def main() -> int:
    from vln_clip.episodes import read_r2r
    from vln_clip.eval.metrics import score_paths
    from vln_clip.graph import GraphStore

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connectivity", default=str(SHARED / "data" / "matterport" / "connectivity"))
    ap.add_argument("--split", default=str(SHARED / "data" / "r2r" / "R2R_train.json"))
    ap.add_argument("--n", type=int, default=2349)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=12,
                    help="longest random walk (12 ~ R2R agents; 35 ~ the step limit / RxR-length paths)")
    args = ap.parse_args()
    if not Path(args.split).exists():
        print(f"{args.split} not found; pass --split and --connectivity", file=sys.stderr)
        return 1

    os.environ.setdefault("VLN_CLIP_CACHE", tempfile.mkdtemp(prefix="vln_clip_bench_"))
    episodes = read_r2r(args.split)[: args.n]
    scans = sorted({ep.scan for ep in episodes})
    graphs = GraphStore(args.connectivity)

    t = time.perf_counter()
    GraphStore(args.connectivity, use_cache=True).load_all(scans)  # builds the scipy tables + disk cache
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    graphs.load_all(scans)  # a fresh store: what every later process pays (cache hit)
    t_cached = time.perf_counter() - t
    paths = random_walks(episodes, graphs, max_steps=args.max_steps)

    t = time.perf_counter()
    tables = naive_tables(graphs, scans)
    t_nx = time.perf_counter() - t

    fast_times, slow_times = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = score_paths(paths, episodes, graphs)
        fast_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        naive = naive_score(paths, episodes, tables)
        slow_times.append(time.perf_counter() - t)

    worst = 0.0
    for e in result.episodes:
        ref = naive[e.instr_id]
        for k, v in ref.items():
            worst = max(worst, abs(getattr(e, k) - v))
    fast, slow = min(fast_times), min(slow_times)
    print(f"{len(episodes)} instructions on {len(scans)} scans, walks of up to {args.max_steps} steps; "
          f"max |difference| = {worst:.2e}")
    print(f"{'stage':<40}{'naive (s)':>12}{'vln-clip (s)':>14}{'speed-up':>10}")
    print(f"{'distance tables (nx vs scipy, built)':<40}{t_nx:>12.3f}{t_build:>14.3f}{t_nx / t_build:>9.1f}x")
    print(f"{'distance tables (nx vs scipy, cached)':<40}{t_nx:>12.3f}{t_cached:>14.3f}{t_nx / t_cached:>9.1f}x")
    print(f"{'scoring (Python loops vs vectorized)':<40}{slow:>12.3f}{fast:>14.3f}{slow / fast:>9.1f}x")
    print(f"{'end to end (cached tables)':<40}{t_nx + slow:>12.3f}{t_cached + fast:>14.3f}"
          f"{(t_nx + slow) / (t_cached + fast):>9.1f}x")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

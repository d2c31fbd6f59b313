"""Steps per second: BatchedNavEnv vs a gymnasium SyncVectorEnv of NavEnvs (same batch, same work).

Both sides run the same thing: a batch of R2R episodes (the shared train split on the real
graphs when present, otherwise synthetic grid worlds) stepped with the teacher's actions,
a new batch whenever the current one has ended, with ``--dim``-wide synthetic visual features
(0 = vision-free). Throughput is item-steps per second (batch x steps / wall time), the best of
``--rounds`` alternating rounds per side; the ratio is what matters: absolute numbers depend
on the machine and its load (printed: the 1-minute load average before and after).

The batched environment is measured three ways:

* ``copy``: ``observation="features"``, NavEnv's observation with copied feature tensors;
* ``index``: ``observation="indices"``, feature-table rows and angle features only (the
  environment's own cost on the training path);
* ``index+gather``: the same plus the gather the follower's input layer does every step
  (``FeatureTable.panorama_views`` / ``candidate_views``: the visual rows the model reads):
  the fair comparison with the single environments, which hand over the features.

    python benchmarks/bench_env.py --batch 64 --dim 0 --threads 1
    python benchmarks/bench_env.py --batch 64 --dim 512 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


class _Synthetic:
    """Random features for a set of scans, with the FeatureStore read interface (no HDF5 file)."""

    def __init__(self, graphs: dict[str, list[str]], dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.path = Path("synthetic")
        self.attrs = {"dtype": "float32"}
        self._data = {f"{s}_{vp}": rng.standard_normal((36, dim)).astype(np.float32)
                      for s, vps in graphs.items() for vp in vps}

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, scan: str, viewpoint: str) -> np.ndarray:
        return self._data[f"{scan}_{viewpoint}"]


def _synthetic_world(root: Path, scans: int = 8, side: int = 6) -> tuple[Path, list]:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import write_connectivity

    from vln_clip.episodes import Episode

    rng = np.random.default_rng(0)
    conn = root / "connectivity"
    eps = []
    for s in range(scans):
        pts = [(x * 2.0 + rng.normal(0, .3), y * 2.0 + rng.normal(0, .3), 1.5) for y in range(side) for x in range(side)]
        edges = [(i, i + 1) for i in range(side * side) if i % side != side - 1]
        edges += [(i, i + side) for i in range(side * (side - 1))]
        ids = write_connectivity(conn, f"synth{s}", pts, edges)
        for k in range(40):
            a, b = rng.choice(len(ids), 2, replace=False)
            eps.append(Episode(f"{s}_{k}", f"{s}_{k}", f"synth{s}", (ids[a], ids[b]), float(rng.uniform(0, 6.28)),
                               "walk to the other room", has_goal=True))
    return conn, eps


def _load(batch: int, dim: int, max_scans: int) -> tuple[object, list, object]:
    from vln_clip.episodes import read_r2r
    from vln_clip.graph import GraphStore

    conn = SHARED / "matterport" / "connectivity"
    split = SHARED / "r2r" / "R2R_train.json"
    if (conn / "scans.txt").exists() and split.exists():
        eps = read_r2r(split)
        scans = sorted({e.scan for e in eps})[:max_scans]
        eps = [e for e in eps if e.scan in scans]
        source = f"shared R2R train ({len(scans)} scans, {len(eps)} episodes)"
        graphs = GraphStore(conn)
    else:
        conn, eps = _synthetic_world(Path(tempfile.mkdtemp()))
        graphs = GraphStore(conn)
        source = f"synthetic grids ({len(eps)} episodes)"
    feats = None
    if dim:
        feats = _Synthetic({s: graphs[s].viewpoints for s in sorted({e.scan for e in eps})}, dim)
    print(f"data: {source}; batch {batch}; feature width {dim}", flush=True)
    return graphs, eps, feats


#: the batched environment's ways: (observation, gather the model's input views each step)
MODES = {"copy": ("features", False), "index": ("indices", False), "index+gather": ("indices", True)}


def bench_batched(graphs, eps, feats, batch: int, steps: int, mode: str = "copy") -> float:
    from vln_clip.envs import BatchedNavEnv

    observation, gather = MODES[mode]
    env = BatchedNavEnv(graphs, eps, feats, num_envs=batch, shuffle=True, seed=0, observation=observation)
    table = env.feature_table
    obs, info = env.reset()
    done_steps = 0
    t0 = time.perf_counter()
    while done_steps < steps:
        obs, r, term, trunc, info = env.step(info["teacher"].clamp(min=0))
        if gather:
            table.panorama_views(obs["viewpoint"], obs["view_index"])
            table.candidate_views(obs["candidate_rows"], obs["candidate_angles"])
        done_steps += 1
        if done_steps % 8 == 0 and bool(info["done"].all()):
            obs, info = env.reset()
    return batch * done_steps / (time.perf_counter() - t0)


def bench_sync(graphs, eps, feats, batch: int, steps: int) -> float:
    from vln_clip.envs import NavEnv, NavTask
    from vln_clip.envs.nav_env import NavEnvConfig

    task = NavTask(graphs, eps, feats, NavEnvConfig(shuffle=True, seed=0))
    fns = [lambda k=k: NavEnv(task=task) for k in range(batch)]
    env = gym.vector.SyncVectorEnv(fns)  # autoreset (next step) starts the next episode
    obs, info = env.reset(seed=list(range(batch)))
    teacher = np.maximum(info["teacher"], 0)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(teacher)
        teacher = np.maximum(info["teacher"], 0)
    return batch * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=512, help="synthetic visual feature width (0 = none)")
    ap.add_argument("--steps", type=int, default=300, help="batched steps to time on each side")
    ap.add_argument("--max-scans", type=int, default=12, help="scans of the real split to use (memory)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each side is kept")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    graphs, eps, feats = _load(args.batch, args.dim, args.max_scans)
    load_before = os.getloadavg()[0]
    # alternate the sides and keep each one's best round: the machine's load varies
    runs: dict[str, list[float]] = {m: [] for m in (*MODES, "sync")}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(bench_batched(graphs, eps, feats, args.batch, args.steps, mode))
        runs["sync"].append(bench_sync(graphs, eps, feats, args.batch, max(args.steps // 4, 20)))
    best = {m: max(v) for m, v in runs.items()}
    sync = best["sync"]
    out = {"batch": args.batch, "dim": args.dim, "torch_threads": torch.get_num_threads(),
           "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "sync_vector_steps_per_s": round(sync),
           **{f"{m}_steps_per_s": round(best[m]) for m in MODES},
           **{f"{m}_ratio": round(best[m] / sync, 1) for m in MODES},
           "index_gather_vs_copy": round(best["index+gather"] / best["copy"], 2)}
    out["batched_steps_per_s"], out["ratio"] = out["copy_steps_per_s"], out["copy_ratio"]  # the old keys
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{'env':<44}{'item-steps/s':>14}{'vs sync':>9}")
        for mode in MODES:
            name = f"BatchedNavEnv {mode} (torch, cpu)"
            print(f"{name:<44}{round(best[mode]):>14,}{best[mode] / sync:>8.1f}x")
        print(f"{'SyncVectorEnv of NavEnv':<44}{round(sync):>14,}{1.0:>8.1f}x")
        print(f"index+gather vs copy: {out['index_gather_vs_copy']}x  (torch threads {out['torch_threads']}, "
              f"load {out['load_1min'][0]} -> {out['load_1min'][1]})")
    return out


if __name__ == "__main__":
    main()

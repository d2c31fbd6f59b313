"""A tiny plus-shaped world for agent tests: instructions name the arm that leads to the goal.

Each scan is a centre with four arms of two viewpoints (3.5 m apart, so stopping next to the
goal is a failure under the 3 m rule). Episodes start at the centre facing north (heading 0)
and end at the tip of one arm; the instruction names the direction. An agent that reads the
instruction reaches the goal; the untrained one rarely does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import write_connectivity, write_r2r

ARMS = {"north": (0.0, 1.0), "east": (1.0, 0.0), "south": (0.0, -1.0), "west": (-1.0, 0.0)}
TEMPLATES = ("walk {d} to the end of the hall", "go {d} two steps and stop", "head {d} and wait at the end")
SPACING = 3.5


def plus_scan(root: Path, scan: str) -> list[str]:
    pts = [(0.0, 0.0, 1.5)]
    edges = []
    for dx, dy in ARMS.values():
        a = len(pts)
        pts += [(dx * SPACING, dy * SPACING, 1.5), (dx * 2 * SPACING, dy * 2 * SPACING, 1.5)]
        edges += [(0, a), (a, a + 1)]
    return write_connectivity(root / "connectivity", scan, pts, edges)


def make_plus_world(root: Path, train_scans: int = 3, features_dim: int | None = 8, seed: int = 0) -> Path:
    """Write connectivity/, r2r/R2R_{train,val_seen,val_unseen}.json and (optionally) a random
    feature store features/test_enc.h5 under ``root``."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[dict]] = {"train": [], "val_seen": [], "val_unseen": []}
    scans = {f"plus{i}": "train" for i in range(train_scans)}
    scans["plusU"] = "val_unseen"
    pid = 0
    vps_of = {}
    for scan, split in scans.items():
        vps = vps_of[scan] = plus_scan(root, scan)
        for k, d in enumerate(ARMS):
            path = [vps[0], vps[1 + 2 * k], vps[2 + 2 * k]]
            item = {"path_id": pid, "scan": scan, "path": path, "heading": 0.0, "distance": 2 * SPACING,
                    "instructions": [t.format(d=d) for t in TEMPLATES]}
            pid += 1
            splits[split].append(item)
            if split == "train":
                splits["val_seen"].append({**item, "path_id": pid + 1000})
    for split, items in splits.items():
        write_r2r(root / "r2r" / f"R2R_{split}.json", items)
    if features_dim:
        from vln_clip.features.store import FeatureWriter

        with FeatureWriter(root / "features" / "test_enc.h5", features_dim,
                           {"encoder": "test_enc", "weights": "random"}) as w:
            for scan, vps in vps_of.items():
                for vp in vps:
                    w.write(scan, vp, rng.standard_normal((36, features_dim)).astype(np.float32))
    return root

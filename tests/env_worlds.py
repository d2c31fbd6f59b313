"""Tiny worlds, episode files and feature stores shared by the environment tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from helpers import line_world, write_connectivity, write_r2r

DEG = math.pi / 180


def fan_world(root: Path) -> list[str]:
    """Centre 0 with A north (heading 0), D at heading 60 and 25 deg up, B east, C at heading 200.

    EnvDrop's sweep (HFOV 80) first sees A in view 0, D in view 1, B in view 2, C in view 6, so
    the candidate order is [A, D, B, C]; their best views are 12, 26, 15 and 19.
    """
    d_h = 2.0
    pts = [
        (0.0, 0.0, 1.5),
        (0.0, 3.0, 1.5),  # 1 = A
        (3.0, 0.0, 1.5),  # 2 = B
        (2 * math.sin(200 * DEG), 2 * math.cos(200 * DEG), 1.5),  # 3 = C
        (d_h * math.sin(60 * DEG), d_h * math.cos(60 * DEG), 1.5 + d_h * math.tan(25 * DEG)),  # 4 = D
    ]
    return write_connectivity(root, "fan", pts, [(0, k) for k in range(1, 5)] + [(1, 4)])


def write_features(path: Path, graphs: dict[str, list[str]], dim: int = 8, seed: int = 0,
                   skip: tuple[str, str] | None = None) -> Path:
    """A feature store with random ``[36, dim]`` features (view v's first channel = v)."""
    from vln_clip.features.store import FeatureWriter

    rng = np.random.default_rng(seed)
    with FeatureWriter(path, dim, {"encoder": "test", "weights": "random"}) as w:
        for scan, vps in graphs.items():
            for vp in vps:
                if skip == (scan, vp):
                    continue
                f = rng.normal(size=(36, dim)).astype(np.float32)
                f[:, 0] = np.arange(36)
                w.write(scan, vp, f)
    return path


def two_scan_world(root: Path) -> tuple[dict[str, list[str]], Path, Path]:
    """A 6-node line (2 m) and a 3x3 grid with a diagonal; a train and a test split over both."""
    conn = root / "connectivity"
    line = line_world(conn, "lineScan", n=6, spacing=2.0)
    grid_pts = [(x * 2.5, y * 2.5, 1.5 + 0.3 * (x == 2)) for y in range(3) for x in range(3)]
    edges = [(i, i + 1) for i in range(9) if i % 3 != 2] + [(i, i + 3) for i in range(6)] + [(0, 4), (4, 8)]
    grid = write_connectivity(conn, "gridScan", grid_pts, edges)
    items = [
        {"path_id": 1, "scan": "lineScan", "path": line[0:4], "heading": 0.2, "instructions": ["walk north", "go up the hall"]},
        {"path_id": 2, "scan": "gridScan", "path": [grid[0], grid[4], grid[8]], "heading": 2.0,
         "instructions": ["cross the room diagonally"]},
        {"path_id": 3, "scan": "lineScan", "path": [line[5], line[4], line[3], line[2]], "heading": 3.1,
         "instructions": ["turn around and walk south"]},
        {"path_id": 4, "scan": "gridScan", "path": [grid[6], grid[3], grid[0], grid[1], grid[2]], "heading": 4.5,
         "instructions": ["go south then east to the far corner"]},
    ]
    train = write_r2r(root / "R2R_train.json", items)
    test = write_r2r(root / "R2R_test.json", [
        {"path_id": 9, "scan": "gridScan", "path": [grid[4]], "heading": 1.0, "instructions": ["find the exit"]}])
    return {"lineScan": line, "gridScan": grid}, train, test


def write_rxr(path: Path, scan: str, vps: list[str]) -> Path:
    rows = [
        {"instruction_id": 1, "path_id": 1, "scan": scan, "path": vps[:3], "heading": 0.0,
         "instruction": "walk forward twice", "language": "en-IN"},
        {"instruction_id": 2, "path_id": 1, "scan": scan, "path": vps[:3], "heading": 0.0,
         "instruction": "आगे चलो", "language": "hi-IN"},
        {"instruction_id": 3, "path_id": 2, "scan": scan, "path": vps[2:5], "heading": 0.0,
         "instruction": "keep going forward", "language": "en-US"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path

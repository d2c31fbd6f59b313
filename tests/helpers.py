"""Small hand-made worlds for tests: graphs whose distances and headings are easy to work out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence


def pose_at(x: float, y: float, z: float) -> list[float]:
    """Identity rotation, position (x, y, z) in the Matterport row-major layout."""
    return [1, 0, 0, x, 0, 1, 0, y, 0, 0, 1, z, 0, 0, 0, 1]


def write_connectivity(root: Path, scan: str, points: Sequence[tuple[float, float, float]],
                       edges: Iterable[tuple[int, int]], excluded: Iterable[int] = (),
                       names: Sequence[str] | None = None) -> list[str]:
    """Write ``root/<scan>_connectivity.json``; returns the viewpoint ids (``<scan>vp<i>``)."""
    root.mkdir(parents=True, exist_ok=True)
    n = len(points)
    ids = list(names) if names else [f"{scan}vp{i}" for i in range(n)]
    unob = [[False] * n for _ in range(n)]
    for a, b in edges:
        unob[a][b] = unob[b][a] = True
    excluded = set(excluded)
    data = [
        {"image_id": ids[i], "pose": pose_at(*points[i]), "included": i not in excluded,
         "visible": unob[i], "unobstructed": unob[i], "height": 1.5}
        for i in range(n)
    ]
    (root / f"{scan}_connectivity.json").write_text(json.dumps(data))
    scans_txt = root / "scans.txt"
    existing = scans_txt.read_text().split() if scans_txt.exists() else []
    if scan not in existing:
        scans_txt.write_text("\n".join(existing + [scan]) + "\n")
    return ids


def line_world(root: Path, scan: str = "lineScan", n: int = 6, spacing: float = 2.0) -> list[str]:
    """Viewpoints on the +y axis every ``spacing`` metres, each linked to the next."""
    return write_connectivity(root, scan, [(0.0, i * spacing, 1.5) for i in range(n)],
                              [(i, i + 1) for i in range(n - 1)])


def write_r2r(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return path


def line_split(root: Path) -> tuple[Path, list[str], Path]:
    """A 6-viewpoint line world under ``root/connectivity`` and a val_unseen split of two paths
    (3 instructions, one path walked backwards): ``(connectivity dir, viewpoints, split file)``."""
    conn = root / "connectivity"
    v = line_world(conn, "lineScan", n=6, spacing=2.0)
    split = write_r2r(root / "R2R_val_unseen.json", [
        {"path_id": 1, "scan": "lineScan", "path": v[:4], "heading": 0.0, "instructions": ["walk ahead", "go on"]},
        {"path_id": 2, "scan": "lineScan", "path": v[5:1:-1], "heading": 3.14, "instructions": ["head back"]}])
    return conn, v, split

"""Synthetic world generation time: OpenGL (llvmpipe, in a child process) vs the numpy rasteriser.

Generates the same world (default: 6 houses, seed 0, 128 px faces) once per renderer into
fresh temporary folders and reports wall time per stage and panoramas per second. The
ratio numpy / gl is what matters; absolute times depend on the machine and its load.

    python benchmarks/bench_synth.py
    python benchmarks/bench_synth.py --houses 3 --face-size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vln_clip.synth import generate_world
from vln_clip.synth.render import egl_available


def run(renderer: str, houses: int, face_size: int, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = generate_world(Path(tmp) / "w", houses=houses, seed=seed, face_size=face_size, renderer=renderer)
        total = time.perf_counter() - t0
        summary = json.loads(paths.world_json.read_text())
        panos = sum(summary["counts"]["viewpoints"].values())
    out = {k: round(v, 2) for k, v in paths.timings.items()}
    out.update(total_s=round(total, 2), panoramas=panos, panoramas_per_s=round(panos / paths.timings["render_s"], 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--houses", type=int, default=6)
    ap.add_argument("--face-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result: dict[str, object] = {"houses": args.houses, "face_size": args.face_size}
    result["numpy"] = run("numpy", args.houses, args.face_size, args.seed)
    if egl_available():
        result["gl"] = run("gl", args.houses, args.face_size, args.seed)
        result["render_ratio_numpy_over_gl"] = round(result["numpy"]["render_s"] / result["gl"]["render_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""`vln-clip data synth`: synthesize a small Matterport-format world."""

from __future__ import annotations

import argparse
import json

from .common import add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(
        sub, "synth",
        "synthesize procedural houses in the real formats: Matterport connectivity graphs and "
        "skybox faces, scene descriptions, R2R and RxR (en/hi/te, templated) episode splits",
        ["vln-clip data synth --out data/synthetic",
         "vln-clip data synth --out data/synthetic --houses 12 --seed 3 --face-size 256",
         "vln-clip data synth --out /tmp/tiny --houses 3 --no-render   # graphs and episodes only",
         "vln-clip data synth --out data/synthetic --renderer numpy   # no EGL/OpenGL on this machine"],
        description=(
            "Synthesize a small Matterport-format world. Output: DIR/connectivity, "
            "DIR/scans/<scan>/matterport_skybox_images, DIR/scenes, DIR/r2r, DIR/rxr, DIR/world.json "
            "(see docs/synthetic.md). Deterministic for a seed; rerunning with the same options "
            "returns at once (use --force to regenerate)."))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--houses", type=int, default=6, help="number of houses (scans), at least 3 (default 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--face-size", type=int, default=128, dest="face_size",
                   help="skybox face size in pixels (default 128; Matterport's are 1024)")
    p.add_argument("--renderer", choices=("auto", "gl", "numpy"), default="auto",
                   help="gl: OpenGL via moderngl/EGL (Mesa llvmpipe works); numpy: software rasteriser, "
                        "no system libraries, slower; auto: gl when an EGL context can be made")
    p.add_argument("--no-render", action="store_false", dest="render",
                   help="skip the skybox images (graphs, scenes and episodes only)")
    p.add_argument("--paths-per-house", type=int, default=40, dest="paths_per_house",
                   help="R2R paths per house for its split (default 40; 3 instructions each)")
    p.add_argument("--val-seen-per-house", type=int, default=10, dest="val_seen_per_house",
                   help="val_seen paths per training house (default 10)")
    p.add_argument("--rxr-paths-per-house", type=int, default=12, dest="rxr_paths_per_house",
                   help="RxR paths per house (default 12; one instruction per language each)")
    p.add_argument("--min-distance", type=float, default=5.0, dest="min_distance",
                   help="minimum start-goal distance in metres (default 5, lowered for small houses)")
    p.add_argument("--two-floor-fraction", type=float, default=0.34, dest="two_floor_fraction",
                   help="share of houses with an upper floor reached by stairs (default 0.34; 0 = none)")
    p.add_argument("--jpeg-quality", type=int, default=90, dest="jpeg_quality", help="JPEG quality (default 90)")
    p.add_argument("--skybox-small", action="store_true", dest="skybox_small",
                   help="also write MatterSim's <pano>_skybox_small.jpg strips (faces 0-5 side by side)")
    p.add_argument("--force", action="store_true", help="regenerate even when DIR/world.json matches")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import time

    from vln_clip.io import read_json
    from vln_clip.synth import generate_world

    t0 = time.perf_counter()
    paths = generate_world(args.out, houses=args.houses, seed=args.seed, face_size=args.face_size,
                           render=args.render, renderer=args.renderer, force=args.force, progress=not args.json,
                           paths_per_house=args.paths_per_house, val_seen_per_house=args.val_seen_per_house,
                           rxr_paths_per_house=args.rxr_paths_per_house, min_distance=args.min_distance,
                           two_floor_fraction=args.two_floor_fraction,
                           jpeg_quality=args.jpeg_quality, skybox_small=args.skybox_small)
    elapsed = time.perf_counter() - t0
    summary = read_json(paths.world_json, "synthetic world summary")
    if args.json:
        print(json.dumps({"out": str(paths.root), "seconds": round(elapsed, 2), "splits": summary["splits"],
                          "counts": summary["counts"], "renderer": summary["renderer"],
                          "cached": not paths.timings}))
        return 0
    counts = summary["counts"]
    vps = sum(counts["viewpoints"].values())
    edges = sum(counts["edges"].values())
    state = "found (cached)" if not paths.timings else f"generated in {elapsed:.1f} s"
    print(f"synthetic world {state}: {paths.root}")
    print(f"  houses       {summary['houses']}  ({vps} viewpoints, {edges} edges, renderer {summary['renderer']})")
    for split, scans in summary["splits"].items():
        print(f"  {split:<11}  {len(scans)} houses, {counts['r2r_paths'][split]} R2R paths")
    print(f"  rxr          {sum(counts['rxr_instructions'].values())} instructions (en, hi, te)")
    print(f"  connectivity {paths.connectivity}")
    print(f"  r2r          {paths.r2r['train'].parent}")
    return 0

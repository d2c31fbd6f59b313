"""`vln-clip data aug-paths`: sample augmentation paths for back-translation."""

from __future__ import annotations

import argparse
import json

from .common import add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(
        sub, "aug-paths",
        "sample new shortest paths in the training scans with R2R statistics (4-6 edges, >= 5 m), "
        "written like EnvDrop's aug_paths.json (instructions left empty: the speaker fills them "
        "during back-translation)",
        ["vln-clip data aug-paths --connectivity data/connectivity --scans-from data/r2r/R2R_train.json "
         "--out data/r2r/aug_paths.json",
         "vln-clip data aug-paths --connectivity data/synthetic/connectivity "
         "--scans-from data/synthetic/r2r/R2R_train.json --out aug.json --per-scan 100 --seed 1"])
    p.add_argument("--connectivity", required=True, help="folder of <scan>_connectivity.json files")
    p.add_argument("--scans-from", required=True, dest="scans_from",
                   help="training split (R2R JSON or RxR .jsonl[.gz]) whose scans to sample in; its "
                        "own (start, goal) pairs are left out")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--per-scan", type=int, default=500, dest="per_scan", help="paths per scan (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-edges", type=int, default=4)
    p.add_argument("--max-edges", type=int, default=6)
    p.add_argument("--min-distance", type=float, default=5.0, help="metres between start and goal")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vln_clip.agents.aug_paths import write_aug_paths

    summary = write_aug_paths(args.connectivity, args.scans_from, args.out, per_scan=args.per_scan,
                              seed=args.seed, min_edges=args.min_edges, max_edges=args.max_edges,
                              min_distance=args.min_distance)
    print(json.dumps(summary))
    return 0

"""``vln-clip data``: inspect graphs, synthesize worlds, sample augmentation paths."""

from __future__ import annotations

import argparse
import json

from .common import add_parser
from . import data_aug, data_synth
from . import data_synth_vl


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "data", "navigation graphs and episode data",
                   ["vln-clip data stats --connectivity connectivity/ --json",
                    "vln-clip data synth --out data/synthetic --houses 6 --seed 0",
                    "vln-clip data aug-paths --connectivity DIR --scans-from R2R_train.json --out aug_paths.json"])
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    s = add_parser(dsub, "stats", "count scans, viewpoints, undirected edges and mean degree",
                   ["vln-clip data stats --connectivity ../shared/data/matterport/connectivity",
                    "vln-clip data stats --connectivity data/synthetic/connectivity --json"])
    s.add_argument("--connectivity", required=True, help="folder of <scan>_connectivity.json files")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_stats)
    data_synth.register(dsub)
    data_synth_vl.register(dsub)
    data_aug.register(dsub)
    p.set_defaults(func=lambda a: p.print_help() or 1)


def _stats(args: argparse.Namespace) -> int:
    from vln_clip.graph import GraphStore, graph_stats

    stats = graph_stats(GraphStore(args.connectivity))
    if args.json:
        print(json.dumps(stats))
    else:
        print(f"scans        {stats['scans']:>8,}")
        print(f"viewpoints   {stats['viewpoints']:>8,}")
        print(f"edges        {stats['edges']:>8,}  (undirected)")
        print(f"mean degree  {stats['mean_degree']:>8.2f}")
    return 0

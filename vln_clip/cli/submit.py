"""`vln-clip submit`: validate predictions and export leaderboard submissions.

Test splits carry only the start viewpoint, so nothing can be scored locally; what can be
checked is everything the leaderboard checks before scoring (every instruction answered once,
known viewpoints, starting at the start, moving along edges). ``--check`` does only that;
otherwise the validated trajectories are written in the leaderboard's format (R2R EvalAI
JSON, or the RxR challenge JSON lines; see :mod:`vln_clip.eval.formats`).
"""

from __future__ import annotations

import argparse
import sys

from vln_clip.agents.baselines import AGENTS, NEEDS_GOAL

from .common import add_parser, friendly_os_errors, positive_int
from .eval import add_split_arguments, split_source

EXAMPLES = [
    "vln-clip submit --check preds_test.json --split-file data/r2r/R2R_test.json --connectivity connectivity/",
    "vln-clip submit --predictions preds_test.json --split test --out submit/r2r_test.json",
    "vln-clip submit --checkpoint runs/follower/best.pt --split test --out submit/r2r_test.json",
    "vln-clip submit --agent random --split test --out submit/r2r_test_random.json   # a baseline submission",
    "vln-clip submit --predictions rxr_test.jsonl --split test_standard_public --dataset rxr "
    "--out submit/rxr_test_standard.jsonl.gz --format rxr",
]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "submit", "validate and export leaderboard submissions (R2R EvalAI, RxR)", EXAMPLES,
                   description="Validate predictions against a split (test splits have no goals, so only the "
                               "structure is checked) and export them in the leaderboard format.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--check", metavar="PREDS", help="only validate this predictions file; exit 0 when valid")
    src.add_argument("--predictions", metavar="PREDS", help="predictions file to export (R2R or RxR format)")
    src.add_argument("--checkpoint", metavar="CKPT", help="run this follower checkpoint on the split and export")
    src.add_argument("--agent", choices=[a for a in AGENTS if a not in NEEDS_GOAL],
                     help="export a baseline agent's trajectories (test splits have no goal, so no shortest path)")
    add_split_arguments(p)
    p.add_argument("--features", metavar="H5", help="feature store for --checkpoint (default: the store it was "
                   "trained with)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="episodes per batch for --checkpoint/--agent "
                   "(default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of --agent random (default 0)")
    p.add_argument("--out", metavar="FILE", help="submission file to write (atomically)")
    p.add_argument("--format", choices=("r2r", "rxr"), default=None,
                   help="submission format (default: rxr for .jsonl(.gz) splits, else r2r)")
    p.set_defaults(func=friendly_os_errors(run))


def run(args: argparse.Namespace) -> int:
    from vln_clip.eval.jobs import SubmitConfig, TrajectorySource, submit

    source = TrajectorySource(args.check or args.predictions, args.agent, args.checkpoint, args.features,
                              args.batch_size, args.seed)
    done = submit(SubmitConfig(split_source(args), source, check=bool(args.check), out=args.out, format=args.format))
    if done.out is None:
        print(f"{done.source}: valid ({len(done.predictions)} trajectories for {done.episodes} instructions of "
              f"{done.split.name})")
    else:
        print(f"wrote {done.out} ({done.format} format, {len(done.predictions)} trajectories)", file=sys.stderr)
    return 0

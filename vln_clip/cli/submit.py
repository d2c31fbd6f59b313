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
from pathlib import Path

from vln_clip.agents.baselines import AGENTS, NEEDS_GOAL
from vln_clip.errors import DataError

from .common import add_parser, friendly_os_errors, positive_int
from .eval import add_split_arguments, drop_filtered_languages, load_inference, resolve_connectivity, resolve_split

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
    from vln_clip.episodes import read_episodes
    from vln_clip.eval.formats import predictions_from_dicts, read_predictions, write_predictions
    from vln_clip.eval.validation import validate_predictions
    from vln_clip.graph import GraphStore

    from vln_clip.eval.inputs import check_split, follower_store

    split = resolve_split(args)
    connectivity = resolve_connectivity(args)
    graphs = GraphStore(connectivity)
    episodes = read_episodes(split, args.languages)
    if not episodes:
        raise DataError(f"{split}: no episodes (after the --languages filter)")
    check_split(episodes, graphs, split)
    if not args.check and not args.out:  # fail before minutes of decoding, not after
        raise DataError("--out FILE is required to export a submission (or use --check PREDS to only validate)")
    if args.check or args.predictions:
        source = args.check or args.predictions
        preds = drop_filtered_languages(read_predictions(source), split, episodes, args.languages)
    elif args.agent:
        from vln_clip.agents.baselines import run_baseline

        rows = run_baseline(args.agent, episodes, connectivity, batch_size=args.batch_size, seed=args.seed)
        source = f"{args.agent} agent"
        preds = predictions_from_dicts(rows, source)
    else:
        predict = load_inference()
        store = follower_store(args.checkpoint, args.features)
        rows = predict(args.checkpoint, str(split), str(connectivity), features=str(store) if store else None,
                       batch_size=args.batch_size)
        source = f"checkpoint {args.checkpoint}"
        preds = predictions_from_dicts(rows, source)
    validate_predictions(preds, episodes, graphs, source=str(source))
    if args.check:
        print(f"{source}: valid ({len(preds)} trajectories for {len(episodes)} instructions of {split.name})")
        return 0
    fmt = args.format or ("rxr" if split.name.endswith((".jsonl", ".jsonl.gz")) else "r2r")
    order = {ep.instr_id: n for n, ep in enumerate(episodes)}
    preds = sorted(preds, key=lambda p: order[p.instr_id])
    write_predictions(args.out, preds, fmt)
    print(f"wrote {Path(args.out)} ({fmt} format, {len(preds)} trajectories)", file=sys.stderr)
    return 0

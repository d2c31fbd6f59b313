"""`vln-clip eval`: score a predictions file, a baseline agent or a checkpoint.

Three sources of trajectories, one scorer (:mod:`vln_clip.eval.metrics`):

* ``PREDS``: a predictions file in the R2R leaderboard format or the RxR format;
* ``--agent random|stop|shortest``: a built-in baseline run through the environments;
* ``--checkpoint CKPT``: a trained follower, via ``vln_clip.agents.inference``.

Predictions are validated first (same checks as ``vln-clip submit --check``), so a score is
only printed for a trajectory set a leaderboard would accept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vln_clip.agents.baselines import AGENTS

from .common import add_parser, friendly_os_errors, positive_int

EXAMPLES = [
    "vln-clip eval preds.json --split-file data/r2r/R2R_val_unseen.json --connectivity connectivity/",
    "vln-clip eval preds.json --split-file R2R_val_unseen.json --connectivity connectivity/ --json",
    "vln-clip eval rxr_preds.jsonl.gz --split val_unseen --dataset rxr --report reports/rxr_val",
    "vln-clip eval --agent shortest --split-file R2R_train.json --connectivity connectivity/ --limit 500",
    "vln-clip eval --agent random --seed 0 --split val_unseen --out runs/random_val_unseen.json",
    "vln-clip eval --checkpoint runs/follower/best.pt --split val_unseen   # the store it was trained with",
]


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """--split-file / --split / --dataset / --data-dir / --connectivity / --languages (eval, submit, rollout)."""
    g = p.add_argument_group("split")
    g.add_argument("--split-file", metavar="SPLIT", help="R2R/R4R .json or RxR .jsonl(.gz) split file")
    g.add_argument("--split", metavar="NAME|FILE",
                   help="split name (val_seen, val_unseen, test, ...) resolved in --data-dir as "
                        "r2r/R2R_NAME.json or rxr/rxr_NAME_guide.jsonl.gz, or a file path")
    g.add_argument("--dataset", choices=("r2r", "r4r", "rxr"), default="r2r",
                   help="dataset for --split NAME (default r2r)")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="data root for --split NAME and the default connectivity (default $VLN_CLIP_DATA or ./data)")
    g.add_argument("--connectivity", metavar="DIR", default=None,
                   help="folder of <scan>_connectivity.json files (default DATA/connectivity, else "
                        "DATA/matterport/connectivity)")
    g.add_argument("--languages", "--language", nargs="+", metavar="LANG", default=None, dest="languages",
                   help="RxR only: keep these base languages (en hi te)")


def resolve_split(args: argparse.Namespace) -> Path:
    """The split file named by --split-file, or --split NAME|FILE under --data-dir."""
    from vln_clip.eval.inputs import resolve_split as resolve

    return resolve(args.split_file, args.split, args.dataset, args.data_dir)


def resolve_connectivity(args: argparse.Namespace) -> Path:
    from vln_clip.eval.inputs import resolve_connectivity as resolve

    return resolve(args.connectivity, args.data_dir)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "eval", "score predictions, baseline agents or checkpoints (SR, SPL, nDTW, SDTW, CLS)",
                   EXAMPLES,
                   description="Score trajectories against an R2R/R4R/RxR split with the official metrics: "
                               "TL, NE, oracle error, SR (NE < 3 m), OSR, SPL, nDTW, SDTW (<= 3 m), CLS. "
                               "Give exactly one of PREDS, --agent or --checkpoint.")
    p.add_argument("predictions", nargs="?", metavar="PREDS",
                   help="predictions file: R2R format (JSON list of instr_id + trajectory) or RxR format "
                        "(JSON lines of instruction_id + path, optionally .gz)")
    p.add_argument("--agent", choices=AGENTS, help="run a built-in baseline agent")
    p.add_argument("--checkpoint", metavar="CKPT", help="run a trained follower checkpoint")
    add_split_arguments(p)
    p.add_argument("--features", metavar="H5", help="feature store for --checkpoint (default: the store it was "
                   "trained with) or --agent (optional for baselines)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="episodes per batch for --agent/--checkpoint (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random agent (default 0)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N instructions of the split")
    p.add_argument("--allow-missing", action="store_true",
                   help="score only the instructions present in PREDS instead of failing on missing ones")
    p.add_argument("--out", metavar="PREDS_OUT", help="write the agent's/checkpoint's predictions here "
                   "(R2R format; RxR format for .jsonl/.jsonl.gz)")
    p.add_argument("--report", metavar="DIR", help="write episodes.csv, summary.json and success plots to DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object with the averages")
    p.set_defaults(func=friendly_os_errors(run))


def split_source(args: argparse.Namespace) -> Any:
    """The --split-file / --split / --dataset / --data-dir / --connectivity / --languages arguments."""
    from vln_clip.eval.jobs import SplitSource

    return SplitSource(args.split_file, args.split, args.dataset, args.data_dir, args.connectivity, args.languages)


def run(args: argparse.Namespace) -> int:
    from vln_clip.eval.jobs import EvalConfig, TrajectorySource, evaluate

    config = EvalConfig(split_source(args), TrajectorySource(args.predictions, args.agent, args.checkpoint,
                                                             args.features, args.batch_size, args.seed),
                        limit=args.limit, allow_missing=args.allow_missing, out=args.out, report=args.report)
    done = evaluate(config)
    summary = done.summary
    if done.report_files and not args.json:
        print(f"report: {', '.join(str(f) for f in done.report_files.values())}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary, title=f"{done.source} on {done.split.name} ({summary['episodes']} instructions)")
    return 0


def _fmt(key: str, value: float) -> str:
    from vln_clip.eval.metrics import RATE_KEYS

    return f"{100 * value:.1f}%" if key in RATE_KEYS else f"{value:.2f}"


def print_table(summary: dict[str, Any], title: str = "") -> None:
    """A rich table: one row per metric, one column overall plus one per language (RxR)."""
    from rich.console import Console
    from rich.table import Table

    from vln_clip.eval.metrics import LABELS

    langs = summary.get("by_language") or {}
    table = Table(title=title or None)
    table.add_column("metric")
    table.add_column("all", justify="right")
    for lang in langs:
        table.add_column(lang, justify="right")
    table.add_row("episodes", str(summary["episodes"]), *(str(langs[lg]["episodes"]) for lg in langs))
    for key, label in LABELS.items():
        table.add_row(label, _fmt(key, summary[key]), *(_fmt(key, langs[lg][key]) for lg in langs))
    Console(width=max(80, int(os.environ.get("COLUMNS", "100")))).print(table)

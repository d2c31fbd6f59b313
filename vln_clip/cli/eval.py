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

from vln_clip.errors import DataError, MissingResourceError

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


def drop_filtered_languages(preds: list, split: Path, episodes: list, languages: list[str] | None) -> list:
    """With --languages, ignore predictions for the split's instructions in other languages.

    Ids that are in no language of the split stay, so validation still reports them as unknown.
    """
    if not languages:
        return preds
    from vln_clip.episodes import read_episodes

    everything = {ep.instr_id for ep in read_episodes(split)}
    kept = {ep.instr_id for ep in episodes}
    return [p for p in preds if p.instr_id in kept or p.instr_id not in everything]


def load_inference() -> Any:
    """``vln_clip.agents.inference.predict_trajectories``, or a clear error when it is absent."""
    import importlib

    try:
        inference = importlib.import_module("vln_clip.agents.inference")
    except ModuleNotFoundError as exc:
        if exc.name == "vln_clip.agents.inference":
            raise MissingResourceError(
                "checkpoint inference is not available: vln_clip.agents.inference is missing from this "
                "installation (it comes with the follower trainer); score a predictions file instead"
            ) from exc
        raise
    if not hasattr(inference, "predict_trajectories"):
        raise MissingResourceError("vln_clip.agents.inference has no predict_trajectories(checkpoint, split_file, "
                                   "connectivity_dir, features=None, batch_size=64); update vln-clip")
    return inference.predict_trajectories


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


def _load_episodes(args: argparse.Namespace, split: Path) -> list:
    from vln_clip.episodes import read_episodes

    episodes = read_episodes(split, args.languages)
    if not episodes:
        raise DataError(f"{split}: no episodes (after the --languages filter)")
    if args.limit is not None:
        episodes = episodes[: args.limit]
    return episodes


def run(args: argparse.Namespace) -> int:
    from vln_clip.eval.formats import paths_of, predictions_from_dicts, read_predictions, write_predictions
    from vln_clip.eval.metrics import score_paths
    from vln_clip.eval.validation import validate_predictions
    from vln_clip.graph import GraphStore

    from vln_clip.eval.inputs import check_split, follower_store

    sources = [x for x in (args.predictions, args.agent, args.checkpoint) if x]
    if len(sources) != 1:
        raise DataError("give exactly one of PREDS (a predictions file), --agent NAME or --checkpoint CKPT")
    if args.report:
        from vln_clip.eval.report import check_report_dir

        check_report_dir(args.report)
    split = resolve_split(args)
    connectivity = resolve_connectivity(args)
    graphs = GraphStore(connectivity)
    episodes = _load_episodes(args, split)
    check_split(episodes, graphs, split)
    if not all(ep.has_goal for ep in episodes):
        raise DataError(f"{split}: this split has no goals (a test split), so it cannot be scored; "
                        "use `vln-clip submit --check` to validate predictions for it")

    if args.predictions:
        preds = drop_filtered_languages(read_predictions(args.predictions), split, episodes, args.languages)
        source = str(args.predictions)
        if args.limit is not None:  # the file covers the whole split; keep the first N
            wanted = {ep.instr_id for ep in episodes}
            preds = [p for p in preds if p.instr_id in wanted]
        if args.allow_missing:
            present = {p.instr_id for p in preds}
            episodes = [ep for ep in episodes if ep.instr_id in present]
            if not episodes:
                raise DataError(f"{source}: none of the predicted instr_ids is in {split}")
    else:
        if args.agent:
            from vln_clip.agents.baselines import run_baseline

            rows = run_baseline(args.agent, episodes, connectivity, features=args.features,
                                batch_size=args.batch_size, seed=args.seed)
            source = f"{args.agent} agent"
        else:
            predict = load_inference()
            if args.limit is not None:
                raise DataError("--limit is not supported with --checkpoint; use a smaller split file")
            store = follower_store(args.checkpoint, args.features)
            rows = predict(args.checkpoint, str(split), str(connectivity), features=str(store) if store else None,
                           batch_size=args.batch_size)
            source = f"checkpoint {args.checkpoint}"
        preds = predictions_from_dicts(rows, source)
        if args.checkpoint:  # a single-language RxR follower predicts only its language
            predicted = {p.instr_id for p in preds}
            langs = {ep.language for ep in episodes if ep.instr_id in predicted}
            episodes = [ep for ep in episodes if ep.language in langs]
        if args.out:
            fmt = "rxr" if str(args.out).endswith((".jsonl", ".jsonl.gz")) else "r2r"
            write_predictions(args.out, preds, fmt)
    validate_predictions(preds, episodes, graphs, source=source)
    result = score_paths(paths_of(preds), episodes, graphs, require_all=True)
    summary = result.summary()
    if args.report:
        from vln_clip.eval.report import write_report

        files = write_report(args.report, result)
        if not args.json:
            print(f"report: {', '.join(str(f) for f in files.values())}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary, title=f"{source} on {split.name} ({summary['episodes']} instructions)")
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

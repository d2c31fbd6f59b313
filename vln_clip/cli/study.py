"""``vln-clip study encoders``: contrastive vs classification vs random encoders on every task."""

from __future__ import annotations

import argparse
import json

from vln_clip.study.budgets import BUDGET_HELP, BUDGETS

from .common import add_parser, positive_int


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "study", "the paper's encoder comparison on a synthetic world",
                   ["vln-clip study encoders --world data/synthetic --out runs/study",
                    "vln-clip study encoders --world data/synthetic --out runs/study --tasks vqa caption --threads 2"])
    ssub = p.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    e = add_parser(ssub, "encoders", "pre-train the encoders, extract features, train VLN / VQA / captioning with "
                   "each, compare on unseen houses",
                   ["vln-clip study encoders --world data/synthetic --out runs/study",
                    "vln-clip study encoders --world data/synthetic --out runs/study --budget full",
                    "vln-clip study encoders --world W --out runs/s --encoder-checkpoint contrastive=enc/c.pt"],
                   description="Every stage is one vln-clip command, logged to OUT/commands.sh before it runs and "
                               "marked done in OUT/stages/; rerunning the same command continues a killed study. "
                               "Writes OUT/results.json, OUT/results.md and OUT/bars.png (paired bootstrap CIs).")
    e.add_argument("--world", required=True, help="a synthetic world (vln-clip data synth --out DIR)")
    e.add_argument("--out", required=True)
    e.add_argument("--budget", choices=tuple(BUDGETS), default="small", help=BUDGET_HELP)
    e.add_argument("--vl", help="its synthetic V&L world (default OUT/vl, generated from --world)")
    e.add_argument("--arms", nargs="+", default=["contrastive", "classification", "random"])
    e.add_argument("--tasks", nargs="+", default=["vln", "vqa", "caption"])
    e.add_argument("--encoder-checkpoint", action="append", default=[], metavar="ARM=ENC.pt",
                   help="use this encoder for ARM instead of pre-training it (repeatable)")
    e.add_argument("--arch", default="rn-tiny", help="visual architecture of every arm (rn-tiny, vit-tiny)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per stage")
    e.set_defaults(func=_encoders)
    p.set_defaults(func=lambda a: p.print_help() or 1)


def _encoders(args: argparse.Namespace) -> int:
    from vln_clip.errors import DataError
    from vln_clip.study.run import StudyConfig, run_study

    given = {}
    for item in args.encoder_checkpoint:
        arm, sep, path = item.partition("=")
        if not sep:
            raise DataError(f"--encoder-checkpoint {item!r}: expected ARM=PATH, e.g. contrastive=enc/c.pt")
        given[arm] = path
    cfg = StudyConfig(world=args.world, out=args.out, budget=args.budget, vl=args.vl, arms=tuple(args.arms),
                      tasks=tuple(args.tasks), encoders=given, seed=args.seed, threads=args.threads, arch=args.arch)
    result = run_study(cfg)
    print(json.dumps({k: result[k] for k in ("tasks", "paired") if k in result} or result))
    return 0

"""``vln-clip vqa``: train, evaluate, predict and zero-shot VQA."""

from __future__ import annotations

import argparse

from .common import add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "vqa", "visual question answering over grid features",
                   ["vln-clip vqa eval --questions Q.json --annotations A.json --preds P.json --json"])
    vsub = p.add_subparsers(dest="vqa_command", metavar="VQA_COMMAND")  # noqa: F841 (filled below)
    p.set_defaults(func=lambda a: p.print_help() or 1)

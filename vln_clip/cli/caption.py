"""``vln-clip caption``: train, evaluate and predict image captions."""

from __future__ import annotations

import argparse

from .common import add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "caption", "image captioning over grid features",
                   ["vln-clip caption eval --captions captions_val.json --preds P.json --json"])
    csub = p.add_subparsers(dest="caption_command", metavar="CAPTION_COMMAND")  # noqa: F841
    p.set_defaults(func=lambda a: p.print_help() or 1)

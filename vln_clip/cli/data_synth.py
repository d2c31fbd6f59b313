"""`vln-clip data synth`: synthesize a small Matterport-format world."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "synth", "synthesize a small Matterport-format world", ["vln-clip data synth --help"])
    p.set_defaults(func=lambda a: not_available("data synth", "issue 5"))

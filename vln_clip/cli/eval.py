"""`vln-clip eval`: score predictions or run baseline agents."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "eval", "score predictions or run baseline agents", ["vln-clip eval --help"])
    p.set_defaults(func=lambda a: not_available("eval", "issue 3"))

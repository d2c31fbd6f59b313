"""`vln-clip submit`: validate and export leaderboard submissions."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "submit", "validate and export leaderboard submissions", ["vln-clip submit --help"])
    p.set_defaults(func=lambda a: not_available("submit", "issue 3"))

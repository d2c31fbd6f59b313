"""`vln-clip rollout`: play and picture one episode."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "rollout", "play and picture one episode", ["vln-clip rollout --help"])
    p.set_defaults(func=lambda a: not_available("rollout", "issue 7"))

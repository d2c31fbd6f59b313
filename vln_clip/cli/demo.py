"""`vln-clip demo`: the whole pipeline on a synthetic world."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "demo", "the whole pipeline on a synthetic world", ["vln-clip demo --help"])
    p.set_defaults(func=lambda a: not_available("demo", "issue 6"))

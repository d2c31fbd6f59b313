"""`vln-clip features`: views and CLIP feature extraction."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "features", "views and CLIP feature extraction", ["vln-clip features --help"])
    p.set_defaults(func=lambda a: not_available("features", "issue 4"))

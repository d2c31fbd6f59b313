"""`vln-clip data aug-paths`: sample augmentation paths for back-translation."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "aug-paths", "sample augmentation paths for back-translation", ["vln-clip data aug-paths --help"])
    p.set_defaults(func=lambda a: not_available("data aug-paths", "issue 6"))

"""`vln-clip train`: train follower, speaker or back-translation agents."""

from __future__ import annotations

import argparse

from .common import add_parser, not_available


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "train", "train follower, speaker or back-translation agents", ["vln-clip train --help"])
    p.set_defaults(func=lambda a: not_available("train", "issue 6"))

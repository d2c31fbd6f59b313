"""Entry point of ``vln-clip``: subcommands grouped by job.

Each job lives in its own module exposing ``register(subparsers)``; heavy imports (torch,
open_clip) happen inside the handlers so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from vln_clip import __version__
from vln_clip.errors import DataError, MissingResourceError

from . import caption, data, demo, encoders, eval as eval_cmd, features, gradcam, pretrain, rollout, study, submit, train, vqa

JOBS = (data, features, train, eval_cmd, submit, rollout, vqa, caption, pretrain, encoders, study, gradcam, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vln-clip",
        description="The CLIP-ViL study as a toolkit: navigation (data, features, training, evaluation, "
                    "leaderboard export, rollouts), VQA, captioning, CLIP-ViL_p pre-training and the encoder study.",
        epilog="examples:\n  vln-clip demo --out runs/demo\n  vln-clip data stats --connectivity "
               "connectivity/\n  vln-clip train --dataset rxr --encoder clip_res50x4 --out runs/rxr\n\n"
               "Run `vln-clip <command> --help` for each command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vln-clip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for job in JOBS:
        job.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let an offline machine wait on the hub
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (DataError, MissingResourceError) as exc:
        print(f"vln-clip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vln-clip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any, Callable

EPILOG_TITLE = "examples:\n"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str,
               examples: list[str], description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser whose --help ends with worked examples."""
    return sub.add_parser(
        name, help=help, description=description or help,
        epilog=EPILOG_TITLE + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def not_available(what: str, issue: str) -> int:
    print(f"vln-clip {what}: not available yet ({issue}).", file=sys.stderr)
    return 3


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


#: ``type=`` of counts that must be at least 1 (batch sizes, steps, limits, sizes).
positive_int = _int_at_least(1, "a positive integer")
#: ``type=`` of counts where 0 is meaningful (e.g. ``--iters 0``: evaluate an untrained model).
nonnegative_int = _int_at_least(0, "zero or a positive integer")


ENCODER_HELP = ("registry name (clip_res50, clip_res101, clip_res50x4, clip_vit_b32, imagenet_res152; see "
                "`vln-clip features encoders`) or an encoder checkpoint ENC.pt from `vln-clip encoders pretrain`; "
                "--encoder and --encoder-checkpoint are two spellings of this one option")


class _EncoderAction(argparse.Action):
    """``--encoder`` / ``--encoder-checkpoint``: one option under two names (one ``dest``).

    The registry takes a checkpoint path wherever it takes a name, so both spellings accept
    either. Giving the option twice with different values is a usage error instead of argparse's
    silent last-one-wins: ``--encoder clip_res50 --encoder-checkpoint enc.pt`` would otherwise
    train on one encoder while the user believes it is the other.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        seen = f"_{self.dest}_given_as"
        before = getattr(namespace, seen, None)
        if before is not None and not _same_encoder(before[1], values):
            raise argparse.ArgumentError(self, f"{before[0]} {before[1]} and {option_string} {values} name different "
                                               "encoders; pass one of them")
        setattr(namespace, seen, (option_string, values))
        setattr(namespace, self.dest, values)


def _same_encoder(a: str, b: str) -> bool:
    """Two spellings of one encoder: the same name, or paths to the same file."""
    return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def add_encoder_argument(parser: Any, required: bool = False, default: str | None = None,
                         help: str | None = None) -> argparse.Action:
    """Add ``--encoder NAME|ENC.pt`` with its alias ``--encoder-checkpoint`` (same ``dest``,
    ``args.encoder``) to a parser, argument group or mutually exclusive group."""
    return parser.add_argument("--encoder", "--encoder-checkpoint", dest="encoder", action=_EncoderAction,
                               required=required, default=default, metavar="ENCODER",
                               help=help or ENCODER_HELP)


def friendly_os_errors(func: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    """A handler whose full-disk errors end as one clear line (a :class:`StorageError`).

    Writes through :func:`vln_clip.io.atomic_path` already say which file could not be written;
    this catches the rest (logs, TensorBoard events, third-party writers).
    """

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> Any:
        from vln_clip.io import storage_error

        try:
            return func(args)
        except (OSError, RuntimeError) as exc:
            converted = storage_error(getattr(exc, "filename", None) or getattr(args, "out", None) or ".", exc)
            if converted is None:
                raise
            raise converted from exc

    return run

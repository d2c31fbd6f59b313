"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys

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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error instead of a traceback later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

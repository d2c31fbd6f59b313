"""One exception type for bad user input, so the CLI can print it without a traceback."""

from __future__ import annotations


class DataError(ValueError):
    """Input data is malformed or inconsistent.

    Messages name the file, the entry and how to fix it: the CLI prints them as they are.
    """


class MissingResourceError(FileNotFoundError):
    """Real data, weights or an optional backend that this machine does not have.

    The message says where to get it and where to put it.
    """


class StorageError(DataError):
    """Writing an output failed because of the machine, not the data: disk full, quota exceeded.

    A subclass of :class:`DataError` so that the CLI prints it as one line (naming the file and
    the fix: free space or write elsewhere) instead of a traceback; nothing finished is lost,
    because every write goes through :func:`vln_clip.io.atomic_path`.
    """

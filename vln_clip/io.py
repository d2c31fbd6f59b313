"""Writing files so that a crash never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError, StorageError

# errno values that mean "this machine cannot hold the output", not "the program is wrong".
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _temp_prefix(path: Path) -> str:
    """The name prefix of :func:`atomic_path`'s temporary files for ``path`` (one home for it)."""
    return f".{path.name}."


def storage_error(path: str | os.PathLike[str], exc: BaseException) -> StorageError | None:
    """A :class:`StorageError` naming ``path`` when ``exc`` is a disk-full/quota error, else None.

    HDF5 reports a full disk as a ``RuntimeError``/``OSError`` whose text carries ``errno = 28``,
    so the text is checked as well as ``errno``.
    """
    text = str(exc)
    if getattr(exc, "errno", None) in NO_SPACE or "errno = 28" in text or "No space left on device" in text:
        free = _free_bytes(Path(path).parent)
        return StorageError(f"{path}: the disk is full (or over quota) while writing it"
                            + (f"; {free / 2**20:.1f} MiB free in {Path(path).parent}" if free is not None else "")
                            + "; free some space or choose another output folder, then run the same command "
                              "again (finished outputs are kept)")
    return None


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    The result gets the permissions an ordinary ``open()`` would give it (``0666`` less the
    user's umask), not ``mkstemp``'s private ``0600``, so predictions, submissions and
    checkpoints can be shared like the feature stores. A full disk becomes a
    :class:`~vln_clip.errors.StorageError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(path, exc) or exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as exc:
        converted = storage_error(path, exc)
        if converted is None:
            raise
        raise converted from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files :func:`atomic_path` left next to ``path`` when a process died.

    A process killed (or crashed by a full disk) inside ``atomic_path`` cannot clean up after
    itself; the next run that writes the same ``path`` calls this first. Only files named like
    ``atomic_path``'s temporaries *for this path* are touched. Call it only where a single
    writer owns ``path`` (e.g. the extraction's merging rank).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tmp in path.parent.glob(_temp_prefix(path) + "*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def require_free_space(path: str | os.PathLike[str], nbytes: int, what: str = "output") -> None:
    """Refuse to start writing ``nbytes`` to ``path`` when its disk has less free space.

    Why: some writers (HDF5) crash the process instead of raising when the disk fills up half
    way; checking first turns that into a clear message before any work is spent.
    """
    path = Path(path)
    folder = path.parent if path.parent.exists() else Path(".")
    free = _free_bytes(folder)
    if free is not None and free < nbytes:
        raise StorageError(f"{path}: writing the {what} needs about {nbytes / 2**20:.1f} MiB but only "
                           f"{free / 2**20:.1f} MiB are free in {folder}; free some space or choose another "
                           "output folder (finished work is kept and reused)")


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> None:
    """Atomically write JSON (gzip-compressed when the name ends in .gz)."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            # mtime=0 keeps the bytes identical for identical content (determinism).
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
                fh.write(json.dumps(obj, indent=indent).encode("utf-8"))
        else:
            # json.dumps (one string, the C encoder) is several times faster than json.dump's
            # chunked writes for large files (100k VQA annotations), with the same bytes.
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(obj, indent=indent))


def write_jsonl(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Atomically write JSON lines (gzip-compressed when the name ends in .gz)."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
                fh.write(payload)
        else:
            Path(tmp).write_bytes(payload)


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read JSON (or .json.gz) with an error that names the file and the position."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what}; check the path")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            f"fix or re-download the {what}"
        ) from exc


def read_jsonl(path: str | os.PathLike[str], what: str = "JSON-lines file") -> list[Any]:
    """Read JSON lines (optionally gzipped), naming the bad line on error."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what}; check the path")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: malformed JSON line ({exc.msg}); fix or re-download the {what}"
                ) from exc
    return rows

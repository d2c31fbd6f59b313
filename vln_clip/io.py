"""Writing files so that a crash never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> None:
    """Atomically write JSON (gzip-compressed when the name ends in .gz)."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            # mtime=0 keeps the bytes identical for identical content (determinism).
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
                fh.write(json.dumps(obj, indent=indent).encode("utf-8"))
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(obj, fh, indent=indent)


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

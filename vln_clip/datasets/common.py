"""Validation helpers shared by the dataset readers: every error names file, entry, field and fix.

The readers check what a training or evaluation run would otherwise trip over much later
(a missing answer, an id that is a string, a duplicate), and say where it is in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from vln_clip.errors import DataError
from vln_clip.io import read_json

PathLike = str | os.PathLike[str]

_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object", float: "a number",
               bool: "true/false"}


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true/false is not an id or a count
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, kinds)


_ABSENT = object()


class Entry:
    """Where an entry sits in a file (``path: questions[12] (question_id 4587)``), for messages.

    Readers make one per entry of files with hundreds of thousands of entries, so it is kept
    cheap: the path is stored as given and :meth:`field` returns at once when the type is right.
    """

    __slots__ = ("path", "where", "fix")

    def __init__(self, path: PathLike, where: str, fix: str):
        self.path = path
        self.where = where
        self.fix = fix

    def error(self, problem: str, fix: str | None = None) -> DataError:
        return DataError(f"{self.path}: {self.where}: {problem}; {fix or self.fix}")

    def field(self, obj: Any, name: str, kind: type | tuple[type, ...], *, optional: bool = False,
              default: Any = None) -> Any:
        """``obj[name]`` checked to be of ``kind`` (None/default when optional and absent)."""
        if type(obj) is dict:
            value = obj.get(name, _ABSENT)
            if type(value) is kind:  # the common case: present and of exactly the right type
                return value
        if not isinstance(obj, dict):
            raise self.error(f"must be an object, got {type_name(obj)}")
        if name not in obj:
            if optional:
                return default
            raise self.error(f"field '{name}' is missing")
        value = obj[name]
        if optional and value is None:
            return default
        if not _is(value, kind):
            want = " or ".join(_TYPE_NAMES.get(k, k.__name__)
                               for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(f"field '{name}' must be {want}, got {type_name(value)} ({value!r:.60})")
        return value

    def str_list(self, obj: Any, name: str, *, optional: bool = False) -> list[str] | None:
        values = self.field(obj, name, list, optional=optional)
        if values is None:
            return None
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.error(f"field '{name}'[{i}] must be a string, got {type_name(v)}")
        return list(values)

    def one_of(self, value: str, name: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if value not in allowed:
            raise self.error(f"field '{name}' is {value!r}, not one of {', '.join(map(repr, allowed))}")
        return value


def load_json(path: PathLike, what: str) -> Any:
    """JSON (or .json.gz) with a message naming the file when it is absent or malformed."""
    return read_json(path, what)


def top_object(data: Any, path: PathLike, what: str, key: str | None = None, kind: type = list) -> Any:
    """Check the top level: an object (with ``key`` of ``kind``) or, when ``key`` is None, ``kind``."""
    path = Path(path)
    if key is None:
        if not _is(data, kind):
            raise DataError(f"{path}: the top level of a {what} must be {_TYPE_NAMES[kind]}, "
                            f"got {type_name(data)}; is this the right file?")
        return data
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level of a {what} must be an object with '{key}', got "
                        f"{type_name(data)}; is this the right file?")
    if key not in data:
        raise DataError(f"{path}: a {what} needs a top-level '{key}' field (it has "
                        f"{', '.join(sorted(map(str, data))) or 'none'}); is this the right file?")
    if not _is(data[key], kind):
        raise DataError(f"{path}: top-level '{key}' must be {_TYPE_NAMES[kind]}, got {type_name(data[key])}")
    return data[key]


def stem(file_name: str) -> str:
    """The image key of a file name: its stem (``COCO_val2014_000000391895.jpg`` -> ``COCO_val2014_000000391895``)."""
    return Path(file_name).stem


def extras(obj: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """Fields a reader does not model, kept so that a written file has them back."""
    known = set(known)
    return {k: v for k, v in obj.items() if k not in known}
